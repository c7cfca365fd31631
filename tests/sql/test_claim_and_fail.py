"""The worker side: worker.claim_jobs and worker.fail_job."""

from __future__ import annotations

import datetime
import math

import psycopg
import pytest

from tests.helpers import OtherJobs, add, claim, job, rows

FUTURE = datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC)
PAST = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def ids(jobs):
    return [j["id"] for j in jobs]


def test_claim_marks_running_and_counts_the_attempt(conn):
    added = add(conn, "a")
    claimed = claim(conn, ["a"], worker="worker-1")
    assert ids(claimed) == [added["id"]]
    row = claimed[0]
    assert (row["status"], row["attempts"], row["locked_by"]) == ("running", 1, "worker-1")
    assert row["locked_at"] is not None
    assert job(conn, added["id"]) == row


def test_claim_order_is_priority_then_run_at_then_id(conn):
    late = add(conn, "a", run_at=PAST + datetime.timedelta(days=1))
    early = add(conn, "a", run_at=PAST)
    same_time = add(conn, "a", run_at=PAST)
    urgent = add(conn, "a", priority=-1)
    lazy = add(conn, "a", priority=5, run_at=PAST)
    expected = [urgent, early, same_time, late, lazy]
    assert ids(claim(conn, ["a"], max_jobs=10)) == ids(expected)


def test_claim_takes_one_at_a_time_in_order(conn):
    first, second = add(conn, "a", priority=1), add(conn, "a", priority=0)
    assert ids(claim(conn, ["a"])) == [second["id"]]
    assert ids(claim(conn, ["a"])) == [first["id"]]
    assert claim(conn, ["a"]) == []


def test_claim_respects_max_jobs_and_identifiers(conn):
    a = [add(conn, "a") for _ in range(5)]
    b = add(conn, "b")
    add(conn, "c")
    assert ids(claim(conn, ["a", "b"], max_jobs=3)) == ids(a[:3])
    assert ids(claim(conn, ["a", "b"], max_jobs=10)) == [*ids(a[3:]), b["id"]]


def test_scheduled_jobs_are_not_claimed(conn):
    add(conn, "a", run_at=FUTURE)
    assert claim(conn, ["a"], max_jobs=10) == []


def test_forbidden_flags_are_skipped(conn):
    flagged = add(conn, "a", flags=["slow"])
    other_flag = add(conn, "a", flags=["fast"])
    plain = add(conn, "a")
    claimed = claim(conn, ["a"], max_jobs=10, forbidden_flags=["slow", "huge"])
    assert ids(claimed) == [other_flag["id"], plain["id"]]
    assert ids(claim(conn, ["a"], max_jobs=10)) == [flagged["id"]]


def test_named_queue_runs_one_at_a_time_in_order(conn):
    q1 = [add(conn, "a", {"n": n}, queue_name="q") for n in range(3)]
    free = add(conn, "a")
    other_queue = add(conn, "a", queue_name="r")
    # Never two jobs of one queue in one call.
    assert ids(claim(conn, ["a"], max_jobs=10)) == [q1[0]["id"], free["id"], other_queue["id"]]
    # Never a job whose queue has a running job.
    assert claim(conn, ["a"], max_jobs=10) == []
    rows(conn, "select worker.complete_jobs(%s)", [[q1[0]["id"]]])
    assert ids(claim(conn, ["a"], max_jobs=10)) == [q1[1]["id"]]


def test_queue_is_released_by_a_failure(conn):
    first = add(conn, "a", queue_name="q")
    second = add(conn, "a", queue_name="q")
    claim(conn, ["a"])
    rows(conn, "select worker.fail_job(%s, 'w1', 'boom')", [first["id"]])
    # The retry waits for its run_at; the next job of the queue may run meanwhile.
    assert ids(claim(conn, ["a"])) == [second["id"]]


