"""The Python API on every kind of connection it accepts, with typed jobs and typed errors."""

from __future__ import annotations

import datetime

import psycopg
import psycopg2
import pytest

import jobqueue
from jobqueue import JobManager, JobSpec, JobStatus
from jobqueue.exceptions import (
    InvalidAttempts,
    InvalidIdentifier,
    InvalidJobKeyMode,
    InvalidJobSpec,
    InvalidPayload,
)

FUTURE = datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture(params=["psycopg", "psycopg2", "url", "airflow_conn_id"])
def connectable(request, db_url, monkeypatch):
    """Each way to hand the API a database; committing is the caller's job for open connections."""
    if request.param == "psycopg":
        with psycopg.connect(db_url, autocommit=True) as conn:
            yield conn
    elif request.param == "psycopg2":
        conn = psycopg2.connect(db_url)
        conn.autocommit = True
        yield conn
        conn.close()
    elif request.param == "url":
        yield db_url
    else:
        monkeypatch.setenv("AIRFLOW_CONN_WORKER_TEST_DB", db_url)
        yield "worker_test_db"


def test_add_job_returns_a_typed_job(connectable):
    job = jobqueue.add_job(
        connectable, "send_email", {"to": "a@example.com"}, queue_name="q", run_at=FUTURE,
        max_attempts=3, job_key="k", priority=2, flags=["x"],
    )  # fmt: skip
    assert isinstance(job, jobqueue.Job)
    assert job.status is JobStatus.SCHEDULED
    assert (job.identifier, job.payload, job.queue_name, job.run_at) == (
        "send_email",
        {"to": "a@example.com"},
        "q",
        FUTURE,
    )
    assert (job.max_attempts, job.job_key, job.priority, job.flags) == (3, "k", 2, ("x",))


def test_the_whole_api(connectable):
    manager = JobManager(connectable)
    jobs = jobqueue.add_jobs(connectable, [JobSpec("a", {"n": 1}), JobSpec("a", [1], job_key="batch")])
    assert [j.payload for j in jobs] == [{"n": 1}, [1]]
    assert jobqueue.add_job(connectable, "a", [2], job_key="batch").payload == [1, 2]

    claimed = manager.claim_jobs(["a"], "worker-1", max_jobs=10)
    assert [j.status for j in claimed] == [JobStatus.RUNNING] * 2
    retry = manager.fail_job(claimed[0].id, "worker-1", "boom")
    assert retry is not None and retry.status is JobStatus.SCHEDULED and retry.last_error == "boom"
    assert manager.fail_job(claimed[0].id, "worker-1", "again") is None

    done = jobqueue.complete_jobs(connectable, [claimed[1].id])
    assert [j.status for j in done] == [JobStatus.COMPLETED]
    rescheduled = jobqueue.reschedule_jobs(connectable, [retry.id], run_at=FUTURE, priority=4)
    assert (rescheduled[0].run_at, rescheduled[0].priority) == (FUTURE, 4)
    failed = jobqueue.permanently_fail_jobs(connectable, [retry.id], "gave up")
    assert (failed[0].status, failed[0].last_error) == (JobStatus.FAILED, "gave up")

    keyed = jobqueue.add_job(connectable, "a", job_key="gone")
    removed = jobqueue.remove_job(connectable, "gone")
    assert removed is not None and removed.id == keyed.id and removed.status is JobStatus.REMOVED
    assert jobqueue.remove_job(connectable, "gone") is None
    assert manager.get_job(keyed.id) is None

    running = manager.claim_jobs(["a"], "dead-worker")
    assert running == []  # the only waiting job is scheduled in the future
    jobqueue.add_job(connectable, "b")
    manager.claim_jobs(["b"], "dead-worker")
    manager.force_unlock_workers(["dead-worker"])
    assert [j.status for j in manager.claim_jobs(["b"], "w2")] == [JobStatus.RUNNING]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: jobqueue.add_job(c, ""), InvalidIdentifier, "identifier must not be empty"),
        (
            lambda c: jobqueue.add_job(c, "a", max_attempts=0),
            InvalidAttempts,
            "max_attempts must be at least 1",
        ),
        (
            lambda c: jobqueue.add_job(c, "a", "text"),
            InvalidPayload,
            "payload must be a JSON object or array",
        ),
        (
            lambda c: jobqueue.add_job(c, "a", {"when": object()}),
            InvalidPayload,
            "payload.when: object is not JSON",
        ),
        (
            lambda c: jobqueue.add_job(c, "a", job_key="k", job_key_mode="x"),
            InvalidJobKeyMode,
            "unknown job_key_mode",
        ),
        (lambda c: jobqueue.add_jobs(c, [JobSpec("a"), JobSpec("")]), InvalidIdentifier, "must not be empty"),
        (lambda c: JobManager(c).claim_jobs(["a"], "w", max_jobs=0), jobqueue.JobQueueError, "max_jobs"),
    ],
    ids=[
        "empty-identifier",
        "max-attempts",
        "scalar-payload",
        "unserialisable",
        "key-mode",
        "add-jobs",
        "claim",
    ],
)
def test_errors_are_typed_and_named(db_url, call, error, message):
    with pytest.raises(error, match=message):
        call(db_url)
    assert JobManager(db_url).claim_jobs(["a"], "w", max_jobs=10) == []


def test_open_connection_is_left_to_the_caller_to_commit(db_url):
    with psycopg.connect(db_url) as conn:
        job = jobqueue.add_job(conn, "a")
        assert JobManager(db_url).get_job(job.id) is None
        conn.commit()
    assert JobManager(db_url).get_job(job.id) is not None


def test_add_jobs_spec_error_type(db_url):
    with pytest.raises(InvalidJobSpec, match=r"spec 1 .* field run_at is not a valid"):
        JobManager(db_url)._jobs("add_jobs", {"specs": '[{"identifier": "a", "run_at": "soon"}]'})
