"""Airflow's supervisors see their child's end at once, not a whole wait later.

Airflow 3.3's `WatchedSubprocess` (the supervisor of a task, of the triggerer's trigger runner, of a
DAG file's parse) waits on its child with `select()` on the child's sockets, then asks whether the
child has exited. A child's sockets close as it exits, a moment before it can be reaped: when the
supervisor reads the last end-of-file in that moment, it finds the child still alive, and its next
`select()` has no socket left to wait on and sleeps the whole wait. In `kill(escalation_delay=10)`,
which the triggerer calls when it stops (or when its loop dies, as after a PostgreSQL restart), that
is 10 s for a runner that ended in a tenth of one: a stack's stop took 11.5 s instead of 1.5 to 2.5
in one of four tries here, and the triggerer came back 10 s late after its database did.

`install()` makes that wait, once no socket is left, a poll of the child's exit (a few ms apart, up
to the same deadline); while sockets are open the wait is Airflow's own. If a later Airflow's
method is not the one this knows, `install()` declines and says so: the waits are Airflow's as
before. `python -m jobqueue.component` installs it in every component it starts.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

# The longest step between two looks at the child's exit: the child is already past closing its
# sockets, so it ends within milliseconds; a child that lives on costs a waitpid() per step.
POLL_STEP_SECONDS = 0.02


def install() -> bool:
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    original = WatchedSubprocess._service_subprocess
    if getattr(original, "_jobqueue_reaping", False):
        return True
    source = inspect.getsource(original)
    known = "self.selector.select(timeout=timeout)" in source and "_check_subprocess_exit" in source
    if not known or not hasattr(WatchedSubprocess, "_check_subprocess_exit"):
        log.warning(
            "Airflow's WatchedSubprocess._service_subprocess is not the one jobqueue.reaping knows: "
            "a supervisor may wait its whole delay for a child that has ended"
        )
        return False

    def _service_subprocess(
        self: Any, max_wait_time: float, raise_on_timeout: bool = False, expect_signal: int | None = None
    ) -> int | None:
        if self.selector.get_map():
            return original(self, max_wait_time, raise_on_timeout, expect_signal)
        return _wait_for_exit(self, max_wait_time, raise_on_timeout, expect_signal)

    _service_subprocess._jobqueue_reaping = True  # type: ignore[attr-defined]
    WatchedSubprocess._service_subprocess = _service_subprocess  # type: ignore[method-assign]
    return True


def _wait_for_exit(
    supervisor: Any, max_wait_time: float, raise_on_timeout: bool, expect_signal: int | None
) -> int | None:
    """What Airflow's wait does with no socket to select on, but ending when the child does."""
    deadline = time.monotonic() + max(0.01, max_wait_time)
    step = 0.001
    while (remaining := deadline - time.monotonic()) > 0:
        code = supervisor._check_subprocess_exit(expect_signal=expect_signal)
        if code is not None:
            return code  # as Airflow has it (a signal is a Negsignal)
        time.sleep(min(step, remaining))
        step = min(step * 2, POLL_STEP_SECONDS)
    return supervisor._check_subprocess_exit(raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)
