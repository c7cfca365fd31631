"""worker_maintenance: every five minutes, release jobs whose worker is gone, purge old history,
and log the queue depth. release_dead_locks >> purge >> report_queue_depth."""

from __future__ import annotations

import datetime

from airflow.sdk import dag, task

from jobqueue import maintenance, runs, settings


@dag(
    schedule="*/5 * * * *",
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=runs.DEFAULT_ARGS,
    tags=["jobs", "maintenance"],
    doc_md=__doc__,
)
def worker_maintenance():
    @task
    def release_dead_locks(**context) -> dict:
        def run_state(dag_id: str, run_id: str) -> str | None:
            try:
                return str(context["ti"].get_dagrun_state(dag_id, run_id))
            except Exception as exc:
                # Only "no such run" means the run is gone; any other error must not release jobs.
                if "not found" in str(exc).lower() or "not_found" in str(exc).lower():
                    return None
                raise

        with runs.job_database() as jobs:
            return maintenance.release_dead_locks(jobs, run_state, settings.maintenance())

    @task
    def purge() -> dict:
        with runs.job_database() as jobs:
            return maintenance.purge(jobs, settings.maintenance())

    @task
    def report_queue_depth() -> list:
        with runs.job_database() as jobs:
            return [dict(row) for row in maintenance.report_queue_depth(jobs)]

    release_dead_locks() >> purge() >> report_queue_depth()


worker_maintenance()
