"""The job queue's pages and REST API, served by Airflow's api-server under /job-queue and shown
inside Airflow's UI (see plugins/jobs_plugin.py): the queue (Browse > Job queue), one job, and the
Jobs tab of every DAG run's page.

Every route requires Airflow's authentication (a Bearer token, or the UI's session cookie): plugin
routes get none by themselves. What a user may read and do is asked of Airflow's auth manager about
the DAG each job belongs to (jobqueue/access.py): a refusal is a 403 that changes nothing, lists and
counts hold only what the user may read, and the page offers only the actions the user may take.
Actions sent with the cookie must also carry the header `X-Requested-With: jobs-page`, which a
cross-site form cannot send (no CSRF). Each action goes through the SQL admin functions, in one
transaction with its record in worker.job_actions (who, and the reason given).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import jinja2
import pydantic
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from jobqueue import database, paths, settings
from jobqueue.access import ACT, CONTROL, ENQUEUE, READ, Access
from jobqueue.exceptions import AccessRefused, JobQueueError
from jobqueue.jobs import FailedAttempt, Job, JobSpec
from jobqueue.manager import JobManager, PauseKind

STATUSES = ["queued", "scheduled", "running", "completed", "failed"]
PAGE_SIZE = 50
Action = Literal["retry", "reschedule", "cancel", "fail"]


def _current_user() -> Any:
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


User = Annotated[Any, Depends(_current_user())]


def _access(user: User) -> Access:
    return Access.of(user)


Allowed = Annotated[Access, Depends(_access)]


@dataclasses.dataclass(frozen=True)
class JobOut(Job):
    """A job as the API shows it: the row, and a link to the DAG run that last worked on it."""

    dag_run_url: str | None = None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(**dataclasses.asdict(job), dag_run_url=dag_run_url(job.last_worker))


def _iso_datetime(value: Any) -> Any:
    """A date-time in JSON is an ISO 8601 string: a number (which pydantic would read as seconds
    since 1970) is refused rather than guessed."""
    if value is not None and not isinstance(value, str | datetime.datetime):
        raise ValueError("must be an ISO 8601 date-time string, such as 2026-12-01T09:00:00Z")
    return value


IsoDatetime = Annotated[datetime.datetime | None, pydantic.BeforeValidator(_iso_datetime)]


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


Reason = Annotated[
    str | None,
    pydantic.Field(None, max_length=1000, description="why: kept with the action in worker.job_actions"),
]


class ActionBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    action: Action
    ids: list[int] = pydantic.Field(min_length=1, max_length=1000)
    run_at: IsoDatetime = None
    reason: Reason = None


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
    def kind(self) -> PauseKind:
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


def dag_run_url(worker: str | None) -> str | None:
    dag_id, _, run_id = (worker or "").partition("/")
    return f"/dags/{dag_id}/runs/{run_id}" if run_id else None


def task_log_url(attempt: FailedAttempt) -> str | None:
    """The log of the task try that ran a failed attempt, in Airflow's UI."""
    run = dag_run_url(attempt.worker_id)
    if run is None or attempt.task_id is None:
        return run
    try_number = f"?try_number={attempt.try_number}" if attempt.try_number else ""
    return f"{run}/tasks/{attempt.task_id}{try_number}"


@dataclasses.dataclass(frozen=True)
class AttemptOut(FailedAttempt):
    """A failed attempt as the API shows it: with the link to its task's log."""

    task_log_url: str | None = None

    @classmethod
    def of(cls, attempt: FailedAttempt) -> AttemptOut:
        return cls(**dataclasses.asdict(attempt), task_log_url=task_log_url(attempt))


@contextmanager
def job_database() -> Iterator[JobManager]:
    """One transaction per request: an action and its record commit together."""
    with database.job_database(autocommit=False) as jobs, jobs.transaction():
        yield jobs


def require_action_header(request: Request) -> None:
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    if request.headers.get("x-requested-with") != "jobs-page":
        raise HTTPException(403, "actions from the page must carry X-Requested-With: jobs-page")


def apply_action(jobs: JobManager, body: ActionBody, actor: str) -> list[Job]:
    if body.action == "retry":
        changed = jobs.reschedule_jobs(body.ids, run_at=datetime.datetime.now(datetime.UTC), attempts=0)
    elif body.action == "reschedule":
        if body.run_at is None:
            raise HTTPException(422, "reschedule needs run_at")
        changed = jobs.reschedule_jobs(body.ids, run_at=body.run_at)
    elif body.action == "cancel":
        changed = jobs.remove_jobs(body.ids)
    else:
        changed = jobs.permanently_fail_jobs(body.ids, body.reason or f"Failed by hand by {actor}")
    detail = {
        "changed": [job.id for job in changed],
        "run_at": body.run_at and body.run_at.isoformat(),
        "reason": body.reason,
    }
    jobs.record_action(body.ids, body.action, actor, detail)
    return changed


