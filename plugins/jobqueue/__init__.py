"""jobqueue: background jobs as rows in PostgreSQL (schema `worker`), run by Airflow.

A job type is a decorated function, whose DAG consumes its jobs (see `jobqueue.job_types`):

    from jobqueue import PermanentJobError, job_type

    @job_type("resize_image")
    def resize_image(payload: ResizeImage, ctx) -> dict | None: ...

The other functions here take a connection first (see `jobqueue.manager`) and mirror the SQL API:

    from jobqueue import add_job
    add_job("postgres_default", "send_email", {"to": "a@example.com", "template": "welcome"})
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from jobqueue.context import JobContext
from jobqueue.exceptions import JobQueueError, PermanentJobError, RetryableJobError, WorkerError
from jobqueue.job_types import CronPayload, CronTick, job_chain, job_type, step
from jobqueue.jobs import Job, JobKeyMode, JobSpec, JobStatus, JsonValue
from jobqueue.manager import Connectable, JobManager

__all__ = [
    "CronPayload",
    "CronTick",
    "Job",
    "JobContext",
    "JobKeyMode",
    "JobManager",
    "JobQueueError",
    "JobSpec",
    "JobStatus",
    "PermanentJobError",
    "RetryableJobError",
    "WorkerError",
    "add_job",
    "add_jobs",
    "complete_jobs",
    "job_chain",
    "job_type",
    "permanently_fail_jobs",
    "remove_job",
    "reschedule_jobs",
    "step",
]


def add_job(
    conn: Connectable,
    identifier: str,
    payload: JsonValue = None,
    *,
    queue_name: str | None = None,
    run_at: datetime.datetime | None = None,
    max_attempts: int | None = None,
    job_key: str | None = None,
    priority: int | None = None,
    flags: Sequence[str] | None = None,
    job_key_mode: JobKeyMode | str = JobKeyMode.REPLACE,
) -> Job:
    return JobManager(conn).add_job(
        identifier,
        payload,
        queue_name=queue_name,
        run_at=run_at,
        max_attempts=max_attempts,
        job_key=job_key,
        priority=priority,
        flags=flags,
        job_key_mode=job_key_mode,
    )


def add_jobs(conn: Connectable, specs: Iterable[JobSpec]) -> list[Job]:
    return JobManager(conn).add_jobs(specs)


def remove_job(conn: Connectable, job_key: str) -> Job | None:
    return JobManager(conn).remove_job(job_key)


def complete_jobs(conn: Connectable, job_ids: Sequence[int], result: JsonValue = None) -> list[Job]:
    return JobManager(conn).complete_jobs(job_ids, result)


def permanently_fail_jobs(conn: Connectable, job_ids: Sequence[int], reason: str | None = None) -> list[Job]:
    return JobManager(conn).permanently_fail_jobs(job_ids, reason)


def reschedule_jobs(
    conn: Connectable,
    job_ids: Sequence[int],
    *,
    run_at: datetime.datetime | None = None,
    priority: int | None = None,
    attempts: int | None = None,
    max_attempts: int | None = None,
) -> list[Job]:
    return JobManager(conn).reschedule_jobs(
        job_ids, run_at=run_at, priority=priority, attempts=attempts, max_attempts=max_attempts
    )
