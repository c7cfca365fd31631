"""Queue housekeeping, run by the `worker_maintenance` DAG: release jobs whose worker is gone, purge old
history in bounded batches, and report the queue depth."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from jobqueue import settings, storage
from jobqueue.exceptions import StorageError
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)
FINISHED_RUN_STATES = {"success", "failed"}

RunState = Callable[[str, str], str | None]  # (dag_id, run_id) -> state, None when there is no such run


def release_dead_locks(jobs: JobManager, run_state: RunState, config: settings.Maintenance) -> dict[str, str]:
    """Releases the jobs of DAG runs that finished (or vanished) while holding them, and of any worker
    whose lock is older than the timeout. Returns {worker: why}."""
    cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=config.lock_timeout_minutes)
    released = {}
    for holder in jobs.lock_holders():
        worker = holder["locked_by"]
        reason = _why_dead(worker, holder["oldest_lock"], cutoff, run_state, config)
        if reason:
            jobs.force_unlock_workers([worker], reason)
            released[worker] = reason
            log.warning("released %d job(s) of %s: %s", holder["jobs"], worker, reason)
    return released


def _why_dead(
    worker: str,
    oldest_lock: datetime.datetime,
    cutoff: datetime.datetime,
    run_state: RunState,
    config: settings.Maintenance,
) -> str | None:
    dag_id, _, run_id = worker.partition("/")
    if run_id:
        state = run_state(dag_id, run_id)
        if state is None:
            return f"released by maintenance: DAG run {worker} no longer exists"
        if state in FINISHED_RUN_STATES:
            return f"released by maintenance: DAG run {worker} ended ({state}) while holding the job"
    if oldest_lock < cutoff:
        return f"released by maintenance: locked by {worker} for over {config.lock_timeout_minutes:g} minutes"
    return None


# The charts' counts per minute (worker._job_minutes) are kept this long: the longest chart is a day's.
MINUTES_KEPT = datetime.timedelta(days=2)


def purge(jobs: JobManager, config: settings.Maintenance) -> dict[str, int]:
    """Deletes completed and failed jobs past their retention, a batch per transaction, and the
    charts' minutes older than MINUTES_KEPT; merges the rows of each closed minute into one."""
    now = datetime.datetime.now(datetime.UTC)
    purged = {}
    for state, days in (
        ("completed", config.completed_retention_days),
        ("failed", config.failed_retention_days),
    ):
        cutoff = now - datetime.timedelta(days=days)
        total = 0
        while True:
            batch = jobs.purge_batch(state, cutoff, config.purge_batch_size)
            if config.purge_documents:
                _delete_documents(batch)
            total += len(batch)
            if len(batch) < config.purge_batch_size:
                break
        purged[state] = total
        log.info("purged %d %s job(s) older than %g days", total, state, days)
    purged["minutes"] = jobs.purge_minutes(now - MINUTES_KEPT)
    purged["minutes_merged"] = jobs.compact_minutes()
    return purged


def _delete_documents(batch: list[dict]) -> None:
    for row in batch:
        document = (row["result"] or {}).get("document") if isinstance(row["result"], dict) else None
        if document:
            try:
                path = storage.resolve(document)
                if path.exists():
                    path.unlink()
            except StorageError as exc:
                log.warning("job %d: not deleting its document: %s", row["id"], exc)


def report_queue_depth(jobs: JobManager) -> list[dict]:
    depth = jobs.queue_depth()
    for row in depth:
        log.info("queue depth: %-20s %-10s %d", row["identifier"], row["status"], row["jobs"])
    return depth


def unconsumed(jobs: JobManager, config: settings.Maintenance) -> list[str]:
    """What waits in silence: `no job type consumes 'foo' (3 jobs waiting since ...)`, one line per
    identifier with waiting jobs whose job type's trigger has not been seen (no DAG, or not parsed)."""
    found = []
    for row in jobs.unconsumed_identifiers(config.unconsumed_after_seconds):
        since = f"{row['oldest'].astimezone(datetime.UTC):%Y-%m-%d %H:%M} UTC"
        found.append(
            f"no job type consumes {row['identifier']!r} ({row['jobs']} job(s) waiting since {since})"
        )
    for line in found:
        log.warning("%s", line)
    return found
