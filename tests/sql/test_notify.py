"""The worker_jobs channel: one notification per statement, carrying the identifiers concerned."""

from __future__ import annotations

import datetime
import json

import psycopg
import pytest

from tests.helpers import add, claim, rows


def received(listener) -> list:
    return [json.loads(n.payload) for n in listener.notifies(timeout=0.3)]


def test_add_job_notifies_its_identifier(conn, listener):
    add(conn, "send_email")
    assert received(listener) == [["send_email"]]


def test_scheduled_job_notifies_too(conn, listener):
    # The listener recomputes when it must wake next.
    add(conn, "a", run_at=datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC))
    assert received(listener) == [["a"]]


def test_reschedule_notifies(conn, listener):
    job = add(conn, "a", run_at=datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC))
    received(listener)
    rows(conn, "select worker.reschedule_jobs(%s, now())", [[job["id"]]])
    assert received(listener) == [["a"]]


def test_fail_job_notifies_the_retry(conn, listener):
    job = add(conn, "a")
    claim(conn, ["a"])
    received(listener)
    rows(conn, "select worker.fail_job(%s, 'w1', 'boom')", [job["id"]])
    assert received(listener) == [["a"]]


@pytest.mark.parametrize(
    ("release", "expected"),
    [("complete", [["email"]]), ("fail", [["email"]]), ("force_unlock", [["email", "pdf"]])],
    ids=["complete", "fail-for-good", "force-unlock-the-job-itself-and-its-queue-in-one"],
)
def test_queue_release_notifies_every_identifier_waiting_in_it(conn, listener, release, expected):
    first = add(conn, "pdf", queue_name="q")
    add(conn, "email", queue_name="q")
    claim(conn, ["pdf"])
    received(listener)
    if release == "complete":
        rows(conn, "select worker.complete_jobs(%s)", [[first["id"]]])
    elif release == "fail":
        rows(conn, "update worker._jobs set max_attempts = 1 where id = %s", [first["id"]])
        rows(conn, "select worker.fail_job(%s, 'w1', 'boom')", [first["id"]])
    else:
        rows(conn, "select worker.force_unlock_workers(array['w1'])")
    assert received(listener) == expected


def test_a_retry_in_a_queue_is_one_notification_with_the_queue(conn, listener):
    mine = add(conn, "pdf", queue_name="q")
    claim(conn, ["pdf"])
    add(conn, "email", queue_name="q")
    received(listener)
    rows(conn, "select worker.fail_job(%s, 'w1', 'boom')", [mine["id"]])
    assert received(listener) == [["email", "pdf"]]


def test_queue_release_wakes_identifiers_behind_the_head_too(conn, listener):
    # Any of them may take the freed queue (graphile-worker's claim is not head-only).
    running = add(conn, "a", queue_name="q")
    claim(conn, ["a"])
    for identifier in ("c", "b", "c", "d"):
        add(conn, identifier, queue_name="q")
    add(conn, "elsewhere", queue_name="other")
    received(listener)
    rows(conn, "select worker.complete_jobs(%s)", [[running["id"]]])
    assert received(listener) == [["b", "c", "d"]]


def test_nothing_is_notified_before_commit(db_url, listener):
    with psycopg.connect(db_url) as conn:
        add(conn, "a")
        assert received(listener) == []
        conn.commit()
    assert received(listener) == [["a"]]


def test_too_many_identifiers_notify_null(conn, listener):
    specs = [{"identifier": f"job_{n:04d}_" + "x" * 100} for n in range(100)]
    rows(conn, "select worker.add_jobs(%s)", [json.dumps(specs)])
    assert received(listener) == [None]
