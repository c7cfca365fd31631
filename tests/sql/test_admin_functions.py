"""graphile-worker's admin functions: remove_job, complete_jobs, permanently_fail_jobs,
reschedule_jobs and force_unlock_workers. Each test also checks that the other jobs were left alone."""

from __future__ import annotations

import datetime

import pytest

from tests.helpers import OtherJobs, add, claim, job, rows

FUTURE = datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture
def others(conn):
    return OtherJobs(conn)


def make(conn, state: str, **options):
    """A job of identifier `mine` in the given state."""
    row = add(conn, "mine", {"state": state}, **options)
    if state in ("running", "completed", "failed"):
        assert claim(conn, ["mine"], worker="me")[0]["id"] == row["id"]
    if state == "completed":
        rows(conn, "select worker.complete_jobs(%s)", [[row["id"]]])
    if state == "failed":
        rows(conn, "update worker._jobs set max_attempts = 1 where id = %s", [row["id"]])
        rows(conn, "select worker.fail_job(%s, 'me', 'boom')", [row["id"]])
    if state == "scheduled":
        rows(conn, "update worker._jobs set run_at = %s where id = %s", [FUTURE, row["id"]])
    assert job(conn, row["id"])["status"] == state
    return row["id"]


@pytest.mark.parametrize("state", ["queued", "scheduled", "failed"])
def test_remove_job_deletes_waiting_or_failed_job(conn, others, state):
    job_id = make(conn, state, job_key="k")
    removed = rows(conn, "select * from worker.remove_job('k')")[0]
    assert (removed["id"], removed["status"]) == (job_id, "removed")
    assert rows(conn, "select * from worker.jobs where id = %s", [job_id]) == []
    others.assert_untouched()


def test_remove_job_of_running_job_drops_key_and_retries(conn, others):
    job_id = make(conn, "running", job_key="k")
    removed = rows(conn, "select * from worker.remove_job('k')")[0]
    assert (removed["id"], removed["status"], removed["job_key"]) == (job_id, "running", None)
    assert removed["max_attempts"] == removed["attempts"] == 25
    others.assert_untouched()


def test_remove_job_with_unknown_key_returns_null(conn, others):
    assert rows(conn, "select * from worker.remove_job('nope')")[0]["id"] is None
    others.assert_untouched()


@pytest.mark.parametrize("state", ["queued", "scheduled", "running", "failed"])
def test_complete_jobs(conn, others, state):
    job_id = make(conn, state)
    done = rows(conn, "select * from worker.complete_jobs(%s)", [[job_id]])
    assert [(d["id"], d["status"]) for d in done] == [(job_id, "completed")]
    assert done[0]["completed_at"] is not None
    assert done[0]["locked_by"] is None
    others.assert_untouched()


def test_complete_jobs_records_a_result(conn, others):
    job_id = make(conn, "running")
    done = rows(conn, """select * from worker.complete_jobs(%s, '{"message_id": "<m@x>"}')""", [[job_id]])
    assert (done[0]["result"], done[0]["last_worker"]) == ({"message_id": "<m@x>"}, "me")
    others.assert_untouched()


def test_complete_jobs_each_gives_each_job_its_result_and_forgets_its_steps(conn, others):
    first, second, done = make(conn, "running"), make(conn, "running"), make(conn, "completed")
    rows(conn, """update worker._jobs set result = '"kept"' where id = %s""", [second])
    rows(
        conn,
        "insert into worker._job_steps (job_id, step, attempt, value) select id, 'render', 1, '{}'"
        " from worker._jobs where id = any(%s)",
        [[first, second]],
    )
    before = job(conn, done)
    results = f'{{"{first}": {{"n": 1}}, "{second}": null, "{done}": "again", "999999": 1}}'
    [counted] = rows(conn, "select worker.complete_jobs_each(%s, true) as n", [results])
    assert counted["n"] == 2
    assert (job(conn, first)["status"], job(conn, first)["result"]) == ("completed", {"n": 1})
    assert (job(conn, second)["status"], job(conn, second)["result"]) == ("completed", "kept")
    assert job(conn, done) == before
    assert rows(conn, "select * from worker._job_steps") == []
    others.assert_untouched()


def test_complete_jobs_each_refuses_anything_but_an_object(conn):
    import psycopg

    with pytest.raises(psycopg.DatabaseError, match="results must be an object") as error:
        rows(conn, "select worker.complete_jobs_each('[1, 2]', false)")
    assert error.value.sqlstate == "WK008"


def test_complete_jobs_skips_completed_and_unknown(conn, others):
    job_id = make(conn, "completed")
    before = job(conn, job_id)
    assert rows(conn, "select * from worker.complete_jobs(%s)", [[job_id, 999999]]) == []
    assert job(conn, job_id) == before
    others.assert_untouched()


