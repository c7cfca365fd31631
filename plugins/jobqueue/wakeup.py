"""Lets a trigger hand its event to Airflow at once instead of at the triggerer's next tick.

Airflow 3.3's trigger runner collects the events its triggers yield and sends them to the triggerer
(which writes them to the database) once per loop, and the loop sleeps one second between rounds
(`with anyio.move_on_after(1)` in TriggerRunner.arun). A job therefore waited 0.5 to 1 s before its
asset event existed, the largest single share of the add_job-to-mail latency (bench/README.md).

`install()` replaces the `anyio` that module sees with one whose `move_on_after` remembers its cancel
scope; `wake()`, called by a trigger right after it yielded, ends that sleep, so the event is sent in
the same round. Nothing else changes: with no event the loop still sleeps a second, and if a later
Airflow no longer has this loop, `install()` declines (and says so) and the events go out at the next
tick as before. `python -m jobqueue.component triggerer` installs it.
"""

from __future__ import annotations

import inspect
import logging
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


def installed() -> bool:
    return _installed


def wake() -> None:
    """Ends the trigger runner's current sleep, so the events yielded so far go out now."""
    global _pending
    if not _installed:
        return
    _pending = True
    if _scope is not None:
        _scope.cancel()
