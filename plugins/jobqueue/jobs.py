"""Typed value objects for jobs, as the view worker.jobs shows them."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping, Sequence
from typing import Any

JsonValue = Any


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    # Only in what worker.remove_job returns: the row is gone from the table.
    REMOVED = "removed"


class JobKeyMode(enum.StrEnum):
    REPLACE = "replace"
    PRESERVE_RUN_AT = "preserve_run_at"
    UNSAFE_DEDUPE = "unsafe_dedupe"


@dataclasses.dataclass(frozen=True)
class Job:
    id: int
    identifier: str
    payload: JsonValue
    queue_name: str | None
    priority: int
    run_at: datetime.datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    job_key: str | None
    flags: tuple[str, ...] | None
    status: JobStatus
    locked_by: str | None
    locked_at: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    completed_at: datetime.datetime | None
    last_worker: str | None = None
    result: JsonValue = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        values = dict(row)
        values["status"] = JobStatus(values["status"])
        if values["flags"] is not None:
            values["flags"] = tuple(values["flags"])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One attempt of a job: a failed one as worker._job_attempts keeps it, or the job's latest while
    it runs or once it completed (from the job's row)."""

    attempt: int
    outcome: str  # "retry": failed, it runs again; "failed": for good; "running"; "completed"
    error: str | None
    traceback: str | None
    worker_id: str | None  # the DAG run, <dag_id>/<run_id>
    task_id: str | None  # the step; None when no task recorded it (the run's failure callback)
    try_number: int | None  # the task's try: with the run and the task, its log in Airflow's UI
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None  # None while it runs, and until it is recorded
    job_id: int | None = None


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """Which jobs a search, a count or an action on many is about: every field given must match."""

    identifier: str | None = None
    status: str | None = None  # a JobStatus value
    queue_name: str | None = None
    job_key: str | None = None
    error: str | None = None  # text in last_error, any case
    since: datetime.datetime | None = None  # changed at or after (updated_at)

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def given(self) -> dict[str, Any]:
        """The fields given, as JSON would keep them (an action's record)."""
        return {
            name: value.isoformat() if isinstance(value, datetime.datetime) else value
            for name, value in self.params().items()
            if value is not None
        }


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One job for add_jobs; the fields and defaults of worker.add_job."""

    identifier: str
    payload: JsonValue = dataclasses.field(default_factory=dict)
    queue_name: str | None = None
    run_at: datetime.datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: Sequence[str] | None = None
    job_key_mode: JobKeyMode | str = JobKeyMode.REPLACE

    def to_json(self) -> dict[str, JsonValue]:
        spec: dict[str, JsonValue] = {"identifier": self.identifier, "payload": self.payload}
        for name in ("queue_name", "max_attempts", "job_key", "priority"):
            if (value := getattr(self, name)) is not None:
                spec[name] = value
        if self.run_at is not None:
            spec["run_at"] = self.run_at.isoformat()
        if self.flags is not None:
            spec["flags"] = list(self.flags)
        spec["job_key_mode"] = str(self.job_key_mode)
        return spec
