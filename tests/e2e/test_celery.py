"""The CeleryExecutor for real: Redis on loopback, a Celery worker process, the real stack. Jobs added
by SQL are done by the Celery worker, as they would be on other hosts: the claims hold there too."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.conftest import free_port

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
    return stack_env


def test_celery_worker_does_the_jobs(celery_env, mail_stack):
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
    finally:
        mail_stack.stop()
    assert done == len(ids)
    ours = [message for to, message in mail_stack.smtp.messages if to[0].startswith("c")]
    assert sorted(str(m["Message-ID"]) for m in ours) == sorted(f"<job-{i}@localhost>" for i in ids)
    worker_log = (Path(celery_env["WORKER_DATA_DIR"]) / "logs" / "celery-worker.log").read_text()
    assert "execute_workload" in worker_log and "succeeded" in worker_log, worker_log[-3000:]
