"""Pausing identifiers and queues, and rate limits per identifier (migration 0007): what claim_jobs
takes, what the pickup trigger's summary says, who may change them. Each test also checks that the
other jobs were left alone."""

from __future__ import annotations

import datetime
import json
import threading
import time

import psycopg
import pytest

from jobqueue.queries import query
from tests.helpers import OtherJobs, add, claim, job, rows


@pytest.fixture
def others(conn):
    return OtherJobs(conn)


def notified(listener) -> list:
    return [json.loads(n.payload) for n in listener.notifies(timeout=0.3)]


def summary(conn, identifiers: list[str]) -> tuple[bool, float | None]:
    """What the pickup trigger sees of a group of identifiers: (claimable, seconds until something
    comes due), from its row per identifier (none for a paused one)."""
    found = conn.execute(query("waiting_summary"), {"identifiers": identifiers}).fetchall()
    dues = [(next_run_at - now).total_seconds() for _, _, next_run_at, now in found if next_run_at]
    return any(claimable for _, claimable, _, _ in found), min(dues, default=None)


def claimed_ids(conn, identifiers: list[str], max_jobs: int = 100, worker: str = "w1") -> list[int]:
    return [row["id"] for row in claim(conn, identifiers, worker=worker, max_jobs=max_jobs)]


def test_a_paused_identifier_keeps_its_jobs_waiting_until_resumed(conn, others, listener):
    waiting = [add(conn, "mine")["id"] for _ in range(3)]
    assert rows(conn, "select worker.pause_identifier('mine')")[0] == {"pause_identifier": True}
    assert claimed_ids(conn, ["mine"]) == []
    assert summary(conn, ["mine"]) == (False, None)
    assert [job(conn, each)["status"] for each in waiting] == ["queued"] * 3
    notified(listener)

    assert rows(conn, "select worker.resume_identifier('mine')")[0] == {"resume_identifier": True}
    assert notified(listener) == [["mine"]]
    assert summary(conn, ["mine"])[0] is True
    assert claimed_ids(conn, ["mine"]) == waiting
    others.assert_untouched()


def test_pausing_leaves_running_jobs_and_other_identifiers_alone(conn, others):
    running = add(conn, "mine")["id"]
    assert claimed_ids(conn, ["mine"]) == [running]
    theirs = add(conn, "theirs")["id"]
    rows(conn, "select worker.pause_identifier('mine')")
    rows(conn, "select worker.complete_jobs(%s)", [[running]])
    assert job(conn, running)["status"] == "completed"
    assert claimed_ids(conn, ["mine", "theirs"]) == [theirs]
    others.assert_untouched()


def test_a_paused_queue_holds_its_jobs_of_every_identifier(conn, others, listener):
    queued_a = add(conn, "a", queue_name="user:1")["id"]
    queued_b = add(conn, "b", queue_name="user:1")["id"]
    free = add(conn, "a")["id"]
    elsewhere = add(conn, "b", queue_name="user:2")["id"]
    rows(conn, "select worker.pause_queue('user:1')")
    assert claimed_ids(conn, ["a", "b"]) == [free, elsewhere]
    assert summary(conn, ["a", "b"]) == (False, None)
    notified(listener)

    rows(conn, "select worker.resume_queue('user:1')")
    assert notified(listener) == [["a", "b"]]
    assert claimed_ids(conn, ["a", "b"]) == [queued_a]  # the queue runs one job at a time, as ever
    assert job(conn, queued_b)["status"] == "queued"
    others.assert_untouched()


def test_pause_and_resume_say_whether_they_changed_anything(conn):
    assert rows(conn, "select worker.resume_queue('q') as r") == [{"r": False}]
    assert rows(conn, "select worker.pause_queue('q', 'alice') as r") == [{"r": True}]
    assert rows(conn, "select worker.pause_queue('q', 'bob') as r") == [{"r": False}]
    assert rows(conn, "select kind, name, paused_by from worker.paused") == [
        {"kind": "queue", "name": "q", "paused_by": "alice"}
    ]


@pytest.mark.parametrize(
    ("statement", "sqlstate"),
    [
        ("select worker.pause_identifier('')", "WK002"),
        ("select worker.resume_identifier(null)", "WK002"),
        ("select worker.pause_queue(repeat('q', 200))", "WK003"),
        ("select worker.set_rate_limit('mine', '10 per second')", "WK009"),
        ("select worker.set_rate_limit('mine', '0/s')", "WK009"),
        ("select worker.set_rate_limit('mine', '-1/m')", "WK009"),
        ("select worker.declare_rate_limit('mine', '5/d')", "WK009"),
    ],
    ids=["empty identifier", "null identifier", "long queue", "prose", "zero", "negative", "per day"],
)
def test_bad_arguments_are_refused_by_name(conn, others, statement, sqlstate):
    with pytest.raises(psycopg.Error) as refused:
        conn.execute(statement)
    assert refused.value.sqlstate == sqlstate, refused.value
    assert rows(conn, "select * from worker.rate_limits") == []
    others.assert_untouched()


