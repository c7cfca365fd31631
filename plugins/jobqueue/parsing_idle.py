"""The dag-processor, idle, waits up to WORKER_DAG_PROCESSOR_IDLE_SECONDS (5) between its loops
instead of one second, and is woken at once when a file is to be parsed again.

Airflow 3.3's DagFileProcessorManager runs its loop once a second whatever happens: its heartbeat,
the files asked to be parsed again, DAG callbacks queued in the database, stale DAGs, warnings.
Idle, that was 0.7 CPU-s a minute, the stack's largest idle share once the scheduler stopped
looping for nothing (idle_probe.py; py-spy of an idle stack, 2026-12-06). The loop waits on the
sockets of its parsing processes (`_service_processor_sockets(timeout=poll_time)`); when none is
running and no file waits to be parsed, that wait is lengthened here, and `wake()` ends it: our
own requests for a file to be parsed again (reparse.py) go through at once, as does any parser's
output. What can wait up to that long: a DAG's own success or failure callbacks, a "Reparse"
asked from Airflow's UI, a DAG file changed in place; a new DAG file is only listed every
`refresh_interval` (30 s) anyway. The heartbeat (every 5 s) is written at the next loop. If a
later Airflow's loop differs, `install()` declines and says so: the loop runs each second.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import selectors
from typing import Any

log = logging.getLogger(__name__)

_wake_in: int | None = None  # the write end of the pipe the loop's selector also waits on
_unwakeable = False  # that pipe could not be added: the loop keeps Airflow's cadence


def install(idle_seconds: float) -> bool:
    import attrs
    from airflow.dag_processing.manager import DagFileProcessorManager

    loop = inspect.getsource(DagFileProcessorManager._run_parsing_loop)
    fields = attrs.fields_dict(DagFileProcessorManager)
    if "self._service_processor_sockets(timeout=poll_time)" not in loop or not {
        "_processors",
        "_file_queue",
        "selector",
    } <= set(fields):
        log.warning("the dag-processor's loop is not the one jobqueue.parsing_idle knows: it loops as before")
        return False
    service = DagFileProcessorManager._service_processor_sockets

    def _service_processor_sockets(self: Any, timeout: float | None = 1.0) -> None:
        if timeout and not self._processors and not self._file_queue and _can_be_woken(self.selector):
            timeout = max(timeout, idle_seconds)
        service(self, timeout=timeout)

    DagFileProcessorManager._service_processor_sockets = _service_processor_sockets  # type: ignore[method-assign]
    return True


def wake() -> None:
    """Ends the dag-processor's idle wait (in its own process; elsewhere, or before its loop
    started, nothing)."""
    if _wake_in is not None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: it is woken already
            os.write(_wake_in, b"!")


def _can_be_woken(selector: selectors.BaseSelector) -> bool:
    """Registers, once, the read end of a pipe `wake()` writes to with the loop's selector."""
    global _wake_in, _unwakeable
    if _wake_in is not None or _unwakeable:
        return not _unwakeable
    out, into = os.pipe()
    os.set_blocking(out, False)
    os.set_blocking(into, False)
    try:
        selector.register(out, selectors.EVENT_READ, (_drain, None))
    except Exception as exc:  # a selector of another kind than Airflow 3.3's
        log.warning("cannot wait on the dag-processor's selector (%s): it loops each second", exc)
        os.close(out)
        os.close(into)
        _unwakeable = True
        return False
    _wake_in = into
    return True


def _drain(fileobj: Any) -> bool:
    """The selector's handler of the pipe: empties it, and wants more (the loop keeps it)."""
    with contextlib.suppress(BlockingIOError):
        while os.read(fileobj, 4096):
            pass
    return True
