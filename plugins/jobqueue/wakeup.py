"""Wakes Airflow's loops when jobs arrive, so that they can sleep long when none do.

The triggerer: lets a trigger hand its event to Airflow at once instead of at the next tick.

Airflow 3.3's trigger runner collects the events its triggers yield and sends them to the triggerer
(which writes them to the database) once per loop, and the loop sleeps one second between rounds
(`with anyio.move_on_after(1)` in TriggerRunner.arun). A job therefore waited 0.5 to 1 s before its
asset event existed, the largest single share of the add_job-to-mail latency (README, Performance).

`install()` replaces the `anyio` that module sees with one whose `move_on_after` remembers its cancel
scope; `wake()`, called by a trigger right after it yielded, ends that sleep, so the event is sent in
the same round. Nothing else changes: with no event the loop still sleeps a second, and if a later
Airflow no longer has this loop, `install()` declines (and says so) and the events go out at the next
tick as before. `python -m jobqueue.component triggerer` installs it.

The scheduler: when idle it sleeps `[scheduler] scheduler_idle_sleep_time` between loops. A short
sleep (0.1 s) makes each step of a chain start sooner but costs about a fifth of a core doing
nothing; the default (1 s) costs little but adds up to a second per step. `install_scheduler()`
gives that loop a sleep that is short while jobs are about (a notification on the job channel in
the last WORKER_SCHEDULER_HOT_SECONDS) and long otherwise, and that ends at once when a
notification arrives. A thread LISTENs on the job database for it; when the database is out of
reach the sleep is the long one. `python -m jobqueue.component scheduler` installs it.
"""

from __future__ import annotations

import inspect
import logging
import select
import threading
import time
from typing import Any

import anyio

log = logging.getLogger(__name__)

_scope: anyio.CancelScope | None = None
_pending = False
_installed = False


class _WakeableAnyio:
    """The anyio module, but `move_on_after` can be cut short by `wake()`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    @staticmethod
    def move_on_after(delay: float | None, shield: bool = False) -> anyio.CancelScope:
        global _scope, _pending
        if _pending:  # an event came while the loop was busy: do not sleep on it
            _pending = False
            delay = 0
        _scope = anyio.move_on_after(delay, shield=shield)
        return _scope


def install() -> bool:
    global _installed
    from airflow.jobs import triggerer_job_runner

    source = inspect.getsource(triggerer_job_runner.TriggerRunner.arun)
    if "anyio.move_on_after(" not in source or triggerer_job_runner.anyio is not anyio:
        log.warning("the triggerer's loop is not the one jobqueue.wakeup knows: events wait for its tick")
        return False
    triggerer_job_runner.anyio = _WakeableAnyio()  # type: ignore[assignment]
    _installed = True
    return True


def wake() -> None:
    """Ends the trigger runner's current sleep, so the events yielded so far go out now."""
    global _pending
    if not _installed:
        return
    _pending = True
    if _scope is not None:
        _scope.cancel()


class _SchedulerSleep:
    """The `time` module as the scheduler's loop sees it, with an adaptive, wakeable sleep."""

    WAKE_DELAY = 0.05

    def __init__(self, conninfo: str, hot_seconds: float, hot_sleep: float) -> None:
        self.conninfo = conninfo
        self.hot_seconds = hot_seconds
        self.hot_sleep = hot_sleep
        self.news = threading.Event()
        self.last_news = float("-inf")
        self.listener: threading.Thread | None = None
        self.closed = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if self.listener is None:  # started on first use: after the executor forked its workers
            self.listener = threading.Thread(target=self._listen, name="jobqueue-wakeup", daemon=True)
            self.listener.start()
        if time.monotonic() - self.last_news < self.hot_seconds:
            seconds = min(seconds, self.hot_sleep)
        if self.news.wait(max(0.0, seconds)):
            self.news.clear()
            # The trigger's asset event is written about 25 ms after the notification (0.046 s at
            # most measured): wake the loop once it is there.
            time.sleep(max(0.0, self.last_news + self.WAKE_DELAY - time.monotonic()))

    def _listen(self) -> None:
        import psycopg

        from jobqueue.channel import CHANNEL

        backoff = 1.0
        while not self.closed.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"listen {CHANNEL}")
                    backoff = 1.0
                    while not self.closed.is_set():
                        # What came already, then a wait on the socket itself (psycopg's
                        # notifies(timeout=...) wakes every 0.1 s).
                        for _ in conn.notifies(timeout=0):
                            self._heard()
                        select.select([conn.fileno()], [], [], 1.0)
            except Exception as exc:
                log.warning("scheduler wake-up: job database unreachable (%s); retrying", exc)
                self.closed.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _heard(self) -> None:
        self.last_news = time.monotonic()
        self.news.set()

    def close(self) -> None:
        self.closed.set()


def install_scheduler(conn_id: str = "worker_db") -> bool:
    from airflow.jobs import scheduler_job_runner
    from airflow.models.connection import Connection

    from jobqueue import settings
    from jobqueue.channel import conninfo

    source = inspect.getsource(scheduler_job_runner.SchedulerJobRunner._run_scheduler_loop)
    if (
        "time.sleep(min(self._scheduler_idle_sleep_time" not in source
        or scheduler_job_runner.time is not time
    ):
        log.warning("the scheduler's loop is not the one jobqueue.wakeup knows: it sleeps as configured")
        return False
    try:
        connection = Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:
        log.warning("scheduler wake-up off: no connection %r (%s)", conn_id, exc)
        return False
    hot_seconds, hot_sleep = settings.scheduler_hot()
    listen_to = conninfo(connection, application_name="jobqueue-scheduler-wakeup")
    scheduler_job_runner.time = _SchedulerSleep(listen_to, hot_seconds, hot_sleep)  # type: ignore[assignment]
    return True
