"""The job queue's metrics from a running stack, through Airflow's own, to a real StatsD listener
(a UDP socket here): `make run`'s one variable, WORKER_STATSD, turns them on. The gauges match the
job table; the counters count what the runs recorded; every claimed job has a pickup latency."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.e2e.conftest import wait_for
from tests.e2e.statsd import StatsdListener

pytestmark = pytest.mark.e2e


def settle(listener: StatsdListener, expected: dict[str, float], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = {name: listener.gauge(name, "metered") for name in expected}
        if seen == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"gauges {seen}, expected {expected}")
        time.sleep(0.5)


def table(conn: psycopg.Connection) -> dict[str, float]:
    """The job table's own view of `metered`, as the gauges name it."""
    counts: dict[str, int] = dict(
        conn.execute(
            "select status, count(*) from worker.jobs where identifier = 'metered' group by 1"
        ).fetchall()
    )
    return {
        f"jobqueue.queue.{status}": float(counts.get(status, 0))
        for status in ("queued", "scheduled", "running", "failed")
    }


def test_the_stack_exports_the_queue_s_metrics_to_statsd(shared_stack):
    """On the shared stack, with its job type `metered` (tests/e2e/conftest.py), whose metrics only
    this test's jobs make."""
    listener = shared_stack.statsd
    with psycopg.connect(shared_stack.database, autocommit=True) as conn:
        specs = [{"identifier": "metered", "payload": {"n": n}} for n in range(5)]
        specs += [{"identifier": "metered", "payload": {"fail": True}}]
        specs += [{"identifier": "metered", "payload": {"flaky": True}}]
        specs += [{"identifier": "metered", "payload": {}, "run_at": "2999-01-01T00:00:00Z"}] * 3
        conn.execute("select worker.add_jobs(%s)", [Jsonb(specs)])
        done = "select count(*) from worker.jobs where identifier = 'metered' and status = 'completed'"
        wait_for(conn, done, None, lambda v: v[0][0] == 6, 180, "six jobs completed, one after a retry")

        settle(listener, table(conn), 30)
        assert table(conn) == {
            "jobqueue.queue.queued": 0, "jobqueue.queue.scheduled": 3,
            "jobqueue.queue.running": 0, "jobqueue.queue.failed": 1,
        }  # fmt: skip
        assert listener.gauge("jobqueue.queue.oldest_due_age", "metered") == 0
        assert listener.gauge("jobqueue.queue.paused", "metered") == 0
        with listener.lock:
            assert listener.counters[("jobqueue.jobs.completed", "metered")] == 6
            assert listener.counters[("jobqueue.jobs.failed", "metered")] == 1
            assert listener.counters[("jobqueue.jobs.retried", "metered")] == 1
            latencies = listener.timings[("jobqueue.jobs.pickup_latency", "metered")]
            assert len(latencies) == 8  # seven jobs claimed, the flaky one twice
            assert all(0 <= ms < 120_000 for ms in latencies)
            assert ("jobqueue.runs.batch_size", "metered") in listener.gauges

        # Paused, new jobs wait: the gauges say so, and how long the oldest has waited.
        conn.execute("select worker.pause_identifier('metered')")
        conn.execute("select worker.add_jobs(%s)", [Jsonb([{"identifier": "metered", "payload": {}}] * 4)])
        settle(listener, {**table(conn), "jobqueue.queue.paused": 1.0}, 30)
        assert table(conn)["jobqueue.queue.queued"] == 4
        time.sleep(2.5)
        age = listener.gauge("jobqueue.queue.oldest_due_age", "metered")
        assert age is not None and age >= 1.0