@pytest.mark.parametrize(
    ("state", "changed"),
    [("queued", True), ("scheduled", True), ("failed", True), ("running", False), ("completed", False)],
)
def test_permanently_fail_jobs(conn, others, state, changed):
    job_id = make(conn, state)
    failed = rows(conn, "select * from worker.permanently_fail_jobs(%s, 'customer left')", [[job_id]])
    if changed:
        assert [(f["id"], f["status"], f["last_error"]) for f in failed] == [
            (job_id, "failed", "customer left")
        ]
    else:
        assert failed == []
        assert job(conn, job_id)["status"] == state
    others.assert_untouched()


def test_permanently_fail_jobs_default_reason(conn, others):
    job_id = make(conn, "queued")
    failed = rows(conn, "select * from worker.permanently_fail_jobs(%s)", [[job_id]])
    assert failed[0]["last_error"] == "Manually marked as failed"
    others.assert_untouched()


def test_reschedule_jobs_changes_only_what_is_given(conn, others):
    job_id = make(conn, "queued", priority=3, max_attempts=9)
    changed = rows(conn, "select * from worker.reschedule_jobs(%s, run_at => %s)", [[job_id], FUTURE])[0]
    assert (changed["run_at"], changed["priority"], changed["max_attempts"]) == (FUTURE, 3, 9)
    assert changed["status"] == "scheduled"
    changed = rows(
        conn,
        "select * from worker.reschedule_jobs(%s, priority => 1, attempts => 2, max_attempts => 4)",
        [[job_id]],
    )[0]
    assert (changed["run_at"], changed["priority"], changed["attempts"], changed["max_attempts"]) == (
        FUTURE, 1, 2, 4,
    )  # fmt: skip
    others.assert_untouched()


def test_reschedule_failed_job_with_attempts_left_runs_again(conn, others):
    job_id = make(conn, "failed")
    changed = rows(conn, "select * from worker.reschedule_jobs(%s, now(), attempts => 0)", [[job_id]])[0]
    assert (changed["status"], changed["attempts"]) == ("queued", 0)
    assert claim(conn, ["mine"])[0]["id"] == job_id
    others.assert_untouched()


def test_reschedule_to_no_attempts_left_fails_the_job(conn, others):
    job_id = make(conn, "queued")
    changed = rows(
        conn, "select * from worker.reschedule_jobs(%s, max_attempts => 1, attempts => 1)", [[job_id]]
    )
    assert changed[0]["status"] == "failed"
    others.assert_untouched()


@pytest.mark.parametrize("state", ["running", "completed"])
def test_reschedule_leaves_running_and_completed_jobs(conn, others, state):
    job_id = make(conn, state)
    before = job(conn, job_id)
    assert rows(conn, "select * from worker.reschedule_jobs(%s, now())", [[job_id]]) == []
    assert job(conn, job_id) == before
    others.assert_untouched()


def test_force_unlock_workers_releases_their_jobs(conn, others):
    job_id = make(conn, "running")
    last_try = make(conn, "running", max_attempts=1)
    rows(conn, "select worker.force_unlock_workers(array['me'])")
    released = job(conn, job_id)
    assert (released["status"], released["locked_by"], released["attempts"]) == ("queued", None, 1)
    spent = job(conn, last_try)
    assert spent["status"] == "failed"
    assert "force-unlocked during the last attempt" in spent["last_error"]
    others.assert_untouched()


def test_a_job_failed_by_hand_stays_failed_when_rescheduled_without_attempts(conn, others):
    # graphile-worker: failing by hand uses up the attempts; only attempts => n brings it back.
    job_id = make(conn, "queued", max_attempts=5)
    failed = rows(conn, "select * from worker.permanently_fail_jobs(%s)", [[job_id]])[0]
    assert (failed["attempts"], failed["max_attempts"]) == (5, 5)
    again = rows(conn, "select * from worker.reschedule_jobs(%s, priority => 1)", [[job_id]])[0]
    assert (again["status"], again["priority"]) == ("failed", 1)
    assert (
        rows(conn, "select * from worker.reschedule_jobs(%s, attempts => 0)", [[job_id]])[0]["status"]
        == "queued"
    )
    others.assert_untouched()


def test_a_running_job_that_lost_its_key_can_be_given_attempts_again(conn, others):
    # Its max_attempts is kept (attempts raised to it), so reschedule_jobs(attempts => 3) of 25 lets it
    # wait again, as in graphile-worker.
    job_id = make(conn, "running", job_key="k")
    add(conn, "mine", {"newer": True}, job_key="k")
    rows(conn, "select worker.force_unlock_workers(array['me'])")
    assert job(conn, job_id)["status"] == "failed"
    again = rows(conn, "select * from worker.reschedule_jobs(%s, attempts => 3)", [[job_id]])[0]
    assert (again["status"], again["attempts"], again["max_attempts"]) == ("queued", 3, 25)
    others.assert_untouched()
