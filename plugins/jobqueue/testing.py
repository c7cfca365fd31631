"""Running a job type in a test, without Airflow: what one DAG run of it does, in this process.

    from jobqueue.testing import run_once
    from tasks.password_reset import password_reset   # the team's DAG file, with its folder on sys.path

    jobqueue.add_job(database_url, "password_reset", {"customer_id": 1})
    assert run_once(password_reset, database_url) == [{"jobs": 1, "completed": 1}]

`run_once` claims the waiting jobs of the job type's identifier and runs each step in order, as the
tasks of one DAG run would (the same runtime: transactions, outcomes, retries, time limits), against
a real job database. What it does not play is Airflow's part: the trigger, the scheduler, task
retries, a step's `prepare` (pass what it would return as `prepared`). For that, enqueue on
`make run` and watch the job's page, or trigger the job type's DAG from the UI with a payload.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobqueue.declaration import JobType


def run_once(
    job_type: JobType,
    database_url: str,
    *,
    worker: str | None = None,
    conf: dict[str, Any] | None = None,
    cron: dict[str, Any] | None = None,
    prepared: Any = None,
    steps: Sequence[int] | None = None,
) -> list[dict[str, int]]:
    """The steps of one DAG run of `job_type` (all, or `steps`), in order; each step's summary, as
    its task returns it (`{"jobs": 3, "completed": 2, "retry": 1}`). `worker` is the run's id
    (`<dag_id>/<run_id>`, a new one by default); `conf`, a payload as a run triggered by hand
    carries it; `cron`, the tick a scheduled run stands for (`{"ts": ..., "backfilled": False}`)."""
    import psycopg

    from jobqueue.runtime import StepRun

    worker = worker or f"{job_type.identifier}/test__{uuid.uuid4().hex[:12]}"

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(database_url)

    def run(index: int) -> dict[str, int]:
        given = prepared if job_type.steps[index].prepare else None
        return StepRun(job_type, index, worker, connect, given).run(conf, cron)

    return [run(index) for index in (steps if steps is not None else range(len(job_type.steps)))]
