"""Maintenance: dead locks released, history purged in batches within retention, depth reported."""

from __future__ import annotations

import dataclasses

import pytest

from jobqueue import maintenance, settings
from jobqueue.manager import JobManager
from tests.helpers import OtherJobs, add, claim, job, rows

CONFIG = settings.Maintenance(
    lock_timeout_minutes=30, completed_retention_days=7, failed_retention_days=30, purge_batch_size=3,
    purge_documents=False, unconsumed_after_seconds=300,
)  # fmt: skip


def lock(conn, worker: str, minutes_ago: float = 0) -> int:
    job_id = add(conn, "x")["id"]
    claim(conn, ["x"], worker=worker)
    rows(
        conn,
        "update worker._jobs set locked_at = now() - %s * interval '1 minute' where id = %s",
        [minutes_ago, job_id],
    )
    return job_id


@pytest.mark.parametrize(
    ("state", "released"),
    [("success", True), ("failed", True), (None, True), ("running", False), ("queued", False)],
    ids=["run-succeeded", "run-failed", "run-gone", "run-alive", "run-queued"],
)
def test_jobs_of_a_finished_or_vanished_run_go_back_to_the_queue(conn, state, released):
    job_id = lock(conn, "send_email/asset_triggered__1")
    result = maintenance.release_dead_locks(JobManager(conn), lambda dag_id, run_id: state, CONFIG)
    after = job(conn, job_id)
    if released:
        assert after["status"] == "queued" and after["attempts"] == 1
        assert "DAG run send_email/asset_triggered__1" in after["last_error"]
        assert list(result) == ["send_email/asset_triggered__1"]
    else:
        assert after["status"] == "running" and result == {}


def test_a_stale_lock_of_any_worker_is_released(conn):
    fresh, stale = lock(conn, "some-worker"), lock(conn, "old-worker", minutes_ago=45)
    maintenance.release_dead_locks(JobManager(conn), lambda dag_id, run_id: "running", CONFIG)
    assert job(conn, fresh)["status"] == "running"
    assert job(conn, stale)["status"] == "queued"
    assert "locked by old-worker for over 30 minutes" in job(conn, stale)["last_error"]


def test_purge_keeps_what_is_younger_than_the_retention(conn):
    others = OtherJobs(conn)  # recent: kept
    old_done = [add(conn, "x")["id"] for _ in range(7)]
    rows(conn, "select worker.complete_jobs(%s)", [old_done])
    rows(
        conn,
        "update worker._jobs set completed_at = now() - interval '8 days' where id = any(%s)",
        [old_done],
    )
    old_failed = add(conn, "x")["id"]
    rows(conn, "select worker.permanently_fail_jobs(%s)", [[old_failed]])
    rows(conn, "update worker._jobs set updated_at = now() - interval '31 days' where id = %s", [old_failed])
    young_failed = add(conn, "x")["id"]
    rows(conn, "select worker.permanently_fail_jobs(%s)", [[young_failed]])
    rows(conn, "update worker._jobs set updated_at = now() - interval '8 days' where id = %s", [young_failed])

    # The charts' minutes: the completions above counted now (kept), one of three days ago (not).
    rows(conn, "insert into worker._job_minutes (identifier, minute, slot, completed)"
               " values ('x', date_trunc('minute', now() - interval '3 days'), 0, 5)")  # fmt: skip

    purged = maintenance.purge(JobManager(conn), CONFIG)  # batches of 3: several transactions
    assert purged == {"completed": 7, "failed": 1, "minutes": 1, "minutes_merged": 0}
    remaining = {r["id"] for r in rows(conn, "select id from worker.jobs")}
    assert remaining == {*others.ids, young_failed}
    others.assert_untouched()
    kept = rows(conn, "select minute > now() - interval '1 hour' as recent from worker._job_minutes")
    assert kept and all(row["recent"] for row in kept)


def test_purge_can_delete_stored_documents(conn, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_STORAGE_URL", f"file://{tmp_path}")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "old.pdf").write_bytes(b"%PDF")
    old = add(conn, "generate_pdf")["id"]
    rows(conn, """select worker.complete_jobs(%s, '{"document": "1/old.pdf"}')""", [[old]])
    rows(conn, "update worker._jobs set completed_at = now() - interval '8 days' where id = %s", [old])
    maintenance.purge(JobManager(conn), dataclasses.replace(CONFIG, purge_documents=True))
    assert not (tmp_path / "1" / "old.pdf").exists()


def test_queue_depth_per_identifier_and_status(conn):
    OtherJobs(conn)
    depth = {
        (r["identifier"], r["status"]): r["jobs"] for r in maintenance.report_queue_depth(JobManager(conn))
    }
    assert depth == {
        ("other", "queued"): 2,
        ("other", "scheduled"): 1,
        ("other_running", "running"): 1,
        ("other_done", "completed"): 1,
        ("other_failed", "failed"): 1,
    }


def test_jobs_that_no_job_type_consumes_are_named(conn):
    jobs = JobManager(conn)
    for identifier in ("send_email", "foo", "stale", "fresh"):
        add(conn, identifier)
    add(conn, "foo")
    rows(
        conn, "update worker._jobs set created_at = now() - interval '10 minutes' where identifier <> 'fresh'"
    )
    rows(
        conn,
        "insert into worker._consumers values ('send_email', now()), ('stale', now() - interval '6 min')",
    )
    found = maintenance.unconsumed(jobs, CONFIG)
    # send_email is watched; fresh has not waited long enough to tell.
    assert [line.split(" (")[0] for line in found] == [
        "no job type consumes 'foo'",
        "no job type consumes 'stale'",
    ]
    assert "(2 job(s) waiting since " in found[0]


def test_a_closed_minute_s_rows_are_merged_into_one(conn):
    """Three writers and the triggers' sample counted a minute ten minutes ago, and a late writer
    after an earlier merge; the minute now running is left to its writers."""
    written = [(0, 2, 0, 1, [1, 1, 0], None), (3, 3, 1, 0, [0, 2, 1], None), (-1, 0, 0, 0, None, 40),
               (8, 5, 0, 0, [5, 0, 0], 70)]  # fmt: skip
    for slot, completed, failed, retried, latency, waiting in written:
        rows(
            conn,
            "insert into worker._job_minutes (identifier, minute, slot, completed, failed, retried,"
            " latency, waiting) values ('x', date_trunc('minute', now() - interval '10 minutes'),"
            " %s, %s, %s, %s, %s, %s)",
            [slot, completed, failed, retried, latency, waiting],
        )
    rows(conn, "insert into worker._job_minutes (identifier, minute, slot, completed, latency)"
               " values ('x', date_trunc('minute', now()), 1, 9, '{9,0,0}')")  # fmt: skip
    assert maintenance.purge(JobManager(conn), CONFIG)["minutes_merged"] == 1
    assert rows(
        conn,
        "select slot, completed, failed, retried, latency, waiting from worker._job_minutes"
        " order by minute, slot",
    ) == [
        {"slot": 8, "completed": 10, "failed": 1, "retried": 1, "latency": [6, 3, 1], "waiting": 70},
        {"slot": 1, "completed": 9, "failed": 0, "retried": 0, "latency": [9, 0, 0], "waiting": None},
    ]
