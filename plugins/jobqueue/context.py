"""What a job's handler gets beside its payload: graphile-worker's `helpers`, as `ctx` (JobContext);
a batch handler gets its jobs as BatchItems and the step's StepContext."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from jobqueue.completer import real_connection
from jobqueue.exceptions import JobAbandoned, JobCancelled
from jobqueue.jobs import Job, JobSpec, JsonValue
from jobqueue.manager import JobManager
from jobqueue.outcomes import Failed, Outcome, Retry


class JobLog(logging.LoggerAdapter):
    """A logger whose lines name the job: `job 42: resized to 800x600`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"job {self.extra['job_id'] if self.extra else '?'}: {msg}", kwargs


class JobContext:
    """`ctx.job`, `ctx.add_job(...)`, `ctx.add_jobs(...)`, `ctx.log`, `ctx.connection`, `ctx.worker_id`,
    `ctx.cancelled` (an Event, set when someone cancels the job: jobqueue/cancelling.py).

    Everything done through `ctx` (jobs added, queries on `ctx.connection`) belongs to the job's own
    transaction, which the runtime commits together with the job's outcome: a job completes with its
    children enqueued, or neither happened. A handler never commits itself.
    """

    def __init__(self, job: Job, worker_id: str, jobs: JobManager, payload: Callable[[], Any]) -> None:
        self.job = job
        self.worker_id = worker_id
        self.log = JobLog(logging.getLogger(f"jobqueue.jobs.{job.identifier}"), {"job_id": job.id})
        self._jobs = jobs
        self._payload = payload
        self._lock = threading.Lock()
        self._abandoned = False
        self.touched = False  # the handler did something in the job's transaction
        self.cancelled = threading.Event()  # graphile-worker's abortSignal
        self.cancelled_by: str | None = None
        self._on_cancel: list[Callable[[], None]] = []

    def raise_if_cancelled(self) -> None:
        """Raises JobCancelled once someone cancelled the job: call it between pieces of work."""
        if self.cancelled_by is not None:
            raise JobCancelled(f"cancelled by {self.cancelled_by}")

    def cancel(self, who: str) -> None:
        """Someone cancelled the job (the run read the request): sets `cancelled`, and stops an
        async handler's task."""
        with self._lock:
            self.cancelled_by = who
            callbacks = list(self._on_cancel)
        self.cancelled.set()
        for callback in callbacks:
            callback()

    def when_cancelled(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._on_cancel.append(callback)
            now = self.cancelled_by is not None
        if now:
            callback()

    @property
    def payload(self) -> Any:
        """The job's payload as its job type takes it (a later step of a chain reads it here)."""
        return self._payload()

    @property
    def connection(self) -> Any:
        """The job database connection, inside the job's transaction."""
        return real_connection(self._manager().conn)

    def add_job(self, identifier: str, payload: JsonValue = None, **options: Any) -> Job:
        """worker.add_job with its options (queue_name, run_at, max_attempts, job_key, priority,
        flags, job_key_mode), committed with this job's outcome."""
        return self._manager().add_job(identifier, payload, **options)

    def add_jobs(self, specs: Iterable[JobSpec]) -> list[Job]:
        return self._manager().add_jobs(specs)

    def _manager(self) -> JobManager:
        with self._lock:
            if self._abandoned:
                raise JobAbandoned(f"job {self.job.id} is past its time limit: nothing more is recorded")
            self.touched = True
            return self._jobs

    def rebind(self, jobs: JobManager) -> None:
        """Goes on with a new connection (the old one was lost)."""
        with self._lock:
            self._jobs = jobs

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True

    @property
    def abandoned(self) -> bool:
        with self._lock:
            return self._abandoned


@dataclasses.dataclass
class BatchItem:
    """One job of a batch handler's batch: its input and context, and how to report its outcome at
    once (`done`, `fail`, `retry`, or `report` with an Outcome). A job not reported when the handler
    returns takes what the handler returned for it (a list, one entry per job: a value, an
    exception or an Outcome), else None.

    The jobs of a batch share one connection, whose transaction each report commits: what a job
    enqueues through its `ctx` belongs to the next job reported, so report a job right after."""

    job: Job
    value: Any
    ctx: JobContext
    _report: Callable[[BatchItem, Any], None]
    reported: bool = False

    def done(self, value: Any = None) -> None:
        """Completed (or, in a chain, handed on to the next step) with this value."""
        self._report(self, value)

    def fail(self, message: str) -> None:
        """Failed for good: retrying cannot fix it."""
        self._report(self, Failed(message))

    def retry(self, message: str) -> None:
        """Failed for a retry with backoff."""
        self._report(self, Retry(message))

    def report(self, outcome: Outcome) -> None:
        """The job's outcome, as domain code decided it."""
        self._report(self, outcome)


@dataclasses.dataclass(frozen=True)
class StepContext:
    """A batch handler's `ctx`: the run, a log, and what the step's `prepare` returned (resolved in
    the task process, before a detached step leaves it)."""

    worker_id: str
    log: logging.Logger
    prepared: Any = None
