"""The LocalExecutor's workers leave when the host has had no task for a while, and come back with
the next one.

Airflow 3.3's LocalExecutor forks all of its `parallelism` workers (4 here) when it starts and keeps
them for ever ("Future enhancement if someone wants: shut down workers that have been idle for N
seconds", in its `_check_workers`). Each is a fork of the scheduler holding its own copy of what it
touched: 50 MiB of PSS apiece, 200 MiB of an idle stack's 1,044 (bench case 4's count, 2026-12-06).
Here, once no task has been queued or running for WORKER_EXECUTOR_IDLE_SECONDS (30), the executor's
sync() hands each worker the poison pill its own `end()` uses (None) and waits for them to exit (an
idle worker is blocked on the queue: it takes its pill at once). The next task finds no worker
with work outstanding, which is when Airflow's `_check_workers` forks them all again (4 in about
30 ms, on the scheduler's loop).

Only with fork (Linux's default), as Airflow's own spawning then forks them all at once; if a later
Airflow's executor is not the one this knows, `install()` declines and says so: the workers stay.
`python -m jobqueue.component scheduler` installs it when the LocalExecutor runs the host's tasks.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

# How long a worker given its pill is waited for: an idle one, blocked on the queue, leaves at once.
JOIN_SECONDS = 1.0
_QUEUES_SOURCE = """self.queued_tasks.pop(workload.key, None)
                or self.queued_callbacks.pop(workload.key, None)
                or self.queued_connection_tests.pop(workload.key, None)
            )"""


def install(idle_seconds: float) -> bool:
    from airflow.executors.local_executor import LocalExecutor, _run_worker

    original = LocalExecutor.sync
    if getattr(original, "_jobqueue_idle_workers", False):
        return True
    checks, worker = inspect.getsource(LocalExecutor._check_workers), inspect.getsource(_run_worker)
    known = (
        "self._check_workers()" in inspect.getsource(original)
        and "if not proc.is_alive():" in checks
        and "self._spawn_workers_with_gc_freeze(self.parallelism - len(self.workers))" in checks
        and "if workload is None:" in worker
        # the queues a workload comes from, which _busy() looks at
        and _QUEUES_SOURCE in inspect.getsource(LocalExecutor._process_workloads)
    )
    if not known:
        log.warning(
            "Airflow's LocalExecutor is not the one jobqueue.idle_workers knows: its workers stay "
            "while the host is idle"
        )
        return False
    if idle_seconds <= 0:
        return False

    def sync(self: Any) -> None:
        original(self)
        retire_when_idle(self, idle_seconds)

    sync._jobqueue_idle_workers = True  # type: ignore[attr-defined]
    LocalExecutor.sync = sync  # type: ignore[method-assign]
    return True


def retire_when_idle(executor: Any, idle_seconds: float, now: float | None = None) -> int:
    """Once the executor has had nothing to do for `idle_seconds`, each worker gets its pill and is
    waited for (an idle worker leaves at once); how many left. Called from the executor's sync(),
    after its heartbeat has handed out this loop's work: a task given to a worker is `running`."""
    now = time.monotonic() if now is None else now
    if _busy(executor) or not executor.is_mp_using_fork:
        executor._jobqueue_idle_since = None
        return 0
    since = getattr(executor, "_jobqueue_idle_since", None)
    if since is None:
        executor._jobqueue_idle_since = now
        return 0
    live = {pid: proc for pid, proc in executor.workers.items() if proc.is_alive()}
    if now - since < idle_seconds or not live:
        return 0
    for _ in live:
        executor.activity_queue.put(None)
    left = 0
    for pid, proc in live.items():
        proc.join(timeout=JOIN_SECONDS)
        if proc.is_alive():
            continue  # it will leave on its pill; _check_workers reaps it then
        proc.close()
        del executor.workers[pid]
        left += 1
    executor._jobqueue_idle_since = None  # the next pills wait for another idle stretch
    log.info("no task for %.0f s: %d LocalExecutor worker(s) left until the next task", now - since, left)
    return left


def _busy(executor: Any) -> bool:
    waiting = (
        executor.running,
        executor.queued_tasks,
        executor.queued_callbacks,
        executor.queued_connection_tests,
    )
    if any(waiting) or not executor.activity_queue.empty():
        return True
    with executor._unread_messages:
        return bool(executor._unread_messages.value > 0)
