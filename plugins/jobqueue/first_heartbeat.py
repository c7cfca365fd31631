"""A task's supervisor sends its first heartbeat a heartbeat interval after the task started, not
at once.

Airflow 3.3's `ActivitySubprocess` tells the API server a task started (`task_instances.start`,
which sets the task instance's `last_heartbeat_at` on the server) and then, on its first look,
heartbeats again: its `_last_heartbeat_attempt` starts at 0, so `_send_heartbeat_if_needed` finds
the interval long passed. That second call says nothing the first did not, and it blocks the
supervisor's loop while the task waits on it for its own requests (an XCom, a connection): a
quarter of the supervisor's HTTP time for a short task (py-spy of 40 e-mail tasks: start 48 ms,
heartbeat 25 ms a task). Here the attempt counts from the start, so the first heartbeat comes
`[workers] min_heartbeat_interval` after it, as every later one does.

If a later Airflow's supervisor is not the one this knows, `install()` declines and says so: the
heartbeats are Airflow's as before. `python -m jobqueue.component` installs it where tasks run.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


def install() -> bool:
    import attrs
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    original = ActivitySubprocess._on_child_started
    if getattr(original, "_jobqueue_first_heartbeat", False):
        return True
    started = inspect.getsource(original)
    heartbeat = inspect.getsource(ActivitySubprocess._send_heartbeat_if_needed)
    known = (
        "task_instances.start(" in started
        and "self._last_successful_heartbeat = time.monotonic()" in started
        and "time.monotonic() - self._last_heartbeat_attempt" in heartbeat
        and "_last_heartbeat_attempt" in attrs.fields_dict(ActivitySubprocess)
    )
    if not known:
        log.warning(
            "Airflow's ActivitySubprocess is not the one jobqueue.first_heartbeat knows: each task's "
            "supervisor heartbeats once more right after the task started"
        )
        return False

    def _on_child_started(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._last_heartbeat_attempt = time.monotonic()

    _on_child_started._jobqueue_first_heartbeat = True  # type: ignore[attr-defined]
    ActivitySubprocess._on_child_started = _on_child_started  # type: ignore[method-assign]
    return True
