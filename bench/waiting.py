"""What the bench's cases wait on, shared by bench/run.py and bench/many_types.py: the log line,
a stack gone quiet, a set of jobs done."""

from __future__ import annotations

import bisect
import os
import sys
import time
from typing import Protocol

import psycopg

# How long no DAG run may be queued or running before a case starts (the last case's runs over).
CALM_SECONDS = float(os.environ.get("BENCH_CALM_SECONDS") or 5)
# The lowest of these jobs still waiting or running: the scan stops at it, and the next look starts
# there. A count over every id each 50 ms cost PostgreSQL 3.3 ms a look in case 8 (240 ms of CPU
# inside a 4 s burst, pg_stat_statements); graphile-worker's harness asks an index whether any row
# is left, which costs it nothing.
FIRST_UNFINISHED = (
    "select id from worker._jobs where id = any(%s) and state in ('waiting', 'running') order by id limit 1"
)


class Counting(Protocol):
    def count(self) -> tuple[int, float]: ...


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_until_idle(metadata_db: str, quiet: float = CALM_SECONDS, limit: float = 300.0) -> None:
    """Until no DAG run is queued or running for `quiet` seconds (the first-sight runs are over)."""
    deadline, calm_since = time.monotonic() + limit, time.monotonic()
    with psycopg.connect(metadata_db, autocommit=True) as meta:
        while time.monotonic() < deadline:
            busy = meta.execute("select count(*) from dag_run where state in ('queued', 'running')")
            if busy.fetchone()[0]:  # type: ignore[index]
                calm_since = time.monotonic()
            elif time.monotonic() - calm_since >= quiet:
                return
            time.sleep(0.5)


def until_done(
    conn: psycopg.Connection, ids: list[int], timeout: float, sink: Counting | None = None, mails: int = 0
) -> None:
    """Until every job left waiting/running and, with a sink, the sink has accepted `mails` in all."""
    deadline = time.monotonic() + timeout
    left = sorted(ids)
    while time.monotonic() < deadline:
        if sink is None or sink.count()[0] >= mails:
            first = conn.execute(FIRST_UNFINISHED, [left]).fetchone()
            if first is None:
                return
            left = left[bisect.bisect_left(left, first[0]) :]
        time.sleep(0.05)
