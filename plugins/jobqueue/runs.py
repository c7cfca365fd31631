"""What every job DAG shares: its asset and trigger, its default arguments, and the batch it holds.

A DAG run is one worker: its worker id is `<dag_id>/<run_id>`. Its first task claims a batch by state
(events are only hints), a retried task takes back what its first attempt held, and a run that fails
releases whatever it still holds, so no job stays locked.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pydantic

from jobqueue import settings
from jobqueue.exceptions import PermanentJobError
from jobqueue.jobs import Job
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)
JOB_DB_CONN_ID = "worker_db"
Parse = Callable[[Any], pydantic.BaseModel]

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "jobqueue",
    # A task retry is safe: it takes back the jobs its run holds and skips those already done.
    "retries": 2,
    "retry_delay": datetime.timedelta(seconds=5),
    # A step returns its whole batch (payloads, rendered mails) as XCom: logging it would put every
    # recipient and message body in the task log, and a 1,000-job batch in one 250 KB log line.
    "show_return_value_in_logs": False,
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


def job_dag(identifier: str, *tags: str, max_active_runs: int | None = None) -> dict[str, Any]:
    """The arguments every job DAG takes: `@dag(**runs.job_dag("send_email", "email"))`."""
    return {
        "schedule": [job_asset(identifier)],
        "max_active_runs": max_active_runs or settings.max_active_runs(),
        "default_args": DEFAULT_ARGS,
        "on_failure_callback": release_run,
        "tags": ["jobs", *tags],
    }


def worker_id(context: Any) -> str:
    return f"{context['dag'].dag_id}/{context['run_id']}"


@contextmanager
def job_database(autocommit: bool = True, hook: Any = None) -> Iterator[JobManager]:
    """One connection for a task. With autocommit, each job's outcome is durable the moment it is
    known; without, the task commits itself (to enqueue a next job and complete this one at once).
    `hook`: a PostgresHook whose connection is already resolved (what a detached process needs)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn: Any = (hook or PostgresHook(postgres_conn_id=JOB_DB_CONN_ID)).get_conn()
    conn.autocommit = autocommit
    try:
        yield JobManager(conn)
    finally:
        conn.close()


def claim_batch(jobs: JobManager, identifier: str, worker: str, batch_size: int | None = None) -> list[Job]:
    """What the run holds already (a retried task), topped up to a batch with waiting jobs."""
    held = jobs.held_jobs(worker)
    room = (batch_size or settings.batch_size()) - len(held)
    claimed = jobs.claim_jobs([identifier], worker, max_jobs=room) if room > 0 else []
    batch = held + claimed
    if claimed and len(claimed) == room:
        jobs.notify_more_waiting(identifier)
    log.info(
        "worker %s holds %d job(s) (%d taken back, %d claimed now): %s",
        worker, len(batch), len(held), len(claimed), [job.id for job in batch],
    )  # fmt: skip
    return batch


def adopt_manual_job(
    jobs: JobManager,
    identifier: str,
    worker: str,
    conf: dict[str, Any] | None,
    parse: Parse,
    defaults: dict[str, Any] | None = None,
) -> Job | None:
    """A run triggered by hand (UI form or REST) with a payload as its conf: the payload becomes a
    job of this run, so it shows in worker.jobs with its outcome. A payload `parse` refuses leaves a
    failed job saying why, and fails the run at once (no retry can fix it). A conf that is exactly
    the form's defaults (the UI's Trigger with nothing typed) is no payload: the run just takes
    waiting jobs. A REST conf holds only what the caller sent, so any conf but that one counts."""
    payload = {name: value for name, value in (conf or {}).items() if value not in (None, "")}
    untouched = {name: value for name, value in (defaults or {}).items() if value is not None}
    if not payload or payload == untouched:
        return None
    key = f"run:{worker}"
    if jobs.job_key_exists(key):
        return None  # a retried task: the job exists already, and is held
    job = jobs.add_job_for_worker(identifier, payload, worker, job_key=key)
    try:
        parse(payload)
    except PermanentJobError as exc:
        jobs.fail_job(job.id, worker, str(exc), retry=False)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"job {job.id} failed: {exc}") from exc
    log.info("manual run %s: payload recorded as job %d", worker, job.id)
    return job


def claim_valid(jobs: JobManager, identifier: str, worker: str, parse: Parse) -> list[dict[str, Any]]:
    """Claims a batch and keeps the jobs whose payload `parse` accepts, as XCom-ready dicts; a job
    whose payload it refuses (a PermanentJobError naming the field) fails for good at once."""
    valid = []
    for job in claim_batch(jobs, identifier, worker):
        try:
            payload = parse(job.payload)
        except PermanentJobError as exc:
            jobs.fail_job(job.id, worker, str(exc), retry=False)
            log.warning("job %d failed for good: %s", job.id, exc)
            continue
        valid.append({"job_id": job.id, "payload": payload.model_dump(mode="json")})
    return valid


def release_run(context: Any) -> None:
    """on_failure_callback of a job DAG: the run's jobs go back to the queue, attempts kept."""
    worker = worker_id(context)
    with job_database() as jobs:
        held = jobs.held_jobs(worker)
        for job in held:
            jobs.fail_job(job.id, worker, f"the DAG run {worker} failed before finishing this job")
    log.warning("released %d job(s) of failed run %s", len(held), worker)
