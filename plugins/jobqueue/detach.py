"""A step's irreversible part in a process of its own, which outlives the task process.

Handing a message to an SMTP server cannot be undone, and cannot be made atomic with the commit that
records it: between the server's "250 OK" and that commit, a job is sent but not yet known to be. If
the task process dies there (`kill -9`, the OOM killer, a scheduler restart taking its executor's
processes with it), its retry sends the message again. So the task forks a sender in a session of
its own: killing the task, or its whole process group, leaves the sender to finish the batch and
record every outcome; the task's retry waits for it (an advisory lock per DAG run) and then finds
those jobs done. What is left is the death of the sender itself in that window, which no SMTP
client can close: the protocol has no idempotency key.

The sender is forked, not started afresh: it has every module loaded and starts in a millisecond.
It must not use the task's channel to its supervisor (connections, variables, XCom), which the task
process owns: what it needs from Airflow is resolved before the fork.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from typing import Any

from jobqueue.exceptions import DetachedError


def run_detached(work: Callable[[], Any]) -> Any:
    """Runs `work` in a forked process in a new session and returns its JSON-able result; raises
    DetachedError with the child's error if it failed. If the caller dies meanwhile, the child goes
    on to the end."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its outcome comes back through the pipe
        status = 1
        try:
            os.close(read_fd)
            os.setsid()
            # The task's handlers (SIGTERM -> on_kill) belong to the task, not to the sender.
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            try:
                outcome = {"result": work()}
                status = 0
            except BaseException as exc:
                outcome = {"error": f"{type(exc).__name__}: {exc}"}
            try:
                with os.fdopen(write_fd, "w") as pipe:
                    json.dump(outcome, pipe)
            except OSError:
                pass  # the task is gone: the outcome is in the job table all the same
        finally:
            os._exit(status)  # no atexit handlers, no finalizers of what the task process owns
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        outcome = json.loads(text)
    except ValueError:
        died = f"the detached process {pid} died without a result (wait status {status})"
        raise DetachedError(died) from None
    if "error" in outcome:
        raise DetachedError(f"the detached process {pid} failed: {outcome['error']}")
    return outcome["result"]
