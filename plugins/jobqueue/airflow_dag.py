"""A job type's Airflow side: its DAG (one task per step, scheduled by the asset the job table's
trigger feeds, or also by a cron timetable), the task that runs a step, and the callbacks.

The task reads what it needs of Airflow's context once (task_run.TaskRun) and hands the step to the
runtime; nothing below it imports Airflow.
"""

from __future__ import annotations

import datetime
import inspect
import logging
import typing
from collections.abc import Callable
from typing import Any

from jobqueue import database, detach, forms, settings
from jobqueue.declaration import JobType
from jobqueue.exceptions import RunPayloadRefused
from jobqueue.outcomes import Recorder, Retry
from jobqueue.runtime import StepRun
from jobqueue.task_run import TaskRun, worker_of

log = logging.getLogger(__name__)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "jobqueue",
    # A task retry is safe: it takes back the jobs its run holds and skips those already recorded.
    "retries": 2,
    "retry_delay": datetime.timedelta(seconds=5),
}


def build_dag(job_type: JobType) -> Any:
    """The DAG named after the identifier, registered with Airflow as the DAG file is parsed."""
    from airflow.sdk import DAG, chain

    from jobqueue.step_operator import StepOperator

    first = job_type.steps[0].function
    with DAG(
        dag_id=job_type.identifier,
        **_schedule(job_type),
        max_active_runs=job_type.options.max_active_runs or settings.max_active_runs(),
        default_args=DEFAULT_ARGS,
        on_failure_callback=lambda context: release_run(job_type, context),
        tags=["jobs", *job_type.options.tags],
        doc_md=job_type.options.doc or inspect.getdoc(first),
        params=forms.params(job_type.form_fields),
    ) as dag:
        chain(
            *(
                StepOperator(task_id=each.name, python_callable=_task(job_type, index))
                for index, each in enumerate(job_type.steps)
            )
        )
    return dag


def _schedule(job_type: JobType) -> dict[str, Any]:
    """Jobs waiting start a run; with a cron schedule, so does each tick (not the ticks missed
    while paused: graphile-worker's crontab without `?fill=`; a backfill fills them)."""
    asset = job_asset(job_type.identifier)
    if job_type.options.schedule is None:
        return {"schedule": [asset]}
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    timetable = CronTriggerTimetable(job_type.options.schedule, timezone=job_type.options.timezone)
    return {
        "schedule": AssetOrTimeSchedule(timetable=timetable, assets=[asset]),
        "start_date": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        "catchup": False,
    }


def job_asset(identifier: str) -> Any:
    """The asset whose watcher (the trigger on the job table) starts the job type's DAG runs."""
    from airflow.sdk import Asset, AssetWatcher

    from jobqueue.trigger import JobsWaitingTrigger

    trigger = JobsWaitingTrigger(identifiers=[identifier], conn_id=database.JOB_DB_CONN_ID)
    return Asset(
        name=f"worker_jobs_{identifier}",
        uri=f"worker-jobs://{identifier}",
        watchers=[AssetWatcher(name=f"worker_jobs_{identifier}_waiting", trigger=trigger)],
    )


def _task(job_type: JobType, index: int) -> Callable[..., dict[str, int]]:
    def run(**context: Any) -> dict[str, int]:
        return run_task(job_type, index, TaskRun.of(context))

    return run


def run_task(job_type: JobType, index: int, run: TaskRun) -> dict[str, int]:
    """The step `index` for the batch of the run `run` (what the task read from Airflow)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=database.JOB_DB_CONN_ID)
    hook.connection  # noqa: B018 - resolved now, through the task's supervisor: a detached step cannot
    current = job_type.steps[index]
    prepared = current.prepare() if current.prepare else None
    work = StepRun(job_type, index, run.worker_id, hook.get_conn, prepared, run.try_number)
    conf, tick = dict(run.conf), cron_tick(run)
    try:
        if current.detached:
            summary = dict(detach.run_detached(lambda: work.run(conf, tick)))
        else:
            summary = work.run(conf, tick)
    except RunPayloadRefused as exc:
        _fail_task(str(exc))
    if summary.get("failed_in_run"):
        _fail_task(
            f"{summary['failed_in_run']} job(s) of this run failed for good (its Jobs tab lists them); "
            f"this step: {summary}"
        )
    return summary


def _fail_task(why: str) -> typing.NoReturn:
    """Ends the task as failed, with no retry: every outcome is recorded already. Used when jobs of
    the run failed for good (summary["failed_in_run"], counted by its last step over every step),
    so the run shows red in every view of Airflow's (its grid, the DAG list's failed runs, the REST
    API, failure callbacks and alerts) rather than green over a job that will never run again (a
    job failed for a retry does not count; the task's log names each failed job); and when a run
    triggered by hand carries a payload its job type refuses."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(why)


def cron_tick(run: TaskRun) -> dict[str, Any] | None:
    """A run the schedule started (or a backfill) stands for a cron tick; any other run does not."""
    tick = run.tick
    if tick is None:
        return None
    return {"ts": tick.astimezone(datetime.UTC).isoformat(), "backfilled": run.backfilled}


def release_run(job_type: JobType, context: Any) -> None:
    """on_failure_callback of the DAG: the run's jobs go back to the queue, attempts kept."""
    worker = worker_of(context)
    recorder = Recorder(worker, step="", chained=len(job_type.steps) > 1)
    with database.job_database() as jobs:
        held = jobs.held_jobs(worker)
        for job in held:
            recorder.record(jobs, job, Retry(f"the DAG run {worker} failed before finishing this job"))
    log.warning("released %d job(s) of failed run %s", len(held), worker)


def might_contain_job_types(file_path: str, zip_file: Any = None) -> bool:
    """Airflow's `[core] might_contain_dag_callable`: Airflow's own guess (the file names "airflow"
    and "dag"), or a file that declares job types."""
    from airflow.utils.file import might_contain_dag_via_default_heuristic

    if might_contain_dag_via_default_heuristic(file_path, zip_file):
        return True
    if zip_file is not None:
        with zip_file.open(file_path) as opened:
            content = opened.read()
    else:
        with open(file_path, "rb") as opened:
            content = opened.read()
    return b"job_type" in content or b"job_chain" in content
