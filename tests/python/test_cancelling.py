"""Cancelling a running job (jobqueue/cancelling.py, worker.cancel_jobs) through the runtime on a
real PostgreSQL: an async handler's task is cancelled, a synchronous or batch handler sees
`ctx.cancelled`; the job fails for good, "cancelled by <who>", what it enqueued is undone, and the
other jobs of its run complete. A DAG run is played by running its steps with one worker id."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest

from jobqueue import job_chain, job_type
from jobqueue.manager import JobManager
from jobqueue.runtime import StepRun
from tests.helpers import add, all_jobs, job, rows


def run_in_background(job_type, db_url: str, worker: str, summaries: list | None = None) -> threading.Thread:
    connect = lambda: psycopg.connect(db_url)  # noqa: E731

    def steps() -> None:
        for index in range(len(job_type.steps)):
            summary = StepRun(job_type, index, worker, connect).run(None)
            if summaries is not None:
                summaries.append(summary)

    thread = threading.Thread(target=steps, daemon=True)
    thread.start()
    return thread


def wait_until(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def cancel(conn, job_id: int, who: str = "ana") -> list[dict]:
    return rows(conn, "select id, status from worker.cancel_jobs(array[%s]::bigint[], %s)", [job_id, who])


def declare(kind: str, started: threading.Event):
    """A job type whose job {"stuck": true} enqueues a child, then runs until cancelled; any other
    job completes at once."""
    if kind == "async":

        @job_type("stoppable", concurrency=2)
        async def stoppable(payload, ctx):
            if payload["stuck"]:
                ctx.add_job("child", {"of": ctx.job.id})
                started.set()
                await asyncio.sleep(60)
            return "done"

        return stoppable
    if kind == "sync":

        @job_type("stoppable", concurrency=2)
        def stoppable_sync(payload, ctx):
            if payload["stuck"]:
                ctx.add_job("child", {"of": ctx.job.id})
                started.set()
                assert ctx.cancelled.wait(60)
                return "done anyway"  # a handler that ignores the request still fails, as cancelled
            return "done"

        return stoppable_sync

    @job_type("stoppable", batch=True)
    def stoppable_batch(batch, ctx):
        for item in batch:
            if item.value["stuck"]:
                item.ctx.add_job("child", {"of": item.job.id})
                started.set()
                assert item.ctx.cancelled.wait(60)
            item.done("done")  # the cancelled one's answer is not taken: it fails, as cancelled

    return stoppable_batch


@pytest.mark.parametrize("kind", ["async", "sync", "batch"])
def test_a_cancelled_running_job_fails_alone_and_its_children_are_undone(conn, db_url, kind):
    started = threading.Event()
    stoppable = declare(kind, started)
    before = add(conn, "stoppable", {"stuck": False})["id"]
    stuck = add(conn, "stoppable", {"stuck": True})["id"]
    after = add(conn, "stoppable", {"stuck": False})["id"]
    worker = f"stoppable/manual__{kind}"
    summaries: list[dict] = []
    running = run_in_background(stoppable, db_url, worker, summaries)
    assert started.wait(20)
    assert cancel(conn, stuck) == [{"id": stuck, "status": "running"}]
    asked = time.monotonic()
    running.join(20)
    assert not running.is_alive()
    assert time.monotonic() - asked < 5  # seen within a poll or two (1 s each)

    ended = job(conn, stuck)
    assert (ended["status"], ended["last_error"]) == ("failed", "cancelled by ana")
    assert ended["attempts"] == ended["max_attempts"]  # for good: no retry
    assert [job(conn, other)["status"] for other in (before, after)] == ["completed", "completed"]
    assert [each["identifier"] for each in all_jobs(conn)] == ["stoppable"] * 3  # no child
    [attempt] = JobManager(conn).attempts(stuck)
    assert (attempt.outcome, attempt.error, attempt.worker_id) == ("cancelled", "cancelled by ana", worker)
    # An operator's cancel is no failure of the run: its last task does not fail on it.
    assert summaries == [{"jobs": 3, "completed": 2, "cancelled": 1}]
    assert attempt.started_at is not None and attempt.ended_at is not None
    assert attempt.ended_at >= attempt.started_at


def test_cancel_removes_waiting_and_failed_jobs_and_leaves_completed_ones(conn):
    waiting = add(conn, "t", {})["id"]
    done = add(conn, "t", {})["id"]
    rows(conn, "select worker.claim_jobs(array['t'], 'w', 10)")
    rows(conn, "select worker.complete_jobs(array[%s]::bigint[])", [done])
    assert cancel(conn, waiting) == [{"id": waiting, "status": "running"}]  # claimed: asked to stop
    assert rows(conn, "select cancel_requested_by from worker._jobs where id = %s", [waiting]) == [
        {"cancel_requested_by": "ana"}
    ]
    assert cancel(conn, done) == []
    assert job(conn, done)["status"] == "completed"
    fresh = add(conn, "t", {})["id"]
    assert cancel(conn, fresh) == [{"id": fresh, "status": "removed"}]
    assert rows(conn, "select id from worker._jobs where id = %s", [fresh]) == []


def test_a_cancelled_job_whose_run_died_fails_when_maintenance_releases_it(conn):
    cancelled, other = add(conn, "t", {})["id"], add(conn, "t", {})["id"]
    rows(conn, "select worker.claim_jobs(array['t'], 'dead/run', 10)")
    cancel(conn, cancelled, "vic")
    rows(conn, "select worker.force_unlock_workers(array['dead/run'], 'its run died')")
    assert (job(conn, cancelled)["status"], job(conn, cancelled)["last_error"]) == (
        "failed",
        "cancelled by vic",
    )
    assert (job(conn, other)["status"], job(conn, other)["last_error"]) == ("queued", "its run died")
    # Each released attempt is kept, with its run and its start.
    kept = rows(conn, "select job_id, outcome, error, worker_id, started_at is not null as started"
                      " from worker._job_attempts order by job_id")  # fmt: skip
    assert kept == [
        {
            "job_id": cancelled,
            "outcome": "cancelled",
            "error": "cancelled by vic",
            "worker_id": "dead/run",
            "started": True,
        },
        {
            "job_id": other,
            "outcome": "retry",
            "error": "its run died",
            "worker_id": "dead/run",
            "started": True,
        },
    ]
    # Retried by hand, its next claim starts a new attempt: the old request does not cancel it.
    rows(conn, "select worker.reschedule_jobs(array[%s]::bigint[], now(), attempts => 0)", [cancelled])
    assert len(rows(conn, "select worker.claim_jobs(array['t'], 'w2', 10)")) == 2
    assert JobManager(conn).cancel_requests("w2") == {}


def first(payload, ctx):
    return payload


def second(value, ctx):
    raise AssertionError("a cancelled job runs no more steps")


chain = job_chain("two_steps", first, second)


def test_a_job_cancelled_between_two_steps_runs_no_more(conn, db_url):
    job_id = add(conn, "two_steps", {"n": 1})["id"]
    connect = lambda: psycopg.connect(db_url)  # noqa: E731
    StepRun(chain, 0, "two_steps/r1", connect).run(None)
    cancel(conn, job_id, "ana")
    StepRun(chain, 1, "two_steps/r1", connect).run(None)
    assert (job(conn, job_id)["status"], job(conn, job_id)["last_error"]) == ("failed", "cancelled by ana")


def test_a_batch_handler_that_raises_at_a_cancelled_job_leaves_the_others_to_a_retry(conn, db_url):
    started = threading.Event()

    @job_type("batch_raises", batch=True)
    def batch_raises(batch, ctx):
        batch[0].done("first")
        started.set()
        while True:
            time.sleep(0.05)
            batch[1].ctx.raise_if_cancelled()

    done, cancelled, unreached = (add(conn, "batch_raises", {"n": n})["id"] for n in range(3))
    running = run_in_background(batch_raises, db_url, "batch_raises/r1")
    assert started.wait(20)
    cancel(conn, cancelled)
    running.join(20)
    assert job(conn, done)["status"] == "completed"
    assert (job(conn, cancelled)["status"], job(conn, cancelled)["last_error"]) == (
        "failed",
        "cancelled by ana",
    )
    left = job(conn, unreached)
    assert left["status"] == "scheduled"  # to be retried: it was not what was cancelled
    assert left["last_error"] == f"the batch handler stopped when job {cancelled} was cancelled"


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_job_cancelled_while_it_waits_for_a_lane_fails_at_once_unstarted(conn, db_url, kind):
    """One lane (concurrency 1), busy with a long job: the job after it, cancelled, does not wait for
    the lane; its handler never starts."""
    started, release, ran = threading.Event(), threading.Event(), []
    if kind == "async":

        @job_type("one_lane")
        async def one_lane(payload, ctx):
            ran.append(payload["n"])
            started.set()
            await asyncio.to_thread(release.wait, 60)

        declared = one_lane
    else:

        @job_type("one_lane")
        def one_lane_sync(payload, ctx):
            ran.append(payload["n"])
            started.set()
            release.wait(60)

        declared = one_lane_sync

    first, second = (add(conn, "one_lane", {"n": n})["id"] for n in range(2))
    running = run_in_background(declared, db_url, f"one_lane/r_{kind}")
    assert started.wait(20)
    cancel(conn, second)
    wait_until(lambda: job(conn, second)["status"] == "failed", 10)  # while the first still runs
    assert job(conn, first)["status"] == "running" and not release.is_set()
    release.set()
    running.join(20)
    assert ran == [0]  # the cancelled one never started
    assert (job(conn, first)["status"], job(conn, second)["last_error"]) == ("completed", "cancelled by ana")
