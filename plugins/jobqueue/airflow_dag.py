"""A job type's Airflow side: its DAG (one task per step, scheduled by the asset the job table's
trigger feeds, or also by a cron timetable), the task that runs a step, and the callbacks; and a
job group's DAG, whose one task runs the step of each member with jobs waiting.

The task reads what it needs of Airflow's context once (task_run.TaskRun) and hands the step to the
runtime; nothing below it imports Airflow.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import logging
import sys
import typing
from collections.abc import Callable
from typing import Any

from jobqueue import database, detach, forms, settings
from jobqueue.declaration import JobType, declaring_frame
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
    chained = len(job_type.steps) > 1
    with DAG(
        dag_id=job_type.identifier,
        **_schedule(job_type),
        max_active_runs=job_type.options.max_active_runs or settings.max_active_runs(),
        default_args=DEFAULT_ARGS,
        on_failure_callback=lambda context: release_run(context, chained),
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
    while paused: graphile-worker's crontab without `?fill=`; a backfill fills them). A group's
    member has no asset: its group's DAG picks its jobs up; its own runs are its ticks and the runs
    triggered by hand."""
    grouped = job_type.options.group is not None
    assets = [] if grouped else [job_asset(job_type.identifier)]
    if job_type.options.schedule is None:
        return {"schedule": assets or None}
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    timetable = CronTriggerTimetable(job_type.options.schedule, timezone=job_type.options.timezone)
    return {
        "schedule": AssetOrTimeSchedule(timetable=timetable, assets=assets) if assets else timetable,
        "start_date": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        "catchup": False,
    }


def job_asset(identifier: str) -> Any:
    """The asset whose watcher (the trigger on the job table) starts the job type's DAG runs."""
    return _watched_asset(f"worker_jobs_{identifier}", f"worker-jobs://{identifier}", [identifier])


def _watched_asset(name: str, uri: str, identifiers: list[str]) -> Any:
    from airflow.sdk import Asset, AssetWatcher

    from jobqueue.trigger import JobsWaitingTrigger

    trigger = JobsWaitingTrigger(identifiers=identifiers, conn_id=database.JOB_DB_CONN_ID)
    return Asset(name=name, uri=uri, watchers=[AssetWatcher(name=f"{name}_waiting", trigger=trigger)])


@dataclasses.dataclass
class JobGroup:
    """A DAG that picks up the jobs of several job types: one run, in one task, for all its members
    with jobs waiting, where each type's own DAG would pay Airflow's price of a run (about 0.2
    CPU-s: 40 types with a few jobs each were 40 runs). Each member keeps its own DAG (its form,
    its runs by hand and its cron ticks, the rights on its jobs), without the asset."""

    name: str
    module: dict[str, Any]  # the globals of the DAG file that declares it, as this parse ran it
    members: list[JobType] = dataclasses.field(default_factory=list)
    dag: Any = None
    trigger: Any = None  # its asset's: it watches every member

    @property
    def identifiers(self) -> list[str]:
        return [member.identifier for member in self.members]


# Groups by name, each with the DAG file run that declared it.
_GROUPS: dict[str, JobGroup] = {}


def join_group(job_type: JobType) -> JobGroup:
    """Adds a member to its group, making the group's DAG with its first member. The DAG's trigger
    watches every member: Airflow serializes the DAG once the file has run, with all of them. A
    file parsed again (a test, a parser that runs files in one process) makes a group anew."""
    name = job_type.options.group
    assert name is not None
    # The DAG file's run that declares it (a group's members in two files make two DAGs of one
    # id: Airflow refuses the second file).
    module = declaring_frame(sys._getframe(1)).f_globals
    group = _GROUPS.get(name)
    if group is None or group.module is not module:
        group = _GROUPS[name] = JobGroup(name, module)
    group.members = [each for each in group.members if each.identifier != job_type.identifier]
    group.members.append(job_type)
    if group.dag is None:
        group.dag = build_group_dag(group)
    job_type.group_dag = group.dag
    group.trigger.identifiers = group.identifiers
    group.dag.doc_md = _group_doc(group)
    return group


def _group_doc(group: JobGroup) -> str:
    listed = ", ".join(f"`{identifier}`" for identifier in group.identifiers)
    return (
        f"Job group `{group.name}`: picks up the jobs of {listed}, one run for all of them with jobs "
        "waiting. Each keeps its own DAG for its runs by hand, its cron ticks and its rights; pause "
        "one with the Jobs page (worker.pause_identifier): its DAG's toggle stops only those runs."
    )


