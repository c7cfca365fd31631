"""The job database as Airflow's components reach it: through the `worker_db` connection (an Airflow
connection, so its URL lives where Airflow keeps secrets). What the API server, the crontab's and the
maintenance DAG's tasks need, without the job types' modules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from jobqueue.manager import JobManager

JOB_DB_CONN_ID = "worker_db"


def connect() -> Any:
    """A new DB-API connection to the job database, through the `worker_db` connection."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=JOB_DB_CONN_ID).get_conn()


@contextlib.contextmanager
def job_database(autocommit: bool = True) -> Iterator[JobManager]:
    """One connection to the job database for a task of ours, or a request of the API server's."""
    conn = connect()
    conn.autocommit = autocommit
    try:
        yield JobManager(conn)
    finally:
        conn.close()
