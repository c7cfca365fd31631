"""docker-compose.yaml's production settings for real, on one stack: the CeleryExecutor (Redis on
loopback, a Celery worker process) and FAB's auth manager.

- Jobs added by SQL are done by the Celery worker, as they would be on other hosts: the claims hold
  there too.
- A FAB user given one DAG (user_signup), through FAB's own roles and per-DAG permissions, sees and
  acts on that job type's jobs only: every other job is a 403 that changes nothing, and the lists
  hold none of them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jobqueue.documents import server
from tests.conftest import free_port
from tests.e2e.conftest import API_TIMEOUT, access_token

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis_url():
    server = shutil.which("redis-server")
    assert server, "the Celery test needs redis-server (apt-get install redis-server)"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def celery_env(stack_env, redis_url):
    stack_env["WORKER_EXECUTOR"] = "CeleryExecutor"
    stack_env["WORKER_CELERY_BROKER_URL"] = redis_url
    stack_env["WORKER_AUTH_MANAGER"] = "fab"
    return stack_env


def airflow_cli(env: dict[str, str], *args: str) -> None:
    """`make airflow ARGS=...` on the test's stack."""
    command = [sys.executable, "-m", "devtools.stack", "airflow", *args]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=180)


def call(api: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        api + path, data=None if body is None else json.dumps(body).encode(), method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def a_user_of_one_dag_sees_and_acts_on_its_jobs_only(env: dict[str, str], conn: psycopg.Connection) -> None:
    api = f"http://127.0.0.1:{env['AIRFLOW_API_PORT']}"
    # The role and its permissions from a file, as `roles export` writes it (one CLI call: each
    # costs ~5 s of CPU to start Airflow and FAB).
    roles = Path(env["WORKER_DATA_DIR"]) / "signup_desk_roles.json"
    roles.write_text(
        json.dumps(
            [
                {"name": "signup_desk", "resource": "DAG:user_signup", "action": "can_read,can_edit"},
                {"name": "signup_desk", "resource": "DAG Runs", "action": "can_read,can_create,can_edit"},
            ]
        )
    )
    airflow_cli(env, "roles", "import", str(roles))
    airflow_cli(
        env, "users", "create", "--username", "sol", "--password", "sol-password", "--role", "signup_desk",
        "--firstname", "Sol", "--lastname", "Desk", "--email", "sol@example.com",
    )  # fmt: skip
    token = access_token(api, "sol-password", "sol")
    far = "2999-01-01T00:00:00Z"
    theirs = conn.execute(
        "select id from worker.add_job('user_signup', '{\"email\": \"s@example.com\"}', run_at => %s)", [far]
    ).fetchone()[0]  # type: ignore[index]
    other = conn.execute("select id from worker.add_job('send_email', '{}', run_at => %s)", [far]).fetchone()[
        0
    ]  # type: ignore[index]
    assert {job["identifier"] for job in call(api, token, "GET", "/job-queue/api/jobs")[1]} == {"user_signup"}
    assert {row["identifier"] for row in call(api, token, "GET", "/job-queue/api/counts")[1]} == {
        "user_signup"
    }
    assert call(api, token, "GET", f"/job-queue/api/jobs/{theirs}")[0] == 200
    before = conn.execute("select * from worker.jobs order by id").fetchall()
    refused: list[tuple[str, str, Any]] = [
        ("GET", f"/job-queue/api/jobs/{other}", None),
        ("POST", "/job-queue/api/jobs", {"identifier": "send_email", "payload": {}, "run_at": far}),
        ("POST", "/job-queue/api/jobs/actions", {"action": "cancel", "ids": [other]}),
        ("POST", "/job-queue/api/jobs/actions", {"action": "cancel", "ids": [theirs, other]}),
        ("POST", "/job-queue/api/pause", {"identifier": "send_email"}),
        ("POST", "/job-queue/api/pause", {"queue_name": "customer:7"}),
    ]
    for method, path, body in refused:
        status, answer = call(api, token, method, path, body)
        assert status == 403 and "sol may not" in answer, (path, status, answer)
    assert conn.execute("select * from worker.jobs order by id").fetchall() == before
    allowed: list[tuple[str, str, Any]] = [
        (
            "POST",
            "/job-queue/api/jobs",
            {"identifier": "user_signup", "payload": {"email": "t@example.com"}, "run_at": far},
        ),
        ("POST", "/job-queue/api/pause", {"identifier": "user_signup", "reason": "signups on hold"}),
        ("POST", "/job-queue/api/resume", {"identifier": "user_signup"}),
        ("POST", f"/job-queue/api/jobs/{theirs}/cancel", None),
    ]
    for method, path, body in allowed:
        status, answer = call(api, token, method, path, body)
        assert status in (200, 201), (path, status, answer)
    # Airflow's own API answers sol the same: one DAG.
    assert [dag["dag_id"] for dag in call(api, token, "GET", "/api/v2/dags")[1]["dags"]] == ["user_signup"]


def test_production_settings_celery_and_fab(celery_env, mail_stack):
    started = "".join(mail_stack.stack.output)
    # The data folder's database was migrated by this Airflow already (the run's prepared one,
    # with the Simple auth manager): turning FAB's on migrates FAB's tables only.
    assert "migrating the FAB auth manager's tables" in started, started
    assert "migrating its metadata database" not in started, started
    specs = [
        {
            "identifier": "send_email",
            "payload": {"to": f"c{n}@example.com", "template": "welcome", "context": {"name": "C"}},
        }
        for n in range(100)
    ]
    try:
        with psycopg.connect(mail_stack.database, autocommit=True) as conn:
            ids = [row[0] for row in conn.execute("select id from worker.add_jobs(%s)", [Jsonb(specs)])]
            deadline = time.monotonic() + 240
            done = 0
            while done < len(ids) and time.monotonic() < deadline:
                time.sleep(1)
                done = conn.execute(
                    "select count(*) from worker.jobs where id = any(%s) and status = 'completed'", [ids]
                ).fetchone()[0]  # type: ignore[index]
            a_user_of_one_dag_sees_and_acts_on_its_jobs_only(celery_env, conn)
    finally:
        mail_stack.stop()
    assert done == len(ids)
    ours = [message for to, message in mail_stack.smtp.messages if to[0].startswith("c")]
    assert sorted(str(m["Message-ID"]) for m in ours) == sorted(f"<job-{i}@localhost>" for i in ids)
    logs = Path(celery_env["WORKER_DATA_DIR"]) / "logs"
    worker_log = (logs / "celery-worker.log").read_text()
    assert "execute_workload" in worker_log and "succeeded" in worker_log, worker_log[-3000:]
    # The host's render server runs beside the component that runs its tasks: here the Celery
    # worker, not the scheduler (whose CeleryExecutor runs none).
    socket = server.socket_path(Path(celery_env["WORKER_DATA_DIR"]))
    assert f"serving on {socket}" in worker_log, worker_log[-3000:]
    assert "render server" not in (logs / "scheduler.log").read_text()
