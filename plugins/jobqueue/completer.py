"""Writing outcomes: one step's connections to the job database, and every outcome its jobs reach,
recorded through outcomes.Recorder (River's completer: the executor decides, this writes).

A job whose handler did something through `ctx` is recorded in that job's own transaction (a
success commits the handler's work with it, a failure rolls it back). Every other outcome goes to a
writer thread, which records as many as have come in, in one transaction: neither handlers nor SMTP
sessions wait for a commit, and a burst costs a few statements per group, not two per job. An
outcome lags its job's work by at most the statement being written: the window in which a crash
makes that job run again, as it would if the crash came just before the work ended.

A lost job database (a restart) is waited for, on a new connection, for RECONNECT_SECONDS: failing
the task instead would make its retry do again what was done (send a message twice). Any other
error stops the step: `record` raises it, so nothing more is done that could not be recorded.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from jobqueue.exceptions import OutcomeNotRecorded
from jobqueue.jobs import Job
from jobqueue.manager import JobManager
from jobqueue.outcomes import Completed, Failed, HandedOn, Outcome, Recorder, Retry

log = logging.getLogger(__name__)
Connect = Callable[[], Any]  # opens a new DB-API connection to the job database
RECONNECT_SECONDS = 120.0


def connection_lost(exc: BaseException) -> bool:
    import psycopg
    import psycopg2

    lost = (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        psycopg2.OperationalError,
        psycopg2.InterfaceError,
    )
    return isinstance(exc, lost)


class OpenedOnUse:
    """A connection opened the first time something uses it. A lane whose handlers never touch
    ctx's database (most: the outcome goes to the writer thread) opens none: each connection costs
    its task a few ms and PostgreSQL a backend's start, once per run (a spread burst of 40 runs made
    160 connections, four a run). Ending an unopened one (commit, rollback, close) is a no-op."""

    def __init__(self, connect: Connect, autocommit: bool) -> None:
        self._connect = connect
        self._autocommit = autocommit
        self._conn: Any = None

    def opened(self) -> Any:
        """The real connection, opened now if it is not yet."""
        if self._conn is None:
            conn = self._connect()
            conn.autocommit = self._autocommit
            self._conn = conn
        return self._conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.opened(), name)

    def commit(self) -> None:
        if self._conn is not None:
            self._conn.commit()

    def rollback(self) -> None:
        if self._conn is not None:
            self._conn.rollback()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def real_connection(conn: Any) -> Any:
    """What a handler gets as ctx.connection: the driver's own connection, never our wrapper."""
    return conn.opened() if isinstance(conn, OpenedOnUse) else conn


class Connections:
    """The job transactions' connections: at most one per job running at once, reused, each opened
    when first used."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect
        self.idle: list[JobManager] = []
        self.opened: list[Any] = []
        self.lock = threading.Lock()

    def take(self) -> JobManager:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return self._keep(OpenedOnUse(self.connect, autocommit=False))

    def fresh(self) -> JobManager:
        """A new autocommit connection, whatever became of the others."""
        conn = self.connect()
        conn.autocommit = True
        return self._keep(conn)

    def _keep(self, conn: Any) -> JobManager:
        with self.lock:
            self.opened.append(conn)
        return JobManager(conn)

    def replace(self, jobs: JobManager) -> JobManager:
        """A new connection for one that was lost; None of its work survives."""
        with contextlib.suppress(Exception):
            jobs.conn.close()
        try:
            return self.take()
        except Exception as exc:
            if not connection_lost(exc):
                raise
            return jobs  # still down: the caller tries again, with this closed one failing at once

    def give_back(self, jobs: JobManager) -> None:
        with self.lock:
            self.idle.append(jobs)

    def close(self) -> None:
        with self.lock:
            for conn in self.opened:
                with contextlib.suppress(Exception):
                    conn.close()


class Completer:
    """Records one step's outcomes, and counts them once committed."""

    def __init__(self, connect: Connect, recorder: Recorder, reconnect_seconds: float = RECONNECT_SECONDS):
        self.connections = Connections(connect)
        self.recorder = recorder
        self.reconnect_seconds = reconnect_seconds
        self.counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Job, Outcome] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_behind, name="outcomes", daemon=True)

    # -- the connections handlers work on

    def take(self) -> JobManager:
        return self.connections.take()

    def give_back(self, jobs: JobManager) -> None:
        self.connections.give_back(jobs)

    def fresh(self) -> JobManager:
        return self.connections.fresh()

    # -- outcomes

    def record(self, jobs: JobManager, job: Job, outcome: Outcome, touched: bool) -> JobManager:
        """A job's outcome: in the job's own transaction on `jobs` when its handler did something
        through ctx (`touched`), else by the writer thread. Returns the connection to go on with."""
        if not touched:
            self.record_later(job, outcome)
            return jobs
        if isinstance(outcome, Retry | Failed):
            jobs.rollback()  # what the handler did through ctx goes with its failure
            self.record_later(job, outcome)
            return jobs
        return self.write(jobs, [(job, outcome)], touched=True)

    def record_later(self, job: Job, outcome: Outcome) -> None:
        """An outcome with no transaction of its job's, for the writer thread to record."""
        if self._error is not None:
            raise self._error
        self._queue.put((job, outcome))

    def record_now(self, jobs: JobManager, job: Job, outcome: Outcome) -> None:
        """An outcome known before any handler ran (a refused payload), on an autocommit connection."""
        self._count(self.recorder.record(jobs, job, outcome))

    def write(self, jobs: JobManager, outcomes: list[tuple[Job, Outcome]], touched: bool) -> JobManager:
        """Records outcomes in one transaction and commits; returns the connection to go on with.
        If the job database went away, waits for it on a new connection: what a handler did
        through ctx went with the old one, so a job that `touched` it is retried instead."""
        deadline, backoff = time.monotonic() + self.reconnect_seconds, 0.5
        while True:
            try:
                with jobs.transaction():
                    counts = self.recorder.record_many(jobs, outcomes)
                self._count(counts)
                return jobs
            except Exception as exc:
                if not connection_lost(exc) or time.monotonic() > deadline:
                    names = ", ".join(str(job.id) for job, _ in outcomes[:10])
                    raise OutcomeNotRecorded(f"job(s) {names}: outcome not recorded: {exc}") from exc
                log.warning("recording %d outcome(s): %s; retrying on a new connection", len(outcomes), exc)
                if touched:
                    lost = f"the job database went away before the outcome was recorded: {exc}"
                    outcomes = [
                        (job, Retry(lost) if isinstance(outcome, Completed | HandedOn) else outcome)
                        for job, outcome in outcomes
                    ]
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            jobs = self.connections.replace(jobs)

    def _count(self, counts: dict[str, int]) -> None:
        with self._counts_lock:
            for kind, how_many in counts.items():
                self.counts[kind] = self.counts.get(kind, 0) + how_many

    # -- the writer thread

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Waits until every outcome given is recorded; raises what stopped the writer."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        """On the way out, after an error too: still writes what was done (a job whose work is done
        but unrecorded would be done again), then closes every connection."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=self.reconnect_seconds)
        self.connections.close()

    def _write_behind(self) -> None:
        jobs = self.connections.take()
        done = False
        while not done:
            item = self._queue.get()
            group = []
            while item is not None:
                group.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            done = item is None
            if group and self._error is None:
                try:
                    jobs = self.write(jobs, group, touched=False)
                except BaseException as exc:
                    self._error = exc
