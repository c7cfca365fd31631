"""Cancelling a running job (graphile-worker's `helpers.abortSignal`; Procrastinate's abort).

Who cancels writes the request in the job's row (worker.cancel_jobs: cancel_requested_by). The run
holding the job reads the requests of the jobs it holds: once as a step starts (a job cancelled
between two steps of its chain never runs the next), then every POLL_SECONDS while the step's
handlers run, on a connection of its own opened only once a step has run that long (most steps end
sooner and never open it). A request reaches the job's `ctx`:

- an `async` handler's task is cancelled (CancelledError inside it);
- a synchronous or batch handler sees `ctx.cancelled` set (a threading.Event: `is_set()`, or
  `wait(seconds)` instead of a sleep) and may call `ctx.raise_if_cancelled()`; it cannot be stopped
  from outside, as a thread cannot.

Whatever the handler then returns, the job fails for good with "cancelled by <who>" (outcomes.py
records it; what it did through ctx is rolled back with its failure). A job whose handler ended
before the request reached its run keeps its outcome. A run that dies meanwhile leaves the job to
maintenance: force_unlock_workers fails it the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from jobqueue.completer import connection_lost
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0

OnCancel = Callable[[str], None]  # called with who asked


class Cancellations:
    """The cancel requests that reached one step's jobs, and who listens for each job's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked: dict[int, str] = {}
        self._listeners: dict[int, OnCancel] = {}

    def listen(self, job_id: int, on_cancel: OnCancel) -> None:
        """`on_cancel(who)` when the job is asked to stop: at once if it was already."""
        with self._lock:
            self._listeners[job_id] = on_cancel
            asked = self._asked.get(job_id)
        if asked is not None:
            on_cancel(asked)

    def deliver(self, requests: dict[int, str]) -> None:
        """Requests read from the job database ({job id: who}); each reaches its job once."""
        for job_id, who in requests.items():
            with self._lock:
                if job_id in self._asked:
                    continue
                self._asked[job_id] = who
                listener = self._listeners.get(job_id)
            log.warning("job %d: cancelled by %s", job_id, who)
            if listener is not None:
                listener(who)


class CancelWatch:
    """Reads the requests to cancel the jobs a run holds, every POLL_SECONDS while a step runs."""

    def __init__(
        self, worker_id: str, connect: Callable[[], JobManager], cancellations: Cancellations,
        interval: float = POLL_SECONDS,
    ) -> None:  # fmt: skip
        self.worker_id = worker_id
        self.connect = connect  # a connection of the watch's own, opened at its first read
        self.cancellations = cancellations
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cancel-watch", daemon=True)

    def read_now(self, jobs: JobManager) -> None:
        """Once, on the caller's connection (as a step starts)."""
        self.cancellations.deliver(jobs.cancel_requests(self.worker_id))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval * 5)

    def _watch(self) -> None:
        jobs: JobManager | None = None
        while not self._stopped.wait(self.interval):
            try:
                jobs = jobs or self.connect()
                self.cancellations.deliver(jobs.cancel_requests(self.worker_id))
            except Exception as exc:  # a restart of the job database: read again next time
                if not connection_lost(exc):
                    log.exception("reading the cancel requests of %s", self.worker_id)
                jobs = None
