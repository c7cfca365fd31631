"""The triggerer takes on and cleans up triggers every few seconds, not every second.

Airflow 3.3's `TriggerRunnerSupervisor.run_once` starts each round with `load_triggers()` (take
unassigned triggers, in two queries through the ORM, and tell the runner which to run) and ends it
with `clean_unused()` (delete triggers no task or asset uses), and a round lasts at most a second.
On an idle stack that was the triggerer's largest cost: 27 of 33 py-spy samples of its main process
in 30 s, about 0.4 CPU-s a minute. Neither is on a job's path: a job trigger's events wake the round
and are written at once (`handle_events`, which is left alone); only a trigger created or removed
since the last load (a job type added, a deferred task of someone's own DAG, the triggers of a
triggerer that died, after `[triggerer] triggerer_health_check_threshold`) waits up to
WORKER_TRIGGERER_LOAD_SECONDS (5) longer to start or stop.

If a later Airflow's round is not the one this knows, `install()` declines and says so: the round is
Airflow's as before. `python -m jobqueue.component triggerer` installs it.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def install(every_seconds: float) -> bool:
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor

    if getattr(TriggerRunnerSupervisor.load_triggers, "_jobqueue_every", None) is not None:
        return True
    round_source = inspect.getsource(TriggerRunnerSupervisor.run_once)
    known = all(
        call in round_source
        for call in ("self.load_triggers()", "self._service_subprocess(1)", "self.clean_unused()")
    )
    if not known:
        log.warning(
            "Airflow's triggerer round is not the one jobqueue.trigger_loading knows: it loads and "
            "cleans its triggers every second"
        )
        return False
    if every_seconds <= 0:
        return False
    TriggerRunnerSupervisor.load_triggers = _at_most_every(  # type: ignore[assignment]
        TriggerRunnerSupervisor.load_triggers, every_seconds
    )
    TriggerRunnerSupervisor.clean_unused = _at_most_every(  # type: ignore[assignment]
        TriggerRunnerSupervisor.clean_unused, every_seconds
    )
    return True


def _at_most_every(method: Callable[[Any], None], seconds: float) -> Callable[[Any], None]:
    """`method`, run on a supervisor's first call and then once `seconds` have passed. The times
    are kept here: Airflow's supervisor is a slotted attrs class, with no room for ours."""
    last_run: dict[int, float] = {}

    def gated(self: Any) -> None:
        now = time.monotonic()
        last = last_run.get(id(self))
        if last is not None and now - last < seconds:
            return
        last_run[id(self)] = now
        method(self)

    gated._jobqueue_every = seconds  # type: ignore[attr-defined]
    gated.__name__ = method.__name__
    return gated
