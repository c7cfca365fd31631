"""The job table's notification channel, and how its listeners (the trigger, the scheduler's wake-up)
reach the job database from an Airflow Connection. A module of its own so that both can import it:
the trigger calls the wake-up, and neither imports the other for these."""

from __future__ import annotations

from typing import Any

import psycopg

# worker._notify sends on it: a JSON list of the identifiers that have new work (null: any).
CHANNEL = "worker_jobs"

# A trigger sends on it when it has fired (its asset event is on its way to Airflow's database): the
# scheduler's wake-up listens to it, not to every job (jobqueue.wakeup).
FIRED_CHANNEL = "worker_fired"


def conninfo(conn: Any, application_name: str = "jobqueue-trigger") -> str:
    """A libpq connection string from an Airflow Connection."""
    return psycopg.conninfo.make_conninfo(
        host=conn.host or "127.0.0.1",
        port=str(conn.port or 5432),
        user=conn.login or None,
        password=conn.password or None,
        dbname=conn.schema or None,
        application_name=application_name,
    )
