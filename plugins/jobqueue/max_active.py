"""The scheduler mends a DAG's "at max_active_runs" flag when it is stale, so that a job type's pickup
cannot stall for minutes after a DAG file was parsed.

Airflow 3.3 keeps `dag.exceeds_max_non_backfill` beside each DAG and creates no run for a DAG whose
flag is set. The scheduler sets it when it creates a run and recounts when a run finishes
(`SchedulerJobRunner._set_exceeds_max_active_runs`); the dag-processor also writes it from the
count of active runs it read when it began parsing the file (`dag_processing/collection.py`). A
parse that began while the job type had its two runs and ended after both finished leaves the flag
set with no run active: no run finishes to recount it, none is created, and the trigger's events
wait in `asset_dag_run_queue` until the file is parsed again (`min_file_process_interval`, 600 s).
Seen in the fault suite: after the dag-processor was killed and parsed everything anew under load,
5,000 send_email jobs waited 9 minutes.

`repair(session)` recounts, as the scheduler would, the flag of every DAG that has queued asset
events while flagged, and clears the stale ones. Only those: for them Airflow also counts the
active runs before it creates one (`DagModel.dags_needing_dagruns`), so a flag cleared here can
never let a run past max_active_runs. The scheduler's idle sleep calls it (wakeup.py), at most every
REPAIR_INTERVAL_SECONDS: one query on a small table when nothing is stale.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

REPAIR_INTERVAL_SECONDS = 5.0
_last_repair = float("-inf")
_declined = False


def repair_due() -> list[str]:
    """repair() in a session of its own, if REPAIR_INTERVAL_SECONDS have passed since the last."""
    global _last_repair
    now = time.monotonic()
    if now - _last_repair < REPAIR_INTERVAL_SECONDS or _declined:
        return []
    _last_repair = now
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            return repair(session)
    except Exception as exc:  # the metadata database away: Airflow's loop will say so itself
        log.warning("cannot look for stale max_active_runs flags: %s", exc)
        return []


def repair(session: Any) -> list[str]:
    """The DAGs whose stale flag was cleared (see the module's docstring)."""
    global _declined
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    if not hasattr(DagModel, "exceeds_max_non_backfill") or not hasattr(DagRun, "active_runs_of_dags"):
        _declined = True
        log.warning("Airflow's max_active_runs flag is not the one jobqueue.max_active knows: not mended")
        return []
    flagged = session.scalars(
        select(DagModel).where(
            DagModel.exceeds_max_non_backfill.is_(True),
            DagModel.dag_id.in_(select(AssetDagRunQueue.target_dag_id)),
        )
    ).all()
    if not flagged:
        return []
    active = DagRun.active_runs_of_dags(
        dag_ids=[dag.dag_id for dag in flagged], exclude_backfill=True, session=session
    )
    mended = []
    for dag in flagged:
        runs = active.get(dag.dag_id, 0)
        if runs < (dag.max_active_runs or 0):
            dag.exceeds_max_non_backfill = False
            mended.append(dag.dag_id)
            log.warning(
                "%s was marked at max_active_runs (%s) with %d run(s) active; cleared",
                dag.dag_id,
                dag.max_active_runs,
                runs,
            )
    return mended
