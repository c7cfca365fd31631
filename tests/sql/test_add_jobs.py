"""worker.add_jobs: many jobs in one statement and one notification; one bad spec rejects all."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import OtherJobs, all_jobs, rows


def add_jobs(conn, specs):
    return rows(conn, "select * from worker.add_jobs(%s)", [Jsonb(specs)])


def test_adds_every_spec_in_order(conn):
    jobs = add_jobs(
        conn,
        [
            {"identifier": "send_email", "payload": {"to": "a@example.com"}},
            {"identifier": "send_email", "payload": {"to": "b@example.com"}, "priority": 3},
            {
                "identifier": "generate_pdf",
                "queue_name": "docs",
                "run_at": "2999-01-01T00:00:00Z",
                "max_attempts": 2,
                "job_key": "doc:1",
                "flags": ["big"],
            },
        ],
    )
    assert [j["identifier"] for j in jobs] == ["send_email", "send_email", "generate_pdf"]
    assert jobs[1]["priority"] == 3
    assert (jobs[2]["status"], jobs[2]["queue_name"], jobs[2]["max_attempts"]) == ("scheduled", "docs", 2)
    assert (jobs[2]["job_key"], jobs[2]["flags"]) == ("doc:1", ["big"])
    assert jobs[0]["payload"] == {"to": "a@example.com"}
    assert jobs[0]["flags"] is None


def test_key_modes_apply_per_spec(conn):
    add_jobs(conn, [{"identifier": "a", "job_key": "k", "payload": [1]}])
    jobs = add_jobs(conn, [{"identifier": "a", "job_key": "k", "payload": [2]}])
    assert jobs[0]["payload"] == [1, 2]
    jobs = add_jobs(
        conn, [{"identifier": "a", "job_key": "k", "payload": [3], "job_key_mode": "unsafe_dedupe"}]
    )
    assert jobs[0]["payload"] == [1, 2]
    assert len(all_jobs(conn)) == 1


def test_one_statement_one_notification(conn, db_url):
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen worker_jobs")
        add_jobs(conn, [{"identifier": "b"}, {"identifier": "a"}, {"identifier": "b"}])
        notes = list(listener.notifies(timeout=0.5))
    assert [json.loads(n.payload) for n in notes] == [["a", "b"]]


BAD_SPECS = [
    ({"not": "an array"}, "WK006", "specs must be a JSON array"),
    ([{"identifier": "a"}, "text"], "WK006", "spec 2 (counting from 1) must be a JSON object"),
    ([{"identifier": "a"}, {"payload": {}}], "WK006", "spec 2 (counting from 1) has no identifier"),
    ([{"identifier": 7}], "WK006", "has no identifier"),
    ([{"identifier": "a", "runat": "2030-01-01"}], "WK006", "unknown field(s) runat"),
    ([{"identifier": "a", "run_at": "tomorrow-ish"}], "WK006", "field run_at is not a valid timestamp"),
    ([{"identifier": "a", "priority": "high"}], "WK006", "field priority is not a valid integer"),
    ([{"identifier": "a", "flags": "x"}], "WK006", "field flags must be an array"),
    ([{"identifier": "a", "payload": "x"}], "WK005", "payload must be a JSON object or array"),
    ([{"identifier": "a"}, {"identifier": ""}], "WK002", "identifier must not be empty"),
    ([{"identifier": "a", "max_attempts": 0}], "WK004", "max_attempts must be at least 1"),
    ([{"identifier": "a", "job_key": "k", "job_key_mode": "x"}], "WK001", "unknown job_key_mode"),
    # A non-string where a string is meant was once stored as its JSON text (job_key '[]').
    ([{"identifier": "a", "job_key": []}], "WK006", "field job_key must be a string, got a JSON array"),
    ([{"identifier": "a", "queue_name": 5}], "WK006", "field queue_name must be a string, got a JSON number"),
    ([{"identifier": "a", "run_at": 1796083200}], "WK006", "field run_at must be a string"),
    ([{"identifier": "a", "flags": ["x", 5]}], "WK006", "field flags must be an array of strings"),
    # Plain-looking specs (the fields of add_jobs' single INSERT, migration 0012) that it refuses.
    ([{"identifier": "a"}, {"identifier": "x" * 129}], "WK002", "identifier is longer than 128"),
    ([{"identifier": "a", "payload": None}], "WK005", "must be a JSON object or array, got a JSON null"),
    ([{"identifier": "a", "queue_name": ""}], "WK003", "queue_name must not be empty"),
    ([{"identifier": "a", "priority": 1.5}], "WK006", "field priority is not a valid integer"),
    ([{"identifier": "a", "max_attempts": 10**10}], "WK006", "field max_attempts is not a valid integer"),
    # The second spec would replace the first, and both would return the one job.
    (
        [{"identifier": "a", "job_key": "k"}, {"identifier": "b"}, {"identifier": "c", "job_key": "k"}],
        "WK007",
        'specs 1 and 3 (counting from 1) have the same job_key "k"',
    ),
]


@pytest.mark.parametrize(("specs", "sqlstate", "message"), BAD_SPECS, ids=[s[2] for s in BAD_SPECS])
def test_one_bad_spec_rejects_the_whole_call(conn, specs, sqlstate, message):
    others = OtherJobs(conn)
    with pytest.raises(psycopg.Error) as error:
        add_jobs(conn, specs)
    assert error.value.sqlstate == sqlstate
    assert message in str(error.value)
    others.assert_untouched()
    assert len(all_jobs(conn)) == len(others.ids)


PLAIN = [
    {"identifier": "send_email", "payload": {"to": "a@example.com"}},
    {"identifier": "send_email"},
    {"identifier": "digest", "payload": [1, 2], "queue_name": "q", "priority": -3, "max_attempts": 2},
    {"identifier": "digest", "queue_name": None, "priority": None, "max_attempts": None},
]
SAME = ["identifier", "payload", "queue_name", "priority", "max_attempts"]
SAME += ["attempts", "status", "job_key", "flags"]


def test_plain_specs_in_one_insert_as_spec_by_spec(conn, db_url):
    """Specs of the plain fields only are inserted at once (migration 0012); with one spec that is
    not plain (a run_at) the same specs take the path spec by spec: the jobs are the same."""
    at_once = add_jobs(conn, PLAIN)
    run_at = {"identifier": "later", "run_at": "2999-01-01T00:00:00Z"}
    one_by_one = add_jobs(conn, [*PLAIN, run_at])[:-1]
    assert conn.execute("select worker._plain_specs(%s), worker._plain_specs(%s)",
                        [Jsonb(PLAIN), Jsonb([*PLAIN, run_at])]).fetchone() == (True, False)  # fmt: skip
    assert [[job[field] for field in SAME] for job in at_once] == [
        [job[field] for field in SAME] for job in one_by_one
    ]
    assert [job["id"] for job in at_once] == sorted(job["id"] for job in at_once)
    assert (at_once[1]["payload"], at_once[1]["max_attempts"], at_once[1]["priority"]) == ({}, 25, 0)
