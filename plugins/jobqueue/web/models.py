"""What the job queue's API takes and answers, and the links from a job into Airflow's UI."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Annotated, Any, Literal

import pydantic

from jobqueue.jobs import Attempt, Job, JobFilter

Status = Literal["queued", "scheduled", "running", "completed", "failed"]
STATUSES: list[str] = list(Status.__args__)  # type: ignore[attr-defined]
Action = Literal["retry", "reschedule", "cancel", "fail"]


def dag_run_url(worker: str | None) -> str | None:
    dag_id, _, run_id = (worker or "").partition("/")
    return f"/dags/{dag_id}/runs/{run_id}" if run_id else None


def task_log_url(attempt: Attempt) -> str | None:
    """The log of the task try that ran an attempt, in Airflow's UI (its DAG run's page when the
    task is not known: a completed attempt's)."""
    run = dag_run_url(attempt.worker_id)
    if run is None or attempt.task_id is None:
        return run
    try_number = f"?try_number={attempt.try_number}" if attempt.try_number else ""
    return f"{run}/tasks/{attempt.task_id}{try_number}"


@dataclasses.dataclass(frozen=True)
class JobOut(Job):
    """A job as the API shows it: the row, and a link to the DAG run that last worked on it."""

    dag_run_url: str | None = None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(**dataclasses.asdict(job), dag_run_url=dag_run_url(job.last_worker))


@dataclasses.dataclass(frozen=True)
class AttemptOut(Attempt):
    """An attempt as the API shows it: with the link to its task's log."""

    task_log_url: str | None = None

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(**dataclasses.asdict(attempt), task_log_url=task_log_url(attempt))


@dataclasses.dataclass(frozen=True)
class RunJobOut(JobOut):
    """A job a DAG run attempted: the job as it stands now, and that run's attempts of it."""

    attempts_in_run: list[AttemptOut] = dataclasses.field(default_factory=list)

    @classmethod
    def of_run(cls, job: Job, attempts: list[Attempt]) -> RunJobOut:
        shown = JobOut.of(job)
        fields = {field.name: getattr(shown, field.name) for field in dataclasses.fields(JobOut)}
        return cls(**fields, attempts_in_run=[AttemptOut.of(attempt) for attempt in attempts])


def _iso_datetime(value: Any) -> Any:
    """A date-time in JSON is an ISO 8601 string: a number (which pydantic would read as seconds
    since 1970) is refused rather than guessed."""
    if value is not None and not isinstance(value, str | datetime.datetime):
        raise ValueError("must be an ISO 8601 date-time string, such as 2026-12-01T09:00:00Z")
    return value


IsoDatetime = Annotated[datetime.datetime | None, pydantic.BeforeValidator(_iso_datetime)]

Reason = Annotated[
    str | None,
    pydantic.Field(None, max_length=1000, description="why: kept with the action in worker.job_actions"),
]


class Filter(pydantic.BaseModel):
    """Which jobs: every field given must match (the page's filter)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    identifier: str | None = None
    status: Status | None = None
    queue_name: str | None = None
    job_key: str | None = None
    error: str | None = pydantic.Field(None, description="text in last_error, any case")
    since: IsoDatetime = pydantic.Field(None, description="changed at or after (updated_at)")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, values: Any) -> Any:
        """An empty field of the page's form is no condition."""
        if isinstance(values, dict):
            return {name: None if value == "" else value for name, value in values.items()}
        return values

    @pydantic.field_validator("since")
    @classmethod
    def _utc_unless_said(cls, since: datetime.datetime | None) -> datetime.datetime | None:
        """A date-time without a zone (the page's date and time field) is UTC, as every page shows."""
        if since is not None and since.tzinfo is None:
            return since.replace(tzinfo=datetime.UTC)
        return since

    def job_filter(self) -> JobFilter:
        return JobFilter(**{field.name: getattr(self, field.name) for field in dataclasses.fields(JobFilter)})


class ListQuery(Filter):
    """A list's query: the filter and a window (FastAPI takes one model for a route's query)."""

    limit: int = pydantic.Field(50, ge=1, le=500)
    offset: int = pydantic.Field(0, ge=0)


class PageQuery(Filter):
    """The queue page's query: the filter and the page (anything else in a link is ignored)."""

    model_config = pydantic.ConfigDict(extra="ignore")

    page: int = pydantic.Field(1, ge=1)


class Enqueue(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    identifier: str
    payload: dict[str, Any] | list[Any] = {}
    queue_name: str | None = None
    run_at: IsoDatetime = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: list[str] | None = None
    job_key_mode: Literal["replace", "preserve_run_at", "unsafe_dedupe"] = "replace"


class ActionBody(pydantic.BaseModel):
    """An action on the jobs given by id, or on every job a filter matches (at most MOST_AT_ONCE)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    action: Action
    ids: list[int] | None = pydantic.Field(None, min_length=1, max_length=1000)
    filter: Filter | None = None
    run_at: IsoDatetime = None
    reason: Reason = None
    expected: int | None = pydantic.Field(
        default=None,
        description="with a filter, required: how many jobs the caller was shown (GET /api/jobs/count); "
        "refused if the filter matches another number now",
    )

    @pydantic.model_validator(mode="after")
    def _ids_or_filter(self) -> ActionBody:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give exactly one of ids and filter")
        if self.filter is not None and self.expected is None:
            raise ValueError(
                "an action on a filter needs expected: the number of jobs it matches, as GET "
                "/job-queue/api/jobs/count says (an action on every job must not happen by mistake)"
            )
        if self.action == "reschedule" and self.run_at is None:
            raise ValueError("reschedule needs run_at")
        return self


class Pausable(pydantic.BaseModel):
    """An identifier or a named queue, exactly one of them."""

    model_config = pydantic.ConfigDict(extra="forbid")

    identifier: str | None = None
    queue_name: str | None = None
    reason: Reason = None

    @pydantic.model_validator(mode="after")
    def _one(self) -> Pausable:
        if (self.identifier is None) == (self.queue_name is None):
            raise ValueError("give exactly one of identifier and queue_name")
        return self

    @property
    def kind(self) -> Literal["identifier", "queue"]:
        return "identifier" if self.identifier is not None else "queue"

    @property
    def name(self) -> str:
        return self.identifier if self.identifier is not None else str(self.queue_name)


class RateLimitBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    identifier: str
    rate_limit: str | None = pydantic.Field(
        description="'10/s', '100/m', '1000/h'; 'none' for no limit; null for the job type's own"
    )
    reason: Reason = None
