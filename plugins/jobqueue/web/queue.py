"""The job queue as one user may see and steer it, for one request: the one way the routes reach
the job database, and the one place their rights are asked (of Airflow's auth manager, through
jobqueue/access.py). A read keeps to the identifiers the user may read; a change is refused whole,
before anything is done, if any job it touches is not the user's to change. One transaction per
request: an action and its record in worker.job_actions commit together."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends

from jobqueue import database, settings
from jobqueue.access import ACT, CONTROL, ENQUEUE, READ, Access
from jobqueue.exceptions import JobNotFound, JobQueueError
from jobqueue.jobs import Attempt, Job, JobFilter, JobSpec
from jobqueue.manager import JobManager
from jobqueue.web.models import ActionBody, Enqueue, Pausable, RateLimitBody

# An action on a filter takes at most this many jobs: more is refused, to be narrowed.
MOST_AT_ONCE = 100_000


def current_user() -> Any:
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


User = Annotated[Any, Depends(current_user())]


def current_access(user: User) -> Access:
    return Access.of(user)


Allowed = Annotated[Access, Depends(current_access)]


@dataclasses.dataclass(frozen=True)
class JobDetails:
    job: Job
    attempts: list[Attempt]
    actions: list[dict[str, Any]]  # what was done to it by hand
    cancel_request: dict[str, Any] | None  # {"by", "at"} while its running attempt is asked to stop


class UserQueue:
    """One user's queue for one request: `UserQueue.open(access)` in each route."""

    def __init__(self, jobs: JobManager, access: Access) -> None:
        self.jobs = jobs
        self.access = access

    @classmethod
    @contextmanager
    def open(cls, access: Access) -> Iterator[UserQueue]:
        with database.job_database(autocommit=False) as jobs, jobs.transaction():
            yield cls(jobs, access)

    @property
    def user(self) -> str:
        return self.access.name

    # -- reads

    def search(self, matching: JobFilter, limit: int, offset: int = 0) -> list[Job]:
        self._may_read(matching)
        return self.jobs.search_jobs(matching, limit=limit, offset=offset, identifiers=self.access.readable())

    def count(self, matching: JobFilter) -> int:
        self._may_read(matching)
        return self.jobs.count_jobs(matching, identifiers=self.access.readable())

    def counts(self) -> list[dict[str, Any]]:
        """Jobs per identifier and status."""
        return self.jobs.job_counts(self.access.readable())

    def job(self, job_id: int) -> Job:
        job = self.jobs.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        self.access.require(READ, [job.identifier])
        return job

    def attempts(self, job_id: int) -> list[Attempt]:
        self.job(job_id)
        return self.jobs.attempts(job_id)

    def details(self, job_id: int) -> JobDetails:
        """A job's page: the job, read and its right asked once, with what is kept beside it."""
        job = self.job(job_id)
        return JobDetails(
            job, self.jobs.attempts(job_id), self.jobs.job_actions(job_id), self.jobs.cancel_request(job_id)
        )

    def run(self, dag_id: str, run_id: str) -> tuple[list[Job], dict[str, int], dict[int, list[Attempt]]]:
        """What a DAG run attempted: the jobs, how they stand now per status, and the run's attempts
        of each job ({job id: attempts})."""
        self.access.require(READ, [dag_id])
        worker = f"{dag_id}/{run_id}"
        found = self.jobs.run_jobs(worker)
        by_job: dict[int, list[Attempt]] = {job.id: [] for job in found}
        for attempt in self.jobs.run_attempts(worker, list(by_job)):
            by_job[attempt.job_id or 0].append(attempt)
        return found, self.jobs.run_attempted_counts(worker), by_job

    def controls(self) -> dict[str, list[dict[str, Any]]]:
        """The pauses and rate limits the user may read."""
        limits = self.jobs.rate_limits()
        return {
            "paused": self._visible_pauses(),
            "rate_limits": [row for row in limits if self.access.may(READ, row["identifier"])],
        }

    def unconsumed(self) -> list[dict[str, Any]]:
        """Identifiers no job type consumes, with waiting jobs: no DAG's, so named only to whoever
        may read every DAG's jobs."""
        if not self.access.everything(READ):
            return []
        return self.jobs.unconsumed_identifiers(settings.maintenance().unconsumed_after_seconds)

    def live(self, running_limit: int, most_counted: int) -> dict[str, Any]:
        """What runs now and what waits: the running jobs, each identifier's gauges, the named queues
        with jobs due (to whoever reads every DAG's jobs), and the pauses."""
        identifiers = [name for name in self.jobs.live_identifiers() if self.access.may(READ, name)]
        return {
            "running": self.jobs.running_jobs(self.access.readable(), running_limit),
            "identifiers": self.jobs.live_gauges(identifiers, most_counted) if identifiers else [],
            "queues": self.jobs.waiting_queues() if self.access.everything(READ) else [],
            "paused": self._visible_pauses(),
        }

    def chart_identifiers(self, since: datetime.datetime) -> list[str]:
        """The identifiers the user may read that have counts since `since`."""
        return [name for name in self.jobs.chart_identifiers(since) if self.access.may(READ, name)]

    def minutes(
        self, identifier: str | None, since: datetime.datetime
    ) -> tuple[list[dict[str, Any]], list[float]]:
        """The charts' counts per minute since `since` of an identifier, or of every identifier the
        user may read together; and the latency buckets' edges."""
        if identifier is not None:
            self.access.require(READ, [identifier])
        identifiers = [identifier] if identifier is not None else self.chart_identifiers(since)
        return self.jobs.job_minutes(identifiers, since), self.jobs.latency_edges()

    def _visible_pauses(self) -> list[dict[str, Any]]:
        """An identifier's pause with its jobs; a named queue's, which may mix identifiers, only to
        whoever reads every DAG's jobs."""
        return [
            row
            for row in self.jobs.paused()
            if self.access.may(READ, row["name"] if row["kind"] == "identifier" else None)
        ]

    def _may_read(self, matching: JobFilter) -> None:
        if matching.identifier is not None:
            self.access.require(READ, [matching.identifier])

    # -- what the user may offer to do (the pages show only that)

    def may_act_on(self, identifiers: Any) -> set[str]:
        return self.access.allowed(ACT, identifiers)

    def may_act_on_filter(self, matching: JobFilter) -> bool:
        """Whether the user may act on every job the filter can reach: those of the identifier it
        names, else of every identifier the user reads (the action asks again of the jobs it finds)."""
        if matching.identifier is not None:
            return self.access.may(ACT, matching.identifier)
        readable = self.access.readable()
        if readable is None:
            return self.access.everything(ACT)
        return all(self.access.may(ACT, identifier) for identifier in readable)

    def may_control(self, identifiers: Any) -> set[str]:
        return self.access.allowed(CONTROL, identifiers)

    def may_control_queues(self) -> bool:
        return self.access.everything(CONTROL)

    # -- changes

    def enqueue(self, body: Enqueue) -> Job:
        self.access.require(ENQUEUE, [body.identifier])
        job = self.jobs.add_jobs([JobSpec(**body.model_dump())])[0]
        self.jobs.record_action([job.id], "enqueue", self.user, None)
        return job

    def act(self, body: ActionBody) -> list[Job]:
        """Retry, reschedule, cancel or fail the jobs given, or every job the filter matches."""
        if body.filter is not None:
            matching = body.filter.job_filter()
            ids = self._matching_ids(matching, body.expected or 0)
            detail: dict[str, Any] = {"filter": matching.given(), "jobs": len(ids)}
        else:
            ids, detail = list(body.ids or []), {}
        self.access.require(ACT, self.jobs.identifiers_of(ids))
        changed = self._apply(body, ids) if ids else []
        detail |= {
            "changed": [job.id for job in changed],
            "run_at": body.run_at and body.run_at.isoformat(),
            "reason": body.reason,
        }
        self.jobs.record_action(ids, body.action, self.user, detail)
        return changed

    def _matching_ids(self, matching: JobFilter, expected: int) -> list[int]:
        self._may_read(matching)
        ids = self.jobs.matching_ids(matching, self.access.readable(), most=MOST_AT_ONCE + 1)
        if len(ids) > MOST_AT_ONCE:
            raise JobQueueError(f"the filter matches more than {MOST_AT_ONCE:,} jobs: narrow it")
        if expected != len(ids):
            raise JobQueueError(
                f"the filter matches {len(ids)} jobs now, not the {expected} shown: look again, then act"
            )
        return ids

    def _apply(self, body: ActionBody, ids: list[int]) -> list[Job]:
        if body.action == "retry":
            return self.jobs.reschedule_jobs(ids, run_at=datetime.datetime.now(datetime.UTC), attempts=0)
        if body.action == "reschedule":
            return self.jobs.reschedule_jobs(ids, run_at=body.run_at)
        if body.action == "cancel":
            return self.jobs.cancel_jobs(ids, self.user)
        return self.jobs.permanently_fail_jobs(ids, body.reason or f"Failed by hand by {self.user}")

    def pause(self, body: Pausable) -> bool:
        return self._control("pause", body, lambda jobs: jobs.pause(body.kind, body.name, self.user))

    def resume(self, body: Pausable) -> bool:
        return self._control("resume", body, lambda jobs: jobs.resume(body.kind, body.name))

    def set_rate_limit(self, body: RateLimitBody) -> None:
        self._control("rate_limit", body, lambda jobs: jobs.set_rate_limit(body.identifier, body.rate_limit))

    def _control(
        self, action: str, body: Pausable | RateLimitBody, change: Callable[[JobManager], Any]
    ) -> Any:
        """Asked of the auth manager as editing the DAG of the identifier (a named queue: every
        DAG), then recorded in worker.job_actions in its transaction."""
        self.access.require(CONTROL, [body.identifier])
        changed = change(self.jobs)
        self.jobs.record_action([], action, self.user, body.model_dump())
        return changed
