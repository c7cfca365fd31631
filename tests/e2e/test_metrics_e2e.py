"""The job queue's metrics from a running stack, through Airflow's own, to a real StatsD listener
(a UDP socket here): `make run`'s one variable, WORKER_STATSD, turns them on. The gauges match the
job table; the counters count what the runs recorded; every claimed job has a pickup latency."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import defaultdict

import psycopg
import pytest
from psycopg.types.json import Jsonb

from devtools.harness import RunningStack
from tests.e2e.conftest import team_project, wait_for

pytestmark = pytest.mark.e2e

METERED = """\
from jobqueue import PermanentJobError, job_type


@job_type("metered")
def metered(payload: dict, ctx) -> None:
    if payload.get("fail"):
        raise PermanentJobError("refused on purpose")
    if payload.get("flaky") and ctx.job.attempts == 1:
        raise ConnectionError("once")
"""

# StatsD's line, with the tags in influxdb's form: airflow.jobqueue.queue.queued,identifier=metered:4|g
LINE = re.compile(r"^airflow\.(jobqueue\.[a-z_.]+),identifier=([a-z_]+):(-?[0-9.]+)\|(g|c|ms)$")


class StatsdListener(threading.Thread):
    """Keeps every job-queue metric received: the gauges' last values, the counters' sums, the timings."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.gauges: dict[tuple[str, str], float] = {}
        self.counters: dict[tuple[str, str], float] = defaultdict(float)
        self.timings: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                packet = self.socket.recv(65536).decode()
            except TimeoutError:
                continue
            for line in packet.splitlines():
                if match := LINE.match(line):
                    self._keep(*match.groups())

    def _keep(self, name: str, identifier: str, value: str, kind: str) -> None:
        key = (name, identifier)
        with self.lock:
            if kind == "g":
                self.gauges[key] = float(value)
            elif kind == "c":
                self.counters[key] += float(value)
            else:
                self.timings[key].append(float(value))

    def gauge(self, name: str) -> float | None:
        with self.lock:
            return self.gauges.get((name, "metered"))

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.socket.close()


def settle(listener: StatsdListener, expected: dict[str, float], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = {name: listener.gauge(name) for name in expected}
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


def test_the_stack_exports_the_queue_s_metrics_to_statsd(stack_env, tmp_path):
    listener = StatsdListener()
    listener.start()
    stack_env.update(
        WORKER_PROJECT=team_project(tmp_path / "project", {"metered.py": METERED}),
        WORKER_STATSD=f"127.0.0.1:{listener.port}",
        WORKER_METRICS_INTERVAL_SECONDS="1",
    )
    stack = RunningStack(stack_env)
    database = f"postgresql://postgres@127.0.0.1:{stack_env['WORKER_PG_PORT']}/worker"
    try:
        with psycopg.connect(database, autocommit=True) as conn:
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
            assert listener.gauge("jobqueue.queue.oldest_due_age") == 0
            assert listener.gauge("jobqueue.queue.paused") == 0
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
            conn.execute(
                "select worker.add_jobs(%s)", [Jsonb([{"identifier": "metered", "payload": {}}] * 4)]
            )
            settle(listener, {**table(conn), "jobqueue.queue.paused": 1.0}, 30)
            assert table(conn)["jobqueue.queue.queued"] == 4
            time.sleep(2.5)
            age = listener.gauge("jobqueue.queue.oldest_due_age")
            assert age is not None and age >= 1.0
    finally:
        stack.stop_with("sigint")
        listener.stop()
