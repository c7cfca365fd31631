"""worker.add_job: defaults, options, job_key modes and bad input, against a real PostgreSQL."""

from __future__ import annotations

import datetime

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import OtherJobs, add, all_jobs, claim, job, rows

FUTURE = datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC)
LATER = datetime.datetime(2999, 6, 1, tzinfo=datetime.UTC)


def test_defaults(conn):
    row = rows(conn, "select * from worker.add_job('send_email')")[0]
    assert row["payload"] == {}
    assert row["queue_name"] is None
    assert row["priority"] == 0
    assert row["attempts"] == 0
    assert row["max_attempts"] == 25
    assert row["status"] == "queued"
    assert row["job_key"] is None
    assert row["flags"] is None
    assert row["locked_by"] is None
    assert row["completed_at"] is None
    assert row["run_at"] <= datetime.datetime.now(datetime.UTC)


def test_nulls_mean_defaults(conn):
    row = rows(
        conn,
        "select * from worker.add_job('x', null, null, null, null, null, null, null, null)",
    )[0]
    assert (row["payload"], row["priority"], row["max_attempts"], row["status"]) == ({}, 0, 25, "queued")


def test_options_are_stored(conn):
    row = add(
        conn,
        "send_email",
        {"to": "a@example.com"},
        queue_name="user-1",
        run_at=FUTURE,
        max_attempts=3,
        job_key="welcome:1",
        priority=-5,
        flags=["slow", "smtp"],
    )
    assert row["payload"] == {"to": "a@example.com"}
    assert row["queue_name"] == "user-1"
    assert row["run_at"] == FUTURE
    assert row["max_attempts"] == 3
    assert row["job_key"] == "welcome:1"
    assert row["priority"] == -5
    assert row["flags"] == ["slow", "smtp"]
    assert row["status"] == "scheduled"


@pytest.mark.parametrize(
    ("mode", "expected_run_at"),
    [("replace", LATER), ("preserve_run_at", FUTURE), (None, LATER)],
    ids=["replace-debounces", "preserve_run_at-throttles", "null-means-replace"],
)
def test_key_overwrites_waiting_job(conn, mode, expected_run_at):
    first = add(conn, "a", {"v": 1}, job_key="k", run_at=FUTURE, priority=1, queue_name="q1", max_attempts=5)
    second = add(
        conn, "b", {"v": 2}, job_key="k", run_at=LATER, priority=2, queue_name="q2", max_attempts=7,
        flags=["f"], job_key_mode=mode,
    )  # fmt: skip
    assert second["id"] == first["id"]
    assert len(all_jobs(conn)) == 1
    assert (second["identifier"], second["payload"], second["priority"]) == ("b", {"v": 2}, 2)
    assert (second["queue_name"], second["max_attempts"], second["flags"]) == ("q2", 7, ["f"])
    assert second["run_at"] == expected_run_at


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ([1, 2], [3], [1, 2, 3]),
        ({"a": 1}, [3], [3]),
        ([1], {"b": 2}, {"b": 2}),
    ],
    ids=["arrays-concatenate", "object-then-array-replaces", "array-then-object-replaces"],
)
def test_key_batches_array_payloads(conn, old, new, expected):
    add(conn, "batch", old, job_key="k")
    assert add(conn, "batch", new, job_key="k")["payload"] == expected


@pytest.mark.parametrize("how", ["by-hand", "out-of-attempts"])
def test_key_of_failed_job_goes_to_a_new_job(conn, how):
    # graphile-worker 0.18: the failed job stays failed with its error and gives up its key; the new
    # job carries only its own payload, so the failed item does not run again.
    failed = add(conn, "a", [{"item": 1}], job_key="k", max_attempts=1)
    if how == "by-hand":
        rows(conn, "select worker.permanently_fail_jobs(%s, 'bad item')", [[failed["id"]]])
    else:
        claim(conn, ["a"])
        rows(conn, "select worker.fail_job(%s, 'w1', 'bad item')", [failed["id"]])
    again = add(conn, "a", [{"item": 2}], job_key="k")
    assert again["id"] != failed["id"]
    assert (again["status"], again["payload"], again["job_key"], again["attempts"]) == (
        "queued",
        [{"item": 2}],
        "k",
        0,
    )
    old = job(conn, failed["id"])
    assert (old["status"], old["last_error"], old["job_key"], old["payload"]) == (
        "failed",
        "bad item",
        None,
        [{"item": 1}],
    )


def test_preserve_run_at_keeps_run_at_only_before_the_first_attempt(conn):
    # Once tried, a job's run_at is its retry's back-off, not a schedule to keep (graphile-worker).
    add(conn, "a", job_key="untried", run_at=FUTURE)
    tried = add(conn, "b", job_key="tried")
    claim(conn, ["b"])
    rows(conn, "select worker.fail_job(%s, 'w1', 'later')", [tried["id"]])  # a back-off of 2.7 s
    kept = add(conn, "a", job_key="untried", run_at=LATER, job_key_mode="preserve_run_at")
    moved = add(conn, "b", job_key="tried", run_at=LATER, job_key_mode="preserve_run_at")
    assert (kept["run_at"], moved["run_at"], moved["attempts"]) == (FUTURE, LATER, 0)


