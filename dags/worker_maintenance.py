"""worker_maintenance: every five minutes, release jobs whose worker is gone, purge old history,
log the queue depth, and fail loudly when jobs wait that no job type consumes.
release_dead_locks >> purge >> report_queue_depth >> report_unconsumed."""

from __future__ import annotations

import datetime

from airflow.sdk import dag, task

from jobqueue import maintenance, settings
from jobqueue.airflow_dag import DEFAULT_ARGS
from jobqueue.database import job_database
from jobqueue.task_run import dag_run_state


@dag(
    schedule="*/5 * * * *",
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["jobs", "maintenance"],
    doc_md=__doc__,
)
def worker_maintenance():
    @task
    def release_dead_locks(**context) -> dict:
        def run_state(dag_id: str, run_id: str) -> str | None:
            return dag_run_state(context["ti"], dag_id, run_id)

        with job_database() as jobs:
            return maintenance.release_dead_locks(jobs, run_state, settings.maintenance())

    @task
    def purge() -> dict:
        with job_database() as jobs:
            return maintenance.purge(jobs, settings.maintenance())

    @task
    def report_queue_depth() -> list:
        with job_database() as jobs:
            return [dict(row) for row in maintenance.report_queue_depth(jobs)]

    @task
    def report_unconsumed() -> list:
        """Fails (red in the UI, no retry) while any identifier's jobs wait with no job type."""
        from airflow.sdk.exceptions import AirflowFailException

        with job_database() as jobs:
            found = maintenance.unconsumed(jobs, settings.maintenance())
        if found:
            raise AirflowFailException("; ".join(found))
        return found

    release_dead_locks() >> purge() >> report_queue_depth() >> report_unconsumed()


worker_maintenance()
