"""What our tasks read from the context Airflow hands them, read here and nowhere else.

Airflow's objects are not what they print: in the Task SDK a run's `run_type` and a run's state are
`str` enums whose `str()` is `'DagRunType.SCHEDULED'` or `'DagRunState.SUCCESS'`, never
`'scheduled'` or `'success'` (comparing `str(run.run_type)` with `"scheduled"` once made every cron
tick enqueue nothing). So each value is read once, here, as its plain value, into our own frozen
`TaskRun`; the rest of the package takes a `TaskRun` and never touches the context. Tests get the
context from Airflow itself (`dag.test()`, or the stack's scheduler), never build it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any

# DagRunType's values (airflow.utils.types, and the Task SDK's copy of it).
SCHEDULED = "scheduled"
BACKFILL = "backfill"


def plain(value: Any) -> str:
    """An Airflow enum (a run type, a state) as its value: `"success"`, not `"DagRunState.SUCCESS"`."""
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


@dataclasses.dataclass(frozen=True)
class TaskRun:
    """One try of one task of one DAG run, as our code needs it."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    run_type: str  # DagRunType's value: "manual", "scheduled", "backfill", "asset_triggered", ...
    logical_date: datetime.datetime | None
    run_after: datetime.datetime | None
    conf: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, context: Mapping[str, Any]) -> TaskRun:
        run, ti = context["dag_run"], context["ti"]
        return cls(
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            task_id=ti.task_id,
            try_number=int(ti.try_number),
            run_type=plain(run.run_type),
            logical_date=context.get("logical_date"),
            run_after=getattr(run, "run_after", None),
            conf=dict(run.conf or {}),
        )

    @property
    def worker_id(self) -> str:
        """A DAG run is one worker: `<dag_id>/<run_id>`."""
        return worker_id(self.dag_id, self.run_id)

    @property
    def tick(self) -> datetime.datetime | None:
        """The time of the cron tick this run stands for: a run the schedule started, or a
        backfill's; None for any other run (manual, asset-triggered)."""
        if self.run_type not in (SCHEDULED, BACKFILL):
            return None
        return self.logical_date or self.run_after

    @property
    def backfilled(self) -> bool:
        return self.run_type == BACKFILL


def worker_id(dag_id: str, run_id: str) -> str:
    return f"{dag_id}/{run_id}"


def worker_of(context: Mapping[str, Any]) -> str:
    """The worker of a DAG-level callback's context, which has a run but no task instance."""
    return worker_id(context["dag"].dag_id, context["run_id"])


def dag_run_state(ti: Any, dag_id: str, run_id: str) -> str | None:
    """The state of another DAG run (`"running"`, `"success"`, ...), asked through the task's own
    instance; None when Airflow has no such run. Any other error is raised: a run that cannot be
    asked about is not a run that ended."""
    try:
        return plain(ti.get_dagrun_state(dag_id, run_id))
    except Exception as exc:
        if _status_code(exc) == 404:
            return None
        raise


def _status_code(exc: BaseException) -> int | None:
    """The HTTP status of the execution API's answer behind `exc`: a task under a supervisor gets it
    as an AirflowRuntimeError whose detail holds it, one run in-process (dag.test()) as the
    client's own ServerResponseError."""
    response = getattr(exc, "response", None)
    if response is not None:
        return int(response.status_code)
    detail = getattr(getattr(exc, "error", None), "detail", None)
    code = detail.get("status_code") if isinstance(detail, dict) else None
    return int(code) if code is not None else None
