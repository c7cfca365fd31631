"""What the job queue's app shows and does beyond a list (jobqueue/web), against a real job database
with jobs run by the runtime: every attempt of a job and of a DAG run, actions on every job a
filter matches, cancelling a running job. Rights are Airflow's Simple auth manager's (test_access.py
plays every route as each role)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from jobqueue import job_type
from jobqueue.runtime import StepRun
from tests.helpers import add, job, rows, serve_as

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")


@job_type("flaky")
def flaky(payload, ctx):
    if ctx.job.attempts == 1:
        raise ConnectionError("image server went away")
    if ctx.job.attempts == 2:
        raise ValueError("bad image")
    return {"attempt": ctx.job.attempts}


def run(job_type, db_url: str, worker: str) -> None:
    connect = lambda: psycopg.connect(db_url)  # noqa: E731
    for index in range(len(job_type.steps)):
        StepRun(job_type, index, worker, connect).run(None)


def make_runnable(conn) -> None:
    conn.execute("update worker._jobs set run_at = now() where state = 'waiting'")


@pytest.fixture
def client(db_url, monkeypatch) -> Any:
    """The app as `role` of the Simple auth manager, over the DAGs flaky and send_email: one app,
    so the latest client's role is every client's."""
    from fastapi.testclient import TestClient

    from jobqueue import web

    monkeypatch.setenv("AIRFLOW_CONN_WORKER_DB", db_url)
    app = web.create_app()

    def as_role(role: str = "user") -> TestClient:
        serve_as(app, role, dag_ids=("flaky", "send_email"))
        return TestClient(app, headers={"X-Requested-With": "jobs-page"})

    return as_role


def test_every_attempt_is_kept_and_each_run_lists_the_jobs_it_attempted(conn, db_url, client):
    job_id = add(conn, "flaky", {"n": 1})["id"]
    for run_id in ("r1", "r2", "r3"):
        run(flaky, db_url, f"flaky/{run_id}")
        make_runnable(conn)
    assert job(conn, job_id)["status"] == "completed"

    viewer = client("viewer")
    attempts = viewer.get(f"/api/jobs/{job_id}/attempts").json()
    assert [(a["attempt"], a["outcome"], a["worker_id"]) for a in attempts] == [
        (3, "completed", "flaky/r3"), (2, "retry", "flaky/r2"), (1, "retry", "flaky/r1"),
    ]  # fmt: skip
    assert attempts[1]["error"] == "step flaky failed: ValueError: bad image"
    assert 'raise ValueError("bad image")' in attempts[1]["traceback"]
    assert attempts[2]["task_log_url"] == "/dags/flaky/runs/r1/tasks/flaky"
    for attempt in attempts:
        assert attempt["started_at"] <= attempt["ended_at"], attempt
    assert attempts[0]["task_log_url"] == "/dags/flaky/runs/r3"  # a completed attempt: its run

    # Each run's Jobs tab lists the job, with what happened to it in that run, whatever came later.
    for run_id, error in (("r1", "ConnectionError: image server went away"), ("r2", "ValueError: bad image")):
        [listed] = viewer.get(f"/api/runs/flaky/{run_id}").json()
        assert listed["id"] == job_id and listed["status"] == "completed"
        assert [a["outcome"] for a in listed["attempts_in_run"]] == ["retry"]
        assert error in listed["attempts_in_run"][0]["error"]
        tab = viewer.get(f"/runs/flaky/{run_id}").text
        assert f'data-job="{job_id}"' in tab and error in tab and "failed, retried" in tab
    page = viewer.get(f"/{job_id}").text
    assert page.count('data-outcome="retry"') == 2 and page.count('data-outcome="completed"') == 1


def failed_jobs(conn, errors: list[str]) -> list[int]:
    ids = [add(conn, "send_email", {"n": n})["id"] for n in range(len(errors))]
    rows(conn, "select worker.claim_jobs(array['send_email'], 'send_email/r1', 100)")
    for job_id, error in zip(ids, errors, strict=True):
        rows(conn, "select worker.fail_job(%s, 'send_email/r1', %s, false)", [job_id, error])
    return ids


def test_an_action_on_a_filter_takes_every_job_it_matches_and_is_recorded_once(conn, client):
    smtp = failed_jobs(
        conn, ["SMTP 451 try later", "smtp 421 closing", "template missing"] + ["SMTP 450"] * 60
    )
    other = add(conn, "flaky", {"n": 1})["id"]
    user = client("user")
    matching = {"identifier": "send_email", "status": "failed", "error": "smtp"}
    assert user.get("/api/jobs/count", params=matching).json() == {"jobs": 62}
    page = user.get("/", params=matching).text
    assert 'id="matching-count">62<' in page and "Retry all 62" in page

    stale = user.post("/api/jobs/actions", json={"action": "retry", "filter": matching, "expected": 61})
    assert stale.status_code == 422 and "matches 62 jobs now, not the 61 shown" in stale.json()["detail"]
    assert job(conn, smtp[0])["status"] == "failed"  # nothing done

    done = user.post("/api/jobs/actions", json={"action": "retry", "filter": matching, "expected": 62})
    assert done.status_code == 200 and len(done.json()) == 62
    assert {job(conn, i)["status"] for i in smtp[:2] + smtp[3:]} == {"queued"}
    assert job(conn, smtp[2])["status"] == "failed" and job(conn, other)["status"] == "queued"
    [recorded] = rows(conn, "select action, actor, detail, job_ids from worker._job_actions")
    assert (recorded["action"], recorded["actor"], recorded["detail"]["filter"]) == (
        "retry",
        "user",
        matching,
    )
    assert recorded["detail"]["jobs"] == 62 and sorted(recorded["job_ids"]) == sorted(smtp[:2] + smtp[3:])


def test_a_filter_action_is_refused_whole_when_any_job_is_not_the_user_s(conn, client):
    [failed_id] = failed_jobs(conn, ["boom"])
    viewer = client("viewer")
    refused = viewer.post(
        "/api/jobs/actions", json={"action": "fail", "filter": {"status": "failed"}, "expected": 1}
    )
    assert refused.status_code == 403
    assert "Retry all" not in viewer.get("/", params={"status": "failed"}).text
    unsure = client("user").post("/api/jobs/actions", json={"action": "fail", "filter": {"status": "failed"}})
    assert unsure.status_code == 422 and "needs expected" in unsure.text  # not every job by mistake
    assert job(conn, failed_id)["last_error"] == "boom"
    typo = client("user").post(
        "/api/jobs/actions", json={"action": "retry", "filter": {"statuss": "failed"}, "expected": 1}
    )
    assert typo.status_code == 422  # an unknown filter field is refused, not read as "every job"
    nothing = client("user").post("/api/jobs/actions", json={"action": "retry"})
    assert nothing.status_code == 422 and "exactly one of ids and filter" in nothing.text


def test_cancelling_a_running_job_from_the_api_stops_it_and_keeps_who(conn, db_url, client):
    started = threading.Event()

    @job_type("flaky")  # the DAG flaky's job type, for this run: one that waits to be cancelled
    def waits(payload, ctx):
        started.set()
        ctx.cancelled.wait(60)

    job_id = add(conn, "flaky", {"n": 1})["id"]
    thread = threading.Thread(target=run, args=(waits, db_url, "flaky/r9"), daemon=True)
    thread.start()
    assert started.wait(20)
    assert client("viewer").post(f"/api/jobs/{job_id}/cancel").status_code == 403
    answer = client("op").post(f"/api/jobs/{job_id}/cancel")
    assert [(j["id"], j["status"]) for j in answer.json()] == [(job_id, "running")]
    assert "Cancel asked by op" in client("viewer").get(f"/{job_id}").text
    thread.join(20)
    assert (job(conn, job_id)["status"], job(conn, job_id)["last_error"]) == ("failed", "cancelled by op")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "Cancel asked" in client("viewer").get(f"/{job_id}").text:
        time.sleep(0.1)
    assert "cancelled by op" in client("viewer").get(f"/{job_id}").text


def test_the_live_view_shows_what_runs_for_how_long_and_what_waits(conn, client):
    running = add(conn, "flaky", {"n": 1})["id"]
    rows(conn, "select worker.claim_jobs(array['flaky'], 'flaky/r1')")
    rows(conn, "update worker._jobs set locked_at = now() - interval '125 seconds' where id = %s", [running])
    due = add(conn, "send_email", {"n": 2}, run_at="2000-01-01T00:00:00Z")["id"]
    add(conn, "send_email", {"n": 3}, queue_name="customer:7")
    rows(conn, "select worker.pause_identifier('send_email', 'ana')")

    page = client("viewer").get("/live").text
    assert "<html" in page and "setInterval(refreshLive" in page
    part = client("viewer").get("/live", params={"part": 1}).text
    assert "<html" not in part  # the refresh's content alone
    assert f'data-job="{running}"' in part and "2 min 05 s" in part
    assert "Cancel</button>" not in part  # a viewer may not cancel
    assert 'data-identifier="send_email"' in part and "paused" in part and "ana" in part
    assert 'data-queue="customer:7"' in part
    oldest = rows(
        conn, "select extract(epoch from now() - run_at) as age from worker.jobs where id = %s", [due]
    )
    assert oldest[0]["age"] > 3600 * 24 * 365 * 20 and " h " in part  # waited since 2000
    assert "Cancel</button>" in client("op").get("/live", params={"part": 1}).text


def test_the_charts_count_each_minute_s_outcomes_and_latency(conn, db_url, client):
    job_id = add(conn, "flaky", {"n": 1})["id"]
    for run_id in ("r1", "r2", "r3"):
        run(flaky, db_url, f"flaky/{run_id}")
        make_runnable(conn)
    rows(conn, "update worker._jobs set run_at = now() - interval '3 seconds' where id = %s", [job_id])
    for _ in range(4):  # four more, picked up about 3 s after they were due
        add(conn, "send_email", {}, run_at="2000-01-01T00:00:00Z")
    rows(
        conn, "update worker._jobs set run_at = now() - interval '3 seconds' where identifier = 'send_email'"
    )
    claimed = rows(conn, "select id from worker.claim_jobs(array['send_email'], 'send_email/r1', 10)")
    rows(conn, "select worker.complete_jobs(%s::bigint[])", [[row["id"] for row in claimed]])
    rows(conn, "select worker.sample_waiting(array['flaky', 'send_email'])")

    api = client("viewer").get("/api/minutes", params={"identifier": "flaky"}).json()
    # Summed over the minutes: one may have turned between the runs.
    assert [sum(m[kind] for m in api) for kind in ("completed", "failed", "retried")] == [1, 0, 2]
    everything = client("viewer").get("/api/minutes").json()
    assert sum(m["completed"] for m in everything) == 5
    assert everything[-1]["waiting"] is not None  # the triggers' sample, in the latest minute
    p50s = [
        m["latency_p50"]
        for m in client("viewer").get("/api/minutes", params={"identifier": "send_email"}).json()
    ]
    assert any(2.5 <= p <= 5 for p in p50s if p is not None)  # in the 2.5-5 s bucket

    page = client("viewer").get("/charts", params={"identifier": "send_email", "span": "day"}).text
    assert page.count("<svg") == 3 and ("<polyline" in page or "<circle" in page)
    assert "4 completed" in page and "Charts: send_email, last day" in page
    assert client("viewer").get("/charts").status_code == 200


def test_a_percentile_is_read_within_its_bucket():
    from jobqueue.web.charts import percentile

    edges = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800]
    assert percentile([0] * 13, edges, 0.5) is None
    assert percentile([0, 0, 0, 0, 10] + [0] * 8, edges, 0.5) == pytest.approx(0.75)
    assert percentile([10] + [0] * 12, edges, 0.95) == pytest.approx(0.0475)
    assert percentile([0] * 12 + [3], edges, 0.5) == 1800  # past the last edge: its edge
