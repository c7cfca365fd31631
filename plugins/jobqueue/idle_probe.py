"""Whether Airflow's scheduler has work, in one cheap query: so that its idle loop can be rare.

An idle scheduler runs its whole loop once a second (`scheduler_idle_sleep_time`, 1 s): a dozen
queries and ~20 ms of CPU each time, 1.24 s of CPU a minute on a stack that does nothing (py-spy
of an idle scheduler, 2026-12-06: all of it `_do_scheduling` and the loop's other queries), and
as much again in PostgreSQL. wakeup._SchedulerSleep already ends the sleep when a job trigger
fires or a task ends; everything else that gives the loop work is a row in the metadata database:

- a DAG run queued (triggered by hand, by the API, cleared, a backfill) or running (its tasks to
  schedule, a retry's delay to end, a deferred task resumed by its trigger);
- queued asset events (`asset_dag_run_queue`: a run to create);
- a DAG whose next scheduled run is due (`next_dagrun_create_after`, as `dags_needing_dagruns`);
- a deadline passed and not yet handled, an executor callback or a connection test pending.

`has_work()` asks for all of them in one statement. The sleep asks once a second (what the loop's
own cadence was) and lets the loop run as soon as the answer is yes; the loop's timed events
(orphans, heartbeats of tasks, trigger timeouts) still bound the sleep, and the scheduler's own
heartbeat (every 5 s) is written at the loop's next run. The answer errs towards yes: a due DAG
at its max_active_runs or asset events whose condition is not met make the loop run every second,
as Airflow's would. If a later Airflow lacks one of these models, `supported()` says so, loudly,
and the scheduler loops as configured.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def _statement() -> Any:
    from airflow.models import Deadline
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.callback import CallbackType, ExecutorCallback
    from airflow.models.connection_test import ConnectionTestRequest, ConnectionTestState
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import CallbackState, DagRunState
    from sqlalchemy import exists, func, or_, select

    return select(
        or_(
            exists().where(DagRun.state.in_((DagRunState.QUEUED, DagRunState.RUNNING))),
            exists(select(AssetDagRunQueue.target_dag_id)),
            exists().where(
                DagModel.is_paused.is_(False),
                DagModel.is_stale.is_(False),
                DagModel.next_dagrun_create_after <= func.now(),
            ),
            exists().where(Deadline.deadline_time < func.now(), Deadline.missed.is_(False)),
            exists().where(
                ExecutorCallback.type == CallbackType.EXECUTOR,
                ExecutorCallback.state == CallbackState.PENDING,
            ),
            exists().where(ConnectionTestRequest.state == ConnectionTestState.PENDING),
        )
    )


def supported() -> bool:
    """Whether this Airflow has every model and column the probe reads (else: said, and False)."""
    try:
        _statement()
    except (ImportError, AttributeError) as exc:
        log.warning("the scheduler's work is not where jobqueue.idle_probe looks (%s): it loops as set", exc)
        return False
    return True


def has_work() -> bool:
    """Whether the scheduler's loop has something to do (yes when the database cannot say)."""
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            return bool(session.scalar(_statement()))
    except Exception as exc:  # the metadata database away: the loop will meet it and say so
        log.debug("scheduler idle probe failed (%s): the loop runs", exc)
        return True
