"""`make run` restarts a component that dies, as `restart: always` would under docker compose, and
says so; jobs added while the triggerer is down, and after it is back, are done (fault: kill -9).

On the fault suite's stack, after its rounds (which killed the scheduler, the triggerer and the
dag-processor): this test is its last, and stops it to read what the supervisor said."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.e2e.faults import component

pytestmark = pytest.mark.e2e


def delivered(running, conn: psycopg.Connection, name: str, within_s: float = 180) -> None:
    """Adds an e-mail job and waits until the SMTP server accepted it, once."""
    job_id = conn.execute(
        "select id from worker.add_job('send_email', %s)",
        [Jsonb({"to": f"{name}@example.com", "template": "welcome", "context": {"name": name}})],
    ).fetchone()[0]  # type: ignore[index]
    wanted = f"<job-{job_id}@localhost>"
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and wanted not in running.smtp.message_ids():
        time.sleep(0.5)
    status = conn.execute("select status from worker.jobs where id = %s", [job_id]).fetchone()
    assert running.smtp.message_ids().count(wanted) == 1, f"{name}: not delivered once: {status}"


def test_a_killed_triggerer_comes_back_and_its_jobs_are_done(fault_stack):
    stack = fault_stack.stack
    triggerer = component(stack.process.pid, "triggerer")
    os.kill(triggerer.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    with psycopg.connect(fault_stack.database, autocommit=True) as conn:
        # Added while no triggerer runs: a run already going may take it, or the new triggerer fires.
        delivered(fault_stack, conn, "during")
        print(f"triggerer killed: job delivered {time.monotonic() - killed_at:.1f} s after the kill")
        deadline = time.monotonic() + 60
        while True:
            try:
                if component(stack.process.pid, "triggerer").pid != triggerer.pid:
                    break
            except LookupError:
                pass
            assert time.monotonic() < deadline, "no new triggerer within 60 s of the kill"
            time.sleep(0.5)
        delivered(fault_stack, conn, "after")  # the new triggerer watches the job table
    fault_stack.stop()
    output = "".join(stack.output)
    assert "triggerer exited with code -9; restarting" in output, output[-2000:]
    assert "restarting triggerer" in output
