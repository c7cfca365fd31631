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

The scheduler: when idle it sleeps `[scheduler] scheduler_idle_sleep_time` (1 s) between loops,
so each step of a chain could wait up to a second to start; a short sleep instead costs a loop
(~18 ms of CPU) every time it ends. `install_scheduler()` gives that loop a sleep that ends when the
loop has work: a job trigger fired (a thread LISTENs on the job database's `worker_fired`, which
the trigger NOTIFYs right after its event) or a task ended (the LocalExecutor's result queue has
its result, the task's state already recorded). Otherwise it sleeps as Airflow would. An executor
whose ends we cannot hear (Celery's results come by polling) gets the short sleep,
WORKER_SCHEDULER_HOT_SLEEP, for WORKER_SCHEDULER_HOT_SECONDS after a trigger fired. Waking on every
job's notification instead, with the short sleep for everyone, cost the scheduler 21 s of CPU a
minute at 10 jobs/s (about a loop per job), whatever the runs. When the job database is out of
reach, the sleep is Airflow's. `python -m jobqueue.component scheduler` installs it. The idle
sleep also mends a stale "at max_active_runs" flag of Airflow's (max_active.py), and lasts up to
WORKER_SCHEDULER_IDLE_SECONDS (10 s) instead of 1 s, ended as soon as one query, asked once a
second, finds anything else the loop would do (idle_probe.py).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import select
import sys
import threading
import time
from typing import Any

import anyio

from jobqueue import idle_probe, max_active

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
    """The `time` module as the scheduler's loop sees it, with a sleep that ends when the loop has
    work (see the module's docstring)."""

    WAKE_DELAY = 0.05
    PROBE_EVERY = 1.0

    def __init__(self, conninfo: str, hot_seconds: float, hot_sleep: float, idle_seconds: float) -> None:
        self.conninfo = conninfo
        self.idle_seconds = idle_seconds
        self.hot_seconds = hot_seconds
        self.hot_sleep = hot_sleep
        self.last_news = float("-inf")
        self.listener: threading.Thread | None = None
        self.closed = threading.Event()
        self._news_out, self._news_in = os.pipe()
        os.set_blocking(self._news_out, False)
        os.set_blocking(self._news_in, False)
        self.task_ends: list[int] = []  # readable when an executor has a task's result
        self.unheard: list[str] = []  # executors whose task ends we cannot hear

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if self.listener is None:  # started on first use: after the executor forked its workers
            runner = sys._getframe(1).f_locals.get("self")
            self._hear_executors(runner)
            self._lengthen_idle_sleep(runner)
            self.listener = threading.Thread(target=self._listen, name="jobqueue-wakeup", daemon=True)
            self.listener.start()
        if self.unheard and time.monotonic() - self.last_news < self.hot_seconds:
            seconds = min(seconds, self.hot_sleep)
        if max_active.repair_due():  # a stale flag held a job type's runs back: the loop has work
            return
        until = time.monotonic() + seconds
        # Airflow's cadence was a loop a second: the probe keeps it for everything the loop could
        # find, at the cost of one query (idle_probe.py).
        while not self._woken(min(self.PROBE_EVERY, until - time.monotonic())):
            if time.monotonic() >= until or idle_probe.has_work():
                return

    def _woken(self, seconds: float) -> bool:
        """Waits up to `seconds`: whether a job trigger fired or a task ended meanwhile."""
        try:
            ready, _, _ = select.select([self._news_out, *self.task_ends], [], [], max(0.0, seconds))
        except (OSError, ValueError) as exc:  # an executor closed its queue (it is shutting down)
            log.warning("scheduler wake-up: cannot wait on the executors' results (%s)", exc)
            self.task_ends = []
            return True
        if self._news_out in ready:
            self._drain_news()
            # The trigger's asset event is written about 25 ms after the notification (0.046 s at
            # most measured): wake the loop once it is there.
            time.sleep(max(0.0, self.last_news + self.WAKE_DELAY - time.monotonic()))
        return bool(ready)

    def _lengthen_idle_sleep(self, runner: Any) -> None:
        """The loop's idle sleep becomes `idle_seconds` when the probe can read the scheduler's
        work; else it stays as configured."""
        configured = getattr(runner, "_scheduler_idle_sleep_time", None)
        if not isinstance(configured, (int, float)) or self.idle_seconds <= configured:
            return
        if idle_probe.supported():
            runner._scheduler_idle_sleep_time = self.idle_seconds

    def _hear_executors(self, runner: Any) -> None:
        """The result queues of the scheduler's executors (the loop's caller is SchedulerJobRunner,
        whose executors are started before its loop): a LocalExecutor's workers put a task's
        result there once its state is recorded, and the loop's heartbeat reads them all."""
        for executor in getattr(runner, "executors", None) or []:
            reader: Any = getattr(getattr(executor, "result_queue", None), "_reader", None)
            try:
                self.task_ends.append(reader.fileno())
            except (AttributeError, OSError, ValueError):
                self.unheard.append(type(executor).__name__)
        if not self.task_ends and not self.unheard:
            self.unheard.append("no executor found")
        if self.unheard:
            log.warning(
                "scheduler wake-up: cannot hear task ends on %s; sleeps %.2f s for %.0f s after a fire",
                ", ".join(self.unheard),
                self.hot_sleep,
                self.hot_seconds,
            )

    def _drain_news(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._news_out, 4096):
                pass

    def _listen(self) -> None:
        import psycopg

        from jobqueue.channel import FIRED_CHANNEL

        backoff = 1.0
        while not self.closed.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"listen {FIRED_CHANNEL}")
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
        with contextlib.suppress(BlockingIOError):  # the pipe is full: the loop has news already
            os.write(self._news_in, b"!")

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
        or "in self.executors:" not in source  # _SchedulerSleep hears their task ends
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
    sleep = _SchedulerSleep(listen_to, hot_seconds, hot_sleep, settings.scheduler_idle_seconds())
    scheduler_job_runner.time = sleep  # type: ignore[assignment]
    return True