def test_flags_are_a_set(conn):
    # Kept as graphile-worker's jsonb keeps them: sorted, no repeats, NULL when empty.
    assert add(conn, "a", flags=["smtp", "slow", "smtp"])["flags"] == ["slow", "smtp"]
    assert add(conn, "a", flags=[])["flags"] is None


@pytest.mark.parametrize("mode", ["replace", "preserve_run_at"])
def test_key_of_running_job_queues_new_job(conn, mode):
    running = add(conn, "a", {"v": 1}, job_key="k")
    claim(conn, ["a"])
    new = add(conn, "a", {"v": 2}, job_key="k", job_key_mode=mode)
    assert new["id"] != running["id"]
    assert (new["status"], new["job_key"], new["payload"]) == ("queued", "k", {"v": 2})
    old = job(conn, running["id"])
    # It keeps running, loses its key, and will not be retried: no attempts left, its maximum kept.
    assert (old["status"], old["job_key"], old["locked_by"]) == ("running", None, "w1")
    assert old["max_attempts"] == old["attempts"] == 25
    failed = rows(conn, "select * from worker.fail_job(%s, 'w1', 'boom')", [running["id"]])[0]
    assert failed["status"] == "failed"


def test_completed_job_frees_its_key(conn):
    done = add(conn, "a", job_key="k")
    rows(conn, "select worker.complete_jobs(%s)", [[done["id"]]])
    new = add(conn, "a", {"v": 2}, job_key="k")
    assert new["id"] != done["id"]
    assert job(conn, done["id"])["job_key"] == "k"  # kept as history
    assert job(conn, done["id"])["status"] == "completed"


@pytest.mark.parametrize("state", ["waiting", "running", "failed"])
def test_unsafe_dedupe_returns_existing_job(conn, state):
    existing = add(conn, "a", {"v": 1}, job_key="k", max_attempts=1)
    if state != "waiting":
        claim(conn, ["a"])
    if state == "failed":
        rows(conn, "select worker.fail_job(%s, 'w1', 'boom')", [existing["id"]])
    before = job(conn, existing["id"])
    again = add(conn, "a", {"v": 2}, job_key="k", job_key_mode="unsafe_dedupe")
    assert again["id"] == existing["id"]
    assert job(conn, existing["id"]) == before
    assert len(all_jobs(conn)) == 1


def test_unsafe_dedupe_inserts_after_completion(conn):
    done = add(conn, "a", job_key="k")
    rows(conn, "select worker.complete_jobs(%s)", [[done["id"]]])
    new = add(conn, "a", job_key="k", job_key_mode="unsafe_dedupe")
    assert new["id"] != done["id"]


BAD_CALLS = [
    ("select worker.add_job('a', job_key => 'k', job_key_mode => 'merge')", "WK001", "unknown job_key_mode"),
    ("select worker.add_job('')", "WK002", "identifier must not be empty"),
    ("select worker.add_job(null)", "WK002", "identifier must not be empty"),
    ("select worker.add_job(repeat('x', 129))", "WK002", "identifier is longer than 128"),
    ("select worker.add_job('a', queue_name => '')", "WK003", "queue_name must not be empty"),
    ("select worker.add_job('a', queue_name => repeat('q', 200))", "WK003", "queue_name is longer"),
    ("select worker.add_job('a', max_attempts => 0)", "WK004", "max_attempts must be at least 1"),
    ("select worker.add_job('a', '\"text\"')", "WK005", "payload must be a JSON object or array"),
    ("select worker.add_job('a', '42')", "WK005", "got a JSON number"),
    ("select worker.add_job('a', 'not json')", "22P02", "invalid input syntax for type json"),
    ("select worker.add_job('a', job_key => '')", "WK007", "job_key must not be empty"),
]


@pytest.mark.parametrize(("statement", "sqlstate", "message"), BAD_CALLS, ids=[c[2] for c in BAD_CALLS])
def test_bad_input_is_refused_and_changes_nothing(conn, statement, sqlstate, message):
    others = OtherJobs(conn)
    with pytest.raises(psycopg.Error) as error:
        conn.execute(statement)
    assert error.value.sqlstate == sqlstate
    assert message in str(error.value)
    others.assert_untouched()
    assert len(all_jobs(conn)) == len(others.ids)


def test_payload_is_jsonb(conn):
    row = rows(conn, "select * from worker.add_job('a', %s)", [Jsonb({"nested": {"x": [1, 2]}})])[0]
    assert row["payload"] == {"nested": {"x": [1, 2]}}
