"""`make run` restarts a component that dies, as `restart: always` would under docker compose, and
says so; jobs added while the triggerer is down are picked up once it is back (fault: kill -9)."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.e2e.faults import component

pytestmark = pytest.mark.e2e


def test_a_killed_triggerer_comes_back_and_its_jobs_are_done(mail_stack):
    smtp, stack = mail_stack.smtp, mail_stack.stack
    triggerer = component(stack.process.pid, "triggerer")
    os.kill(triggerer.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    with psycopg.connect(mail_stack.database, autocommit=True) as conn:
        job_id = conn.execute(
            "select id from worker.add_job('send_email', %s)",
            [Jsonb({"to": "a@example.com", "template": "welcome", "context": {"name": "A"}})],
        ).fetchone()[0]  # type: ignore[index]
        wanted = f"<job-{job_id}@localhost>"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and wanted not in smtp.message_ids():
            time.sleep(0.5)
        recovered_s = time.monotonic() - killed_at
        status = conn.execute("select status from worker.jobs where id = %s", [job_id]).fetchone()
    assert smtp.message_ids().count(wanted) == 1, f"not delivered once within 180 s of the kill: {status}"
    print(f"triggerer killed: job delivered {recovered_s:.1f} s after the kill")
    assert component(stack.process.pid, "triggerer").pid != triggerer.pid
    mail_stack.stop()
    output = "".join(stack.output)
    assert "triggerer exited with code -9; restarting" in output, output[-2000:]
    assert "restarting triggerer" in output