def test_a_job_for_a_worker_of_a_paused_identifier_waits(conn, others):
    rows(conn, "select worker.pause_identifier('mine')")
    made = rows(conn, "select * from worker.add_job_for_worker('mine', '{}', 'mine/manual__1')")[0]
    assert (made["status"], made["locked_by"], made["attempts"]) == ("queued", None, 0)
    others.assert_untouched()


def test_a_claim_takes_no_more_than_the_bucket_holds(conn, others):
    for _ in range(30):
        add(conn, "mine")
    rows(conn, "select worker.set_rate_limit('mine', '10/s')")
    assert len(claimed_ids(conn, ["mine"])) == 10  # a new bucket is full: one second's worth
    assert claimed_ids(conn, ["mine"]) == []
    claimable, due_in = summary(conn, ["mine"])
    assert claimable is False and due_in is not None
    assert 0.3 < due_in <= 0.5  # half a bucket, at 10 a second
    time.sleep(0.55)
    assert summary(conn, ["mine"])[0] is True
    assert 5 <= len(claimed_ids(conn, ["mine"])) <= 6
    others.assert_untouched()


def test_a_limit_on_one_identifier_does_not_hold_the_others(conn, others):
    limited = [add(conn, "mine")["id"] for _ in range(3)]
    free = [add(conn, "theirs")["id"] for _ in range(3)]
    rows(conn, "select worker.set_rate_limit('mine', '2/m')")
    assert sorted(claimed_ids(conn, ["mine", "theirs"])) == sorted(limited[:1] + free)
    others.assert_untouched()


def test_an_operator_s_limit_wins_over_the_job_type_s_until_cleared(conn):
    rows(conn, "select worker.declare_rate_limit('mine', '100/m')")
    rows(conn, "select worker.set_rate_limit('mine', '5/s')")
    rows(conn, "select worker.declare_rate_limit('mine', '200/m')")  # a later run: still the operator's

    def in_force():
        return rows(conn, "select rate_limit, per_second, burst from worker.rate_limits")

    assert in_force() == [{"rate_limit": "5/s", "per_second": 5.0, "burst": 5.0}]
    rows(conn, "select worker.set_rate_limit('mine', 'none')")
    assert in_force() == [{"rate_limit": None, "per_second": None, "burst": 1.0}]
    rows(conn, "select worker.set_rate_limit('mine', null)")
    assert in_force() == [
        {"rate_limit": "200/m", "per_second": pytest.approx(200 / 60), "burst": pytest.approx(200 / 60)}
    ]
    rows(conn, "select worker.declare_rate_limit('mine', null)")
    assert in_force() == [{"rate_limit": None, "per_second": None, "burst": 1.0}]


def test_no_limit_declared_writes_nothing(conn):
    rows(conn, "select worker.declare_rate_limit('mine', null)")
    assert rows(conn, "select * from worker._rate_limits") == []


def test_lowering_a_limit_empties_the_bucket_down_to_its_new_size(conn):
    for _ in range(20):
        add(conn, "mine")
    rows(conn, "select worker.set_rate_limit('mine', '10/s')")
    rows(conn, "select worker.set_rate_limit('mine', '2/s')")
    assert len(claimed_ids(conn, ["mine"])) == 2


def test_a_hundred_jobs_at_ten_a_second_over_two_concurrent_claimers_take_nine_seconds(conn, db_url, others):
    ids = {add(conn, "mine")["id"] for _ in range(100)}
    rows(conn, "select worker.set_rate_limit('mine', '10/s')")
    claims: list[datetime.datetime] = []
    taken: set[int] = set()
    lock = threading.Lock()

    def claimer(worker: str) -> None:
        with psycopg.connect(db_url, autocommit=True) as mine:
            while len(taken) < 100:
                got = claim(mine, ["mine"], worker=worker, max_jobs=50)
                with lock:
                    taken.update(row["id"] for row in got)
                    claims.extend(row["locked_at"] for row in got)
                time.sleep(0.02)

    threads = [threading.Thread(target=claimer, args=(f"run{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert taken == ids and len(claims) == 100  # each job claimed once
    claims.sort()
    assert (claims[-1] - claims[0]).total_seconds() >= 9.0
    # However the claims fall, no second holds more than a bucket and a second's refill.
    for first, start in enumerate(claims):
        within = [c for c in claims[first:] if (c - start).total_seconds() < 1.0]
        assert len(within) <= 20
    others.assert_untouched()
