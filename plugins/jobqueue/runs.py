"""What every job DAG shares: its asset and trigger, its default arguments, and the batch it holds.

A DAG run is one worker: its worker id is `<dag_id>/<run_id>`. Its first task claims a batch by state
(events are only hints), a retried task takes back what its first attempt held, and a run that fails
releases whatever it still holds, so no job stays locked.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jobqueue import settings
from jobqueue.jobs import Job
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)
JOB_DB_CONN_ID = "worker_db"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "jobqueue",
    # A task retry is safe: it takes back the jobs its run holds and skips those already done.
    "retries": 2,
    "retry_delay": datetime.timedelta(seconds=5),
}


def job_asset(identifier: str) -> Any:
    from airflow.sdk import Asset, AssetWatcher

    from jobqueue.trigger import JobsWaitingTrigger

    trigger = JobsWaitingTrigger(identifiers=[identifier], conn_id=JOB_DB_CONN_ID)
    return Asset(
        name=f"worker_jobs_{identifier}",
        uri=f"worker-jobs://{identifier}",
        watchers=[AssetWatcher(name=f"worker_jobs_{identifier}_waiting", trigger=trigger)],
    )


def worker_id(context: Any) -> str:
    return f"{context['dag'].dag_id}/{context['run_id']}"


@contextmanager
def job_database(autocommit: bool = True) -> Iterator[JobManager]:
    """One connection for a task. With autocommit, each job's outcome is durable the moment it is
    known; without, the task commits itself (to enqueue a next job and complete this one at once)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn: Any = PostgresHook(postgres_conn_id=JOB_DB_CONN_ID).get_conn()
    conn.autocommit = autocommit
    try:
        yield JobManager(conn)
    finally:
        conn.close()


def claim_batch(jobs: JobManager, identifier: str, worker: str) -> list[Job]:
    held = jobs.held_jobs(worker)
    room = settings.batch_size() - len(held)
    claimed = jobs.claim_jobs([identifier], worker, max_jobs=room) if room > 0 else []
    batch = held + claimed
    if claimed and len(claimed) == room:
        jobs.notify_more_waiting(identifier)
    log.info(
        "worker %s holds %d job(s) (%d taken back, %d claimed now): %s",
        worker, len(batch), len(held), len(claimed), [job.id for job in batch],
    )  # fmt: skip
    return batch


def release_run(context: Any) -> None:
    """on_failure_callback of a job DAG: the run's jobs go back to the queue, attempts kept."""
    worker = worker_id(context)
    with job_database() as jobs:
        held = jobs.held_jobs(worker)
        for job in held:
            jobs.fail_job(job.id, worker, f"the DAG run {worker} failed before finishing this job")
    log.warning("released %d job(s) of failed run %s", len(held), worker)