@pytest.mark.parametrize(
    ("head", "claimer"),
    [
        ({"identifier": "pdf"}, {}),
        ({"identifier": "email", "flags": ["slow"]}, {"forbidden_flags": ["slow"]}),
    ],
    ids=["head-of-another-identifier", "head-with-a-forbidden-flag"],
)
def test_a_queue_head_the_claimer_may_not_take_does_not_stall_the_queue(conn, head, claimer):
    # graphile-worker 0.18: a free queue gives its first job the claimer may take; one at a time.
    first = add(conn, head.pop("identifier"), queue_name="user-1", **head)
    second = add(conn, "email", queue_name="user-1")
    assert ids(claim(conn, ["email"], **claimer)) == [second["id"]]
    assert claim(conn, [first["identifier"]]) == []
    rows(conn, "select worker.complete_jobs(%s)", [[second["id"]]])
    assert ids(claim(conn, [first["identifier"]])) == [first["id"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((["a"], "", 1), "worker_id must not be empty"),
        ((["a"], "w", 0), "max_jobs must be at least 1"),
        ((["a"], "w", None), "max_jobs must be at least 1"),
    ],
    ids=["empty-worker-id", "zero-max-jobs", "null-max-jobs"],
)
def test_claim_bad_arguments(conn, args, message):
    add(conn, "a")
    with pytest.raises(psycopg.Error) as error:
        conn.execute("select * from worker.claim_jobs(%s, %s, %s)", args)
    assert error.value.sqlstate == "WK008"
    assert message in str(error.value)


@pytest.mark.parametrize("attempts", [1, 2, 5, 10, 12])
def test_fail_job_backs_off_exponentially(conn, attempts):
    added = add(conn, "a", max_attempts=20)
    rows(conn, "update worker._jobs set attempts = %s where id = %s", [attempts - 1, added["id"]])
    claim(conn, ["a"])
    before = rows(conn, "select now() as now")[0]["now"]
    failed = rows(conn, "select * from worker.fail_job(%s, 'w1', 'SMTP down')", [added["id"]])[0]
    after = rows(conn, "select clock_timestamp() as now")[0]["now"]
    delay = math.exp(min(attempts, 10))
    assert (failed["status"], failed["last_error"], failed["locked_by"]) == ("scheduled", "SMTP down", None)
    assert failed["attempts"] == attempts
    assert before + datetime.timedelta(seconds=delay) <= failed["run_at"]
    assert failed["run_at"] <= after + datetime.timedelta(seconds=delay)


def test_fail_job_on_last_attempt_fails_for_good(conn):
    added = add(conn, "a", max_attempts=2)
    for expected in ("scheduled", "failed"):
        rows(conn, "update worker._jobs set run_at = now() - interval '1 s' where id = %s", [added["id"]])
        claim(conn, ["a"])
        assert (
            rows(conn, "select * from worker.fail_job(%s, 'w1', 'no')", [added["id"]])[0]["status"]
            == expected
        )
    assert job(conn, added["id"])["attempts"] == 2


@pytest.mark.parametrize("retry", [True, False], ids=["last-attempt", "retry-false"])
def test_a_failure_for_good_moves_run_at_and_leaves_no_attempts(conn, retry):
    # graphile-worker moves run_at on every failure, the last too: given more attempts later, the job
    # waits out its back-off.
    most = 1 if retry else 5
    added = add(conn, "a", max_attempts=most)
    claim(conn, ["a"])
    before = rows(conn, "select now() as now")[0]["now"]
    failed = rows(conn, "select * from worker.fail_job(%s, 'w1', 'no', %s)", [added["id"], retry])[0]
    assert (failed["status"], failed["attempts"], failed["max_attempts"]) == ("failed", most, most)
    assert failed["run_at"] >= before + datetime.timedelta(seconds=math.e)
    again = rows(conn, "select * from worker.reschedule_jobs(%s, max_attempts => 9)", [[added["id"]]])[0]
    assert (again["status"], again["run_at"]) == ("scheduled", failed["run_at"])


def test_fail_job_of_another_worker_does_nothing(conn):
    others = OtherJobs(conn)
    added = add(conn, "a")
    claim(conn, ["a"], worker="w1")
    before = job(conn, added["id"])
    assert rows(conn, "select * from worker.fail_job(%s, 'w2', 'not mine')", [added["id"]])[0]["id"] is None
    assert job(conn, added["id"]) == before
    others.assert_untouched()