def build_group_dag(group: JobGroup) -> Any:
    """The group's DAG: its asset fires when any member has jobs waiting; its task runs each member
    with jobs waiting, in turn, as that member's own run would."""
    from airflow.sdk import DAG

    from jobqueue.step_operator import StepOperator

    asset = _watched_asset(f"worker_jobs_group_{group.name}", f"worker-jobs-group://{group.name}", [])
    group.trigger = asset.watchers[0].trigger
    with DAG(
        dag_id=group.name,
        schedule=[asset],
        max_active_runs=settings.max_active_runs(),
        default_args=DEFAULT_ARGS,
        on_failure_callback=lambda context: release_run(context, chained=False),
        tags=["jobs", "job group"],
    ) as dag:
        StepOperator(
            task_id="run", python_callable=lambda **context: run_group_task(group, TaskRun.of(context))
        )
    return dag


def _task(job_type: JobType, index: int) -> Callable[..., dict[str, int]]:
    def run(**context: Any) -> dict[str, int]:
        return run_task(job_type, index, TaskRun.of(context))

    return run


def run_task(job_type: JobType, index: int, run: TaskRun) -> dict[str, int]:
    """The step `index` for the batch of the run `run` (what the task read from Airflow)."""
    try:
        summary = _run_step(job_type, index, run, dict(run.conf), cron_tick(run))
    except RunPayloadRefused as exc:
        _fail_task(str(exc))
    _fail_if_failed_in_run(summary)
    return summary


def _fail_if_failed_in_run(summary: dict[str, int]) -> None:
    if summary.get("failed_in_run"):
        _fail_task(
            f"{summary['failed_in_run']} job(s) of this run failed for good (its Jobs tab lists them); "
            f"this step: {summary}"
        )


def _run_step(
    job_type: JobType, index: int, run: TaskRun, conf: dict[str, Any] | None, tick: dict[str, Any] | None
) -> dict[str, int]:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=database.JOB_DB_CONN_ID)
    hook.connection  # noqa: B018 - resolved now, through the task's supervisor: a detached step cannot
    current = job_type.steps[index]
    prepared = current.prepare() if current.prepare else None
    work = StepRun(job_type, index, run.worker_id, hook.get_conn, prepared, run.try_number, run.task_id)
    if current.detached:
        return dict(detach.run_detached(lambda: work.run(conf, tick)))
    return work.run(conf, tick)


def run_group_task(group: JobGroup, run: TaskRun) -> dict[str, int]:
    """Each member of the group with jobs a claim could take now, in turn, as its own DAG's run would
    (its batch, options, time limit and rate limit); rate-limited members last, as their runs may
    pace their claims. Fails, as a job type's run does, when a job of the run failed for good."""
    if any(value not in (None, "", {}, []) for value in dict(run.conf).values()):
        _fail_task(
            f"a run of job group {group.name!r} takes its members' waiting jobs and no payload: trigger "
            f"the DAG of one of them ({', '.join(group.identifiers)}) or enqueue with add_job"
        )
    with database.job_database() as jobs:
        # What waits, and what a killed try of this task left held (a retry takes it back).
        due = jobs.claimable_identifiers(group.identifiers) | {
            job.identifier for job in jobs.held_jobs(run.worker_id)
        }
    members = [member for member in group.members if member.identifier in due]
    members.sort(key=lambda member: member.options.rate_limit is not None)
    summary: dict[str, int] = {"jobs": 0}
    for member in members:
        for outcome, count in _run_step(member, 0, run, None, None).items():
            if outcome == "failed_in_run":  # the run's count so far, over every member
                summary[outcome] = count
            else:
                summary[outcome] = summary.get(outcome, 0) + count
    log.info(
        "group %s, run %s: members %s: %s",
        group.name,
        run.worker_id,
        [m.identifier for m in members],
        summary,
    )
    _fail_if_failed_in_run(summary)
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


def release_run(context: Any, chained: bool) -> None:
    """on_failure_callback of the DAG: the run's jobs go back to the queue, attempts kept."""
    worker = worker_of(context)
    recorder = Recorder(worker, step="", chained=chained)
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
