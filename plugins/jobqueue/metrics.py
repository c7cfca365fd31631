"""The job queue's metrics, sent through Airflow's own (airflow.sdk.observability.stats): whichever
backend Airflow is configured with (StatsD, OpenTelemetry) exports them, beside Airflow's.

Every name starts `jobqueue.` (Airflow adds its prefix, `airflow.` by default) and carries the tag
`identifier`. With StatsD, tags travel only with `[metrics] statsd_influxdb_enabled` (`make run`
turns it on with WORKER_STATSD); OpenTelemetry sends them as attributes.

| name | kind | what |
|---|---|---|
| jobqueue.queue.queued | gauge | jobs waiting whose run_at has come |
| jobqueue.queue.scheduled | gauge | jobs waiting for a later run_at |
| jobqueue.queue.running | gauge | jobs claimed by a DAG run |
| jobqueue.queue.failed | gauge | jobs failed for good, kept until purged |
| jobqueue.queue.oldest_due_age | gauge | seconds the oldest due job has waited (0: none) |
| jobqueue.queue.paused | gauge | 1 while the identifier is paused |
| jobqueue.jobs.pickup_latency | timing | ms from a job being due (added, or its run_at) to its claim |
| jobqueue.runs.batch_size | gauge | jobs a DAG run claimed (or took back) |
| jobqueue.jobs.completed | counter | jobs completed |
| jobqueue.jobs.retried | counter | failed attempts to be retried |
| jobqueue.jobs.failed | counter | jobs failed for good |
| jobqueue.jobs.cancelled | counter | jobs someone cancelled while they ran |

The gauges are read from the job table by each job type's trigger, in the triggerer, every
WORKER_METRICS_INTERVAL_SECONDS; the others by the DAG runs, as they claim and record.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from jobqueue.jobs import Job

QUEUE_GAUGES = ("queued", "scheduled", "running", "failed", "oldest_due_age", "paused")
# The runtime's counts of a step, and the counter each goes to.
COUNTERS = {
    "completed": "jobqueue.jobs.completed",
    "retry": "jobqueue.jobs.retried",
    "failed": "jobqueue.jobs.failed",
    "cancelled": "jobqueue.jobs.cancelled",
}


@functools.cache
def enabled() -> bool:
    """Whether Airflow exports metrics at all: without a backend, nothing is worth reading or sending."""
    from airflow.configuration import conf

    return conf.getboolean("metrics", "statsd_on", fallback=False) or conf.getboolean(
        "metrics", "otel_on", fallback=False
    )


def _stats() -> Any:
    from airflow.sdk.observability import stats

    return stats


def queue_gauges(rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per identifier: its identifier and each of QUEUE_GAUGES."""
    stats = _stats()
    for row in rows:
        tags = {"identifier": row["identifier"]}
        for name in QUEUE_GAUGES:
            stats.gauge(f"jobqueue.queue.{name}", float(row[name] or 0), tags=tags)


def claimed(identifier: str, batch: Sequence[Job], claimed_now: Sequence[Job]) -> None:
    """A run's batch: its size, and how long each job claimed now waited once due."""
    if not enabled():
        return
    stats = _stats()
    tags = {"identifier": identifier}
    stats.gauge("jobqueue.runs.batch_size", len(batch), tags=tags)
    for job in claimed_now:
        stats.timing("jobqueue.jobs.pickup_latency", pickup_latency(job), tags=tags)


def pickup_latency(job: Job) -> datetime.timedelta:
    """From when the job was due (added, or the run_at it waited for) to its claim."""
    due = max(job.created_at, job.run_at)
    return max(datetime.timedelta(0), (job.locked_at or due) - due)


def outcomes(identifier: str, counts: Mapping[str, int]) -> None:
    """What one step recorded: completions, retries, failures for good."""
    if not enabled():
        return
    stats = _stats()
    for kind, name in COUNTERS.items():
        if counts.get(kind):
            stats.incr(name, counts[kind], tags={"identifier": identifier})
