"""The job queue's REST API (/job-queue/api/...): every route reads or changes through UserQueue,
which asks the user's rights; a refusal is a 403 (the app's exception handlers)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from jobqueue.web import charts
from jobqueue.web.models import (
    ActionBody,
    AttemptOut,
    Enqueue,
    Filter,
    JobOut,
    ListQuery,
    Pausable,
    RateLimitBody,
    RunJobOut,
)
from jobqueue.web.queue import Allowed, UserQueue


def require_action_header(request: Request) -> None:
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    if request.headers.get("x-requested-with") != "jobs-page":
        raise HTTPException(403, "actions from the page must carry X-Requested-With: jobs-page")


router = APIRouter()
changes = APIRouter(dependencies=[Depends(require_action_header)])
Filtered = Annotated[Filter, Query()]


@router.get("/jobs", response_model=list[JobOut], summary="List jobs, newest first, with filters")
def list_jobs(access: Allowed, query: Annotated[ListQuery, Query()]) -> list[JobOut]:
    with UserQueue.open(access) as queue:
        return [JobOut.of(job) for job in queue.search(query.job_filter(), query.limit, query.offset)]


@router.get("/jobs/count", summary="How many jobs match the filters (what an action on them would touch)")
def count_jobs(access: Allowed, filters: Filtered) -> dict[str, int]:
    with UserQueue.open(access) as queue:
        return {"jobs": queue.count(filters.job_filter())}


@router.get(
    "/counts",
    summary="Jobs per identifier and status (queued, scheduled, running, failed; completed: last 24 hours)",
)
def counts(access: Allowed) -> list[dict[str, Any]]:
    with UserQueue.open(access) as queue:
        return queue.counts()


@router.get("/jobs/{job_id}", response_model=JobOut, summary="One job")
def get_job(job_id: int, access: Allowed) -> JobOut:
    with UserQueue.open(access) as queue:
        return JobOut.of(queue.job(job_id))


@router.get(
    "/jobs/{job_id}/attempts", response_model=list[AttemptOut],
    summary="A job's attempts, the latest first: start, end, outcome, error, traceback, task and its log",
)  # fmt: skip
def attempts(job_id: int, access: Allowed) -> list[AttemptOut]:
    with UserQueue.open(access) as queue:
        return [AttemptOut.of(attempt) for attempt in queue.attempts(job_id)]


@changes.post("/jobs", response_model=JobOut, status_code=201, summary="Enqueue a job (worker.add_job)")
def enqueue(body: Enqueue, access: Allowed) -> JobOut:
    with UserQueue.open(access) as queue:
        return JobOut.of(queue.enqueue(body))


@changes.post(
    "/jobs/actions", response_model=list[JobOut],
    summary="Retry, reschedule, cancel or fail jobs: by id, or every job a filter matches",
    description="Cancel removes waiting and failed jobs and stops running ones (they fail for good, "
    "'cancelled by <you>'). With a filter, give `expected`: the count you were shown (GET "
    "/api/jobs/count); if the filter matches another number now, nothing is done.",
)  # fmt: skip
def act(body: ActionBody, access: Allowed) -> list[JobOut]:
    with UserQueue.open(access) as queue:
        return [JobOut.of(job) for job in queue.act(body)]


@changes.post("/jobs/{job_id}/retry", response_model=list[JobOut], summary="Retry one job now")
def retry(job_id: int, access: Allowed) -> list[JobOut]:
    return act(ActionBody(action="retry", ids=[job_id]), access)


@changes.post(
    "/jobs/{job_id}/cancel", response_model=list[JobOut],
    summary="Cancel one job: remove it if it waits or failed; stop it if it runs",
)  # fmt: skip
def cancel(job_id: int, access: Allowed) -> list[JobOut]:
    return act(ActionBody(action="cancel", ids=[job_id]), access)


@router.get("/controls", summary="What is paused, and the rate limits")
def controls(access: Allowed) -> dict[str, list[dict[str, Any]]]:
    with UserQueue.open(access) as queue:
        return queue.controls()


@changes.post("/pause", summary="Pause an identifier or a queue: its jobs wait, unclaimed")
def pause(body: Pausable, access: Allowed) -> dict[str, bool]:
    with UserQueue.open(access) as queue:
        return {"changed": queue.pause(body)}


@changes.post("/resume", summary="Resume a paused identifier or queue")
def resume(body: Pausable, access: Allowed) -> dict[str, bool]:
    with UserQueue.open(access) as queue:
        return {"changed": queue.resume(body)}


@changes.post("/rate_limits", summary="Set an identifier's rate limit, over its job type's")
def set_rate_limit(body: RateLimitBody, access: Allowed) -> dict[str, bool]:
    with UserQueue.open(access) as queue:
        queue.set_rate_limit(body)
    return {"changed": True}


@router.get(
    "/runs/{dag_id}/{run_id:path}", response_model=list[RunJobOut],
    summary="The jobs a DAG run attempted, whatever became of them later, failed ones first, each "
    "with that run's attempts of it",
)  # fmt: skip
def run_jobs(dag_id: str, run_id: str, access: Allowed) -> list[RunJobOut]:
    with UserQueue.open(access) as queue:
        found, _, attempts = queue.run(dag_id, run_id)
    return [RunJobOut.of_run(job, attempts[job.id]) for job in found]


@router.get(
    "/minutes",
    summary="Per minute of the last hour or day: completed, failed, retried, pickup latency, jobs due",
    description="Of one identifier, or of every one you may read together. Latency in seconds "
    "(p50, p95 of the completed jobs' started_at - run_at); `waiting`: the most jobs seen due.",
)
def minutes(
    access: Allowed, identifier: str | None = None, span: Literal["hour", "day"] = "hour"
) -> list[dict[str, Any]]:
    since = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0) - charts.SPANS[span]
    with UserQueue.open(access) as queue:
        rows, edges = queue.minutes(identifier, since)
    return [
        {
            "minute": minute.at,
            "completed": minute.completed,
            "failed": minute.failed,
            "retried": minute.retried,
            "latency_p50": charts.percentile(minute.latency, edges, 0.5),
            "latency_p95": charts.percentile(minute.latency, edges, 0.95),
            "waiting": minute.waiting,
        }
        for minute in charts.minutes_of(rows).values()
    ]


router.include_router(changes)
