"""A burst after a quiet hour: the run's statements read rows in proportion to the jobs, whatever
the statistics say (migration 0011).

A quiet hour leaves autovacuum's statistics saying the tables hold a few completed jobs and no step
values. Plans chosen from them once read the tables once per job of a burst: claiming 5,000 e-mails
took 1 s, completing them 6 s. The rows each statement read are PostgreSQL's own counters for this
transaction (pg_stat_xact_user_tables), so the test counts work, not time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from jobqueue.jobs import JobSpec
from jobqueue.manager import JobManager

BURST = 2_000
# Rows a statement may read per job: a lookup by key reads one or two; the plans this guards
# against read thousands (each job's lookup walking the burst).
ROWS_PER_JOB = 5


def _counters(conn: psycopg.Connection) -> dict[str, int]:
    found = conn.execute(
        "select relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
        " from pg_stat_xact_user_tables where schemaname = 'worker'"
        " and relname in ('_jobs', '_job_steps')"
    ).fetchall()
    return dict(found)


@contextlib.contextmanager
def rows_read(conn: psycopg.Connection) -> Iterator[dict[str, int]]:
    """Rows the block's statements read from each job table, by scans and through indexes: one
    transaction, counted by PostgreSQL (its not yet reported counters, read before and after)."""
    read: dict[str, int] = {}
    with conn.transaction():
        before = _counters(conn)
        yield read
        after = _counters(conn)
    read.update({table: after.get(table, 0) - before.get(table, 0) for table in after})


def quiet_hour(manager: JobManager, conn: psycopg.Connection) -> None:
    """A trickle of e-mails sent one by one, then autovacuum's ANALYZE of what it left."""
    for _ in range(40):
        manager.add_job("send_email", {"to": "a@example.com"})
        (job,) = manager.claim_jobs(["send_email"], "trickle", max_jobs=1)
        manager.save_step_values("render", {job.id: {"body": "hello"}})
        manager.complete_each({job.id: None}, forget_steps=True)
    conn.execute("analyze worker._jobs")
    conn.execute("analyze worker._job_steps")


@contextlib.contextmanager
def plans(conn: psycopg.Connection) -> Iterator[list[str]]:
    """The plan of every statement the block runs, those inside our functions too (auto_explain,
    sent to this client)."""
    found: list[str] = []

    def keep(notice: psycopg.errors.Diagnostic) -> None:
        if (notice.message_primary or "").startswith("duration:"):
            found.append(notice.message_primary or "")

    conn.execute("load 'auto_explain'")
    conn.execute("set auto_explain.log_min_duration = 0")
    conn.execute("set auto_explain.log_nested_statements = on")
    conn.execute("set client_min_messages = log")
    conn.add_notice_handler(keep)
    try:
        yield found
    finally:
        conn.remove_notice_handler(keep)
        conn.execute("reset client_min_messages")
        conn.execute("set auto_explain.log_min_duration = -1")


@pytest.fixture
def after_quiet_hour(conn: psycopg.Connection) -> JobManager:
    manager = JobManager(conn)
    quiet_hour(manager, conn)
    manager.add_jobs([JobSpec("send_email", {"to": "b@example.com"})] * BURST)
    return manager


def test_a_burst_after_a_quiet_hour_reads_each_job_a_few_times(conn, after_quiet_hour):
    manager = after_quiet_hour
    # On the connection that served the quiet hour: plans it cached then are used again.
    with plans(conn) as explained:
        with rows_read(conn) as claim_read:
            claimed = manager.claim_jobs(["send_email"], "burst", max_jobs=BURST)
        # What every run's end and the maintenance ask, with the burst running.
        held = manager.held_jobs("burst")
        holders = manager.lock_holders()
        with rows_read(conn) as save_read:
            manager.save_step_values("render", {job.id: {"body": "hello"} for job in claimed})
        with rows_read(conn) as step_values_read:
            handed_on = manager.step_values("burst", "render")
        with rows_read(conn) as complete_read:
            completed = manager.complete_each({job.id: None for job in claimed}, forget_steps=True)
    assert (len(claimed), len(handed_on), completed) == (BURST, BURST, BURST)
    assert (len(held), [h["jobs"] for h in holders]) == (BURST, [BURST])
    assert conn.execute("select count(*) from worker._job_steps").fetchone()[0] == 0
    reads = {
        "claim": claim_read,
        "save": save_read,
        "step values": step_values_read,
        "complete": complete_read,
    }
    most = max(rows for read in reads.values() for rows in read.values())
    assert most <= ROWS_PER_JOB * BURST, reads
    # A scan of a whole job table per statement is linear, but not in the burst: in the jobs kept.
    scans = [plan for plan in explained if "Seq Scan on _job" in plan]
    assert not scans, "\n\n".join(scans)
