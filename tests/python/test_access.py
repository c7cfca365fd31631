"""Who may do what in the job queue (jobqueue/access.py): every route of the app played as each role
of Airflow's Simple auth manager (its own user class and auth manager deciding), against a real job
database. A refused request answers 403 naming what was refused, and changes nothing; the pages
offer only what the user may do. tests/e2e/test_acme_worker_e2e.py plays the same on a running stack with
real logins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import add, rows, serve_as

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")

WELCOME = {"to": "ana@example.com", "template": "welcome", "context": {"name": "Ana"}}
RUN = "send_email/manual__1"


def world(conn) -> dict[str, Any]:
    """Everything an action could change: the jobs, the actions recorded, pauses, rate limits."""
    return {
        "jobs": rows(conn, "select * from worker.jobs order by id"),
        "actions": rows(conn, "select action, actor, detail from worker.job_actions order by id"),
        "paused": rows(conn, "select kind, name from worker.paused order by 1, 2"),
        "limits": rows(conn, "select identifier, override from worker.rate_limits order by 1"),
    }


@pytest.fixture
def queue(conn, db_url, monkeypatch) -> Iterator[Any]:
    """The app on a job database holding a failed send_email job of a run, a waiting one, and jobs
    of an identifier no DAG consumes; `queue.client(role)` answers as a user of that role."""
    from fastapi.testclient import TestClient

    from jobqueue import web

    monkeypatch.setenv("AIRFLOW_CONN_WORKER_DB", db_url)
    failed = add(conn, "send_email", WELCOME)["id"]
    rows(conn, "select worker.claim_jobs(array['send_email'], %s)", [RUN])
    rows(conn, "select worker.fail_job(%s, %s, 'SMTP down', false)", [failed, RUN])
    waiting = add(conn, "send_email", WELCOME, run_at="2999-01-01T00:00:00Z")["id"]
    orphan = add(conn, "nobody_consumes", {"n": 1})["id"]
    app = web.create_app()

    class Queue:
        ids = {"failed": failed, "waiting": waiting, "orphan": orphan}

        @staticmethod
        def client(role: str) -> TestClient:
            serve_as(app, role)
            return TestClient(app, headers={"X-Requested-With": "jobs-page"})

    yield Queue()


def writes(ids: dict[str, int]) -> list[tuple[str, str, dict | None]]:
    """Every route that changes something, with a body that would."""
    return [
        ("POST", "/api/jobs", {"identifier": "send_email", "payload": WELCOME}),
        ("POST", "/api/jobs/actions", {"action": "fail", "ids": [ids["waiting"]], "reason": "no"}),
        ("POST", f"/api/jobs/{ids['failed']}/retry", None),
        ("POST", f"/api/jobs/{ids['waiting']}/cancel", None),
        ("POST", "/api/pause", {"identifier": "send_email"}),
        ("POST", "/api/resume", {"identifier": "send_email"}),
        ("POST", "/api/pause", {"queue_name": "customer:7"}),
        ("POST", "/api/rate_limits", {"identifier": "send_email", "rate_limit": "1/h"}),
    ]


def reads(ids: dict[str, int]) -> list[str]:
    return [
        "/api/jobs", "/api/counts", f"/api/jobs/{ids['failed']}", f"/api/jobs/{ids['failed']}/attempts",
        "/api/controls", f"/api/runs/{RUN}", f"/runs/{RUN}", "/", f"/{ids['failed']}",
    ]  # fmt: skip


def test_a_viewer_reads_everything_and_changes_nothing(queue, conn):
    viewer = queue.client("viewer")
    for path in reads(queue.ids):
        assert viewer.get(path).status_code == 200, path
    before = world(conn)
    for method, path, body in writes(queue.ids):
        answer = viewer.request(method, path, json=body)
        assert answer.status_code == 403, (path, answer.status_code, answer.text)
        assert answer.json()["detail"].startswith("viewer may not "), answer.text
    assert world(conn) == before  # nothing refused changed anything
    # The pages offer the viewer no action: no buttons, no boxes to tick, no controls.
    for page in ("/", f"/{queue.ids['failed']}"):
        html = viewer.get(page).text
        for offered in ("Retry now", "Fail for good", 'data-control="pause"', 'name="job"', "Pause queue"):
            assert offered not in html, (page, offered)


@pytest.mark.parametrize("role", ["user", "op", "admin"])
def test_a_user_acts_and_each_action_keeps_who_and_why(queue, conn, role):
    client = queue.client(role)
    html = client.get("/").text
    assert "Retry now" in html and 'data-control="pause"' in html
    for method, path, body in writes(queue.ids):
        answer = client.request(method, path, json=body)
        assert answer.status_code in (200, 201), (path, answer.status_code, answer.text)
    recorded = rows(
        conn, "select action, actor, detail->>'reason' as reason from worker.job_actions order by id"
    )
    assert {row["actor"] for row in recorded} == {role}
    assert {"action": "fail", "actor": role, "reason": "no"} in recorded
    assert (
        rows(conn, "select last_error from worker.jobs where id = %s", [queue.ids["waiting"]]) == []
    )  # cancelled


def test_jobs_no_dag_consumes_belong_to_whoever_may_act_on_every_dag(queue, conn):
    """An identifier that is no DAG's is asked about as of every DAG: the Simple auth manager's
    roles answer alike for all DAGs; per-DAG managers (FAB) keep it from a user of one DAG."""
    orphan = queue.ids["orphan"]
    assert queue.client("viewer").get(f"/api/jobs/{orphan}").status_code == 200
    refused = queue.client("viewer").post("/api/jobs/actions", json={"action": "cancel", "ids": [orphan]})
    assert refused.json()["detail"] == (
        "viewer may not act on jobs of 'nobody_consumes', which no DAG consumes: "
        "that takes rights on every DAG"
    )
    assert queue.client("user").post(f"/api/jobs/{orphan}/cancel").status_code == 200


class OneDagAuthManager:
    """An auth manager of per-DAG rights, as FAB's answers for a user given one DAG (send_email):
    that DAG's runs and the DAG itself; and, as FAB does, yes to a GET about no DAG in particular
    ("may list DAGs"), which must not open every DAG's jobs. tests/e2e/test_celery.py plays a
    real FAB user of one DAG."""

    def is_authorized_dag(
        self, *, method: str, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if details is None or details.id is None:
            return method == "GET"
        return details.id == "send_email"


def test_a_user_of_one_dag_sees_and_acts_on_its_jobs_only(queue, conn):
    from fastapi.testclient import TestClient

    from jobqueue import web

    app = web.create_app()
    serve_as(app, "user", auth_manager=OneDagAuthManager())
    client = TestClient(app, headers={"X-Requested-With": "jobs-page"})
    pdf = add(conn, "generate_pdf", {"n": 1}, run_at="2999-01-01T00:00:00Z")["id"]
    listed = {job["identifier"] for job in client.get("/api/jobs").json()}
    assert listed == {"send_email"}  # not generate_pdf's, not the orphan's
    assert {row["identifier"] for row in client.get("/api/counts").json()} == {"send_email"}
    assert client.get(f"/api/jobs/{pdf}").status_code == 403
    assert client.get(f"/api/jobs/{queue.ids['orphan']}").status_code == 403
    assert "nobody_consumes" not in client.get("/").text
    before = world(conn)
    for body in (
        {"action": "cancel", "ids": [pdf]},
        {"action": "cancel", "ids": [queue.ids["waiting"], pdf]},
    ):
        assert client.post("/api/jobs/actions", json=body).status_code == 403
    assert client.post("/api/pause", json={"queue_name": "customer:7"}).status_code == 403
    assert world(conn) == before  # a mixed selection is refused whole
    assert client.post(f"/api/jobs/{queue.ids['waiting']}/cancel").status_code == 200