def _control(
    request: Request,
    access: Access,
    action: str,
    body: Pausable | RateLimitBody,
    change: Callable[[JobManager], Any],
) -> Any:
    """A pause, a resume or a rate limit: asked of the auth manager as editing the DAG of the
    identifier (a named queue: every DAG), then recorded in worker.job_actions in its transaction."""
    require_action_header(request)
    access.require(CONTROL, [body.identifier])
    try:
        with job_database() as jobs:
            changed = change(jobs)
            jobs.record_action([], action, access.name, body.model_dump())
    except JobQueueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return changed


def visible_pauses(paused: list[dict[str, Any]], access: Access) -> list[dict[str, Any]]:
    """The pauses the user may read: an identifier's with its jobs; a named queue's, which may mix
    identifiers, only to whoever reads every DAG's jobs."""
    return [row for row in paused if access.may(READ, row["name"] if row["kind"] == "identifier" else None)]


def _root(request: Request) -> str:
    """The path the app is mounted at (the plugin's url_prefix), which the page's links start with."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.INCLUDE_DIR / "templates" / "web"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.globals["dag_run_url"] = dag_run_url
    environment.globals["task_log_url"] = task_log_url
    return environment


def create_app() -> FastAPI:
    app = FastAPI(
        title="Job queue",
        description="The job table (schema worker) of jobqueue: list, inspect, enqueue and act on jobs.",
        dependencies=[Depends(_current_user())],
        # FastAPI's own schema and docs routes would skip the app's dependencies: ours below do not.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    templates = _templates()

    @app.exception_handler(AccessRefused)
    def refused(request: Request, exc: AccessRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/jobs", response_model=list[JobOut], summary="List jobs, newest first, with filters")
    def list_jobs(
        access: Allowed,
        identifier: str | None = None,
        status: Literal["queued", "scheduled", "running", "completed", "failed"] | None = None,
        queue_name: str | None = None,
        job_key: str | None = None,
        error: Annotated[str | None, Query(description="text in last_error")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[JobOut]:
        if identifier is not None:
            access.require(READ, [identifier])
        with job_database() as jobs:
            found = jobs.search_jobs(
                identifier=identifier, status=status, queue_name=queue_name, job_key=job_key, error=error,
                limit=limit, offset=offset, identifiers=access.readable(),
            )  # fmt: skip
        return [JobOut.of(job) for job in found]

    @app.get("/api/counts", summary="Jobs per identifier and status")
    def counts(access: Allowed) -> list[dict[str, Any]]:
        with job_database() as jobs:
            return jobs.job_counts(access.readable())

    def readable_job(jobs: JobManager, job_id: int, access: Access) -> Job:
        job = jobs.get_job(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        access.require(READ, [job.identifier])
        return job

    @app.get("/api/jobs/{job_id}", response_model=JobOut, summary="One job")
    def get_job(job_id: int, access: Allowed) -> JobOut:
        with job_database() as jobs:
            return JobOut.of(readable_job(jobs, job_id, access))

    @app.get(
        "/api/jobs/{job_id}/attempts", response_model=list[AttemptOut],
        summary="A job's failed attempts, the latest first: error, traceback, the task and its log",
    )  # fmt: skip
    def failed_attempts(job_id: int, access: Allowed) -> list[AttemptOut]:
        with job_database() as jobs:
            readable_job(jobs, job_id, access)
            return [AttemptOut.of(attempt) for attempt in jobs.failed_attempts(job_id)]

    @app.post("/api/jobs", response_model=JobOut, status_code=201, summary="Enqueue a job (worker.add_job)")
    def enqueue(body: Enqueue, access: Allowed, request: Request) -> JobOut:
        require_action_header(request)
        access.require(ENQUEUE, [body.identifier])
        try:
            with job_database() as jobs:
                job = jobs.add_jobs([JobSpec(**body.model_dump())])[0]
                jobs.record_action([job.id], "enqueue", access.name, None)
        except JobQueueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return JobOut.of(job)

    @app.post(
        "/api/jobs/actions", response_model=list[JobOut], summary="Retry, reschedule, cancel or fail jobs"
    )
    def act(body: ActionBody, access: Allowed, request: Request) -> list[JobOut]:
        require_action_header(request)
        try:
            with job_database() as jobs:
                access.require(ACT, jobs.identifiers_of(body.ids))
                changed = apply_action(jobs, body, access.name)
        except JobQueueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return [JobOut.of(job) for job in changed]

    @app.post("/api/jobs/{job_id}/retry", response_model=list[JobOut], summary="Retry one job now")
    def retry(job_id: int, access: Allowed, request: Request) -> list[JobOut]:
        return act(ActionBody(action="retry", ids=[job_id]), access, request)

    @app.post("/api/jobs/{job_id}/cancel", response_model=list[JobOut], summary="Cancel (remove) one job")
    def cancel(job_id: int, access: Allowed, request: Request) -> list[JobOut]:
        return act(ActionBody(action="cancel", ids=[job_id]), access, request)

    @app.get("/api/controls", summary="What is paused, and the rate limits")
    def controls(access: Allowed) -> dict[str, list[dict[str, Any]]]:
        with job_database() as jobs:
            paused, limits = jobs.paused(), jobs.rate_limits()
        return {
            "paused": visible_pauses(paused, access),
            "rate_limits": [row for row in limits if access.may(READ, row["identifier"])],
        }

    @app.post("/api/pause", summary="Pause an identifier or a queue: its jobs wait, unclaimed")
    def pause(body: Pausable, access: Allowed, request: Request) -> dict[str, bool]:
        change = lambda jobs: jobs.pause(body.kind, body.name, access.name)  # noqa: E731
        return {"changed": _control(request, access, "pause", body, change)}

    @app.post("/api/resume", summary="Resume a paused identifier or queue")
    def resume(body: Pausable, access: Allowed, request: Request) -> dict[str, bool]:
        change = lambda jobs: jobs.resume(body.kind, body.name)  # noqa: E731
        return {"changed": _control(request, access, "resume", body, change)}

    @app.post("/api/rate_limits", summary="Set an identifier's rate limit, over its job type's")
    def set_rate_limit(body: RateLimitBody, access: Allowed, request: Request) -> dict[str, bool]:
        change = lambda jobs: jobs.set_rate_limit(body.identifier, body.rate_limit)  # noqa: E731
        _control(request, access, "rate_limit", body, change)
        return {"changed": True}

    @app.get(
        "/api/runs/{dag_id}/{run_id:path}", response_model=list[JobOut],
        summary="The jobs a DAG run worked on last, failed ones first",
    )  # fmt: skip
    def run_jobs(dag_id: str, run_id: str, access: Allowed) -> list[JobOut]:
        access.require(READ, [dag_id])
        with job_database() as jobs:
            return [JobOut.of(job) for job in jobs.run_jobs(f"{dag_id}/{run_id}")]

    @app.get("/runs/{dag_id}/{run_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(dag_id: str, run_id: str, request: Request, access: Allowed) -> str:
        """The Jobs tab of a DAG run's page in Airflow's UI."""
        access.require(READ, [dag_id])
        worker = f"{dag_id}/{run_id}"
        with job_database() as jobs:
            found, counts = jobs.run_jobs(worker), jobs.run_job_counts(worker)
        return templates.get_template("run.html").render(
            jobs=found, counts=counts, worker=worker, root=_root(request)
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(
        request: Request,
        access: Allowed,
        identifier: str | None = None,
        status: str | None = None,
        queue_name: str | None = None,
        job_key: str | None = None,
        error: str | None = None,
        page: Annotated[int, Query(ge=1)] = 1,
    ) -> str:
        filters = {
            "identifier": identifier,
            "status": status,
            "queue_name": queue_name,
            "job_key": job_key,
            "error": error,
        }
        filters = {name: value or None for name, value in filters.items()}
        if filters["identifier"] is not None:
            access.require(READ, [filters["identifier"]])
        readable = access.readable()
        with job_database() as jobs:
            found = jobs.search_jobs(
                **filters, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE, identifiers=readable
            )
            counts = jobs.job_counts(readable)
            # Jobs nothing consumes belong to no DAG: named to whoever may read every DAG's.
            within = settings.maintenance().unconsumed_after_seconds
            unconsumed = jobs.unconsumed_identifiers(within) if access.everything(READ) else []
            paused = jobs.paused()
            rate_limits = {row["identifier"]: row for row in jobs.rate_limits() if row["rate_limit"]}
        paused = visible_pauses(paused, access)
        paused_identifiers = {row["name"]: row for row in paused if row["kind"] == "identifier"}
        rate_limits = {name: row for name, row in rate_limits.items() if access.may(READ, name)}
        table: dict[str, dict[str, int]] = {name: {} for name in sorted({*paused_identifiers, *rate_limits})}
        for row in counts:
            table.setdefault(row["identifier"], {})[row["status"]] = row["jobs"]
        return templates.get_template("jobs.html").render(
            jobs=found[:PAGE_SIZE], more=len(found) > PAGE_SIZE, page=page, filters=filters,
            counts=dict(sorted(table.items())), statuses=STATUSES,
            unconsumed={row["identifier"]: row for row in unconsumed},
            paused_identifiers=paused_identifiers, rate_limits=rate_limits,
            paused_queues=[row for row in paused if row["kind"] == "queue"],
            may_act=access.allowed(ACT, {job.identifier for job in found}),
            may_control=access.allowed(CONTROL, table), may_control_queues=access.everything(CONTROL),
            root=_root(request),
        )  # fmt: skip

    @app.get("/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def detail(job_id: int, request: Request, access: Allowed) -> str:
        with job_database() as jobs:
            job = readable_job(jobs, job_id, access)
            actions = jobs.job_actions(job_id)
            attempts = jobs.failed_attempts(job_id)
        return templates.get_template("job.html").render(
            job=job, actions=actions, attempts=attempts, may_act=access.may(ACT, job.identifier),
            root=_root(request),
        )  # fmt: skip

    return app
