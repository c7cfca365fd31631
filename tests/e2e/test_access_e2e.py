"""Who may do what, on a running stack with real logins: `make run` kept the colleagues given in
Airflow's own setting (ops: op, ana: user, vic: viewer) beside its admin, and every route of the job
queue answers each of them as Airflow's auth manager says, a refused request changing nothing in the
database. Held against Airflow's own REST API, which refuses the viewer a DAG run as we refuse it a
job."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import wait_for
from tests.e2e.team import COLLEAGUES

pytestmark = pytest.mark.e2e
FAR = "2999-01-01T00:00:00Z"  # the jobs of this test wait: none sends anything


def call(acme: Any, user: str, method: str, path: str, body: Any = None) -> tuple[int, str]:
    request = urllib.request.Request(
        acme.api + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {acme.token(user)}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def world(conn: psycopg.Connection) -> list[Any]:
    """What any action could change: the jobs, the actions kept, pauses, rate limits."""
    return [
        conn.execute("select * from worker.jobs order by id").fetchall(),
        conn.execute("select action, actor, detail from worker.job_actions order by id").fetchall(),
        conn.execute("select kind, name from worker.paused order by 1, 2").fetchall(),
        conn.execute("select identifier, override from worker.rate_limits order by 1").fetchall(),
    ]


def writes(job: int) -> list[tuple[str, str, Any]]:
    """Every route that changes something, with a body that would; the last ones put back what the
    first ones changed, so the session's other tests find the stack as it was."""
    return [
        (
            "POST",
            "/job-queue/api/jobs",
            {"identifier": "signup", "payload": {"customer_id": 1}, "run_at": FAR},
        ),
        ("POST", "/job-queue/api/jobs/actions", {"action": "reschedule", "ids": [job], "run_at": FAR}),
        ("POST", "/job-queue/api/jobs/actions", {"action": "fail", "ids": [job], "reason": "customer left"}),
        ("POST", "/job-queue/api/pause", {"identifier": "signup", "reason": "provider down"}),
        ("POST", "/job-queue/api/resume", {"identifier": "signup"}),
        ("POST", "/job-queue/api/pause", {"queue_name": "customer:7"}),
        ("POST", "/job-queue/api/resume", {"queue_name": "customer:7"}),
        ("POST", "/job-queue/api/rate_limits", {"identifier": "signup", "rate_limit": "1/h"}),
        ("POST", "/job-queue/api/rate_limits", {"identifier": "signup", "rate_limit": None}),
        ("POST", f"/job-queue/api/jobs/{job}/cancel", None),
    ]


def test_every_route_answers_each_colleague_as_airflow_s_auth_manager_says(acme):
    with psycopg.connect(acme.database, autocommit=True) as conn:
        wait_for(conn, "select count(*) from worker._consumers where identifier = 'signup'", [],
                 lambda v: v[0][0] == 1, 180, "signup's trigger")  # fmt: skip
        [(job,)] = conn.execute(
            "select id from worker.add_job('signup', '{\"customer_id\": 2}', run_at => %s)", [FAR]
        ).fetchall()
        reads = [
            "/job-queue/api/jobs", "/job-queue/api/counts", f"/job-queue/api/jobs/{job}",
            f"/job-queue/api/jobs/{job}/attempts", "/job-queue/api/controls", "/job-queue/",
            f"/job-queue/{job}",
        ]  # fmt: skip
        for user in ["admin", *COLLEAGUES]:
            for path in reads:
                assert call(acme, user, "GET", path)[0] == 200, (user, path)

        # The viewer: every action refused, naming what, and nothing changed.
        before = world(conn)
        for method, path, body in writes(job):
            status, answer = call(acme, "vic", method, path, body)
            assert status == 403 and json.loads(answer)["detail"].startswith("vic may not"), (
                path,
                status,
                answer,
            )
        assert world(conn) == before
        page = call(acme, "vic", "GET", "/job-queue/")[1]
        assert "Retry now" not in page and 'data-control="pause"' not in page and 'name="job"' not in page
        # Airflow's own API says the same of a DAG run.
        assert call(acme, "vic", "POST", "/api/v2/dags/signup/dagRuns", {"logical_date": None})[0] == 403

        # The user and the op: every action taken, kept with who did it and why.
        for user in ("ana", "ops"):
            [(job,)] = conn.execute(
                "select id from worker.add_job('signup', '{\"customer_id\": 3}', run_at => %s)", [FAR]
            ).fetchall()
            page = call(acme, user, "GET", "/job-queue/")[1]
            assert "Retry now" in page and 'data-control="pause"' in page
            for method, path, body in writes(job):
                status, answer = call(acme, user, method, path, body)
                assert status in (200, 201), (user, path, status, answer)
            kept = conn.execute(
                "select action, detail->>'reason' from worker.job_actions where actor = %s order by id",
                [user],
            ).fetchall()
            assert ("fail", "customer left") in kept and ("pause", "provider down") in kept, kept
        assert conn.execute("select count(*) from worker.paused").fetchone() == (0,)
        assert conn.execute(
            "select count(*) from worker.rate_limits where override is not null"
        ).fetchone() == (0,)
