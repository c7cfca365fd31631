"""`make run` for real: PostgreSQL, the mail sink and Airflow's four components come up on loopback,
the printed login works, a second run reuses the data, and stopping leaves no process behind, even
after the supervisor itself was killed."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import psutil
import psycopg
import pytest

from devtools.harness import RunningStack
from tests.e2e.conftest import survivors, token, trigger_dag

pytestmark = pytest.mark.e2e


def listening_sockets(pid: int) -> list:
    """The sockets `pid` listens on; none once it has ended (the stack's children at start-up
    include short-lived ones, such as the DAG processor's parsing processes)."""
    try:
        return [c for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except psutil.NoSuchProcess:
        return []


def test_run_serves_the_printed_login_and_stops_clean(fresh_stack_env):
    api = f"http://127.0.0.1:{fresh_stack_env['AIRFLOW_API_PORT']}"
    database = f"postgresql://postgres@127.0.0.1:{fresh_stack_env['WORKER_PG_PORT']}/worker"
    stack = RunningStack(fresh_stack_env)
    try:
        assert token(api, stack.password) == 201
        assert token(api, stack.password + "x") == 401
        listening = [c.laddr for pid in stack.pids | {stack.process.pid} for c in listening_sockets(pid)]
        assert listening, "no listening socket found"
        assert all(addr.ip == "127.0.0.1" for addr in listening), listening
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("select worker.add_job('kept', '{\"n\": 1}')")
            # A job held by a DAG run that does not exist: maintenance, triggered over the REST API,
            # asks Airflow about the run and gives the job back to the queue.
            conn.execute("select worker.add_job('orphan')")
            conn.execute("select worker.claim_jobs(array['orphan'], 'send_email/no_such_run')")
            trigger_dag(api, stack.password, "worker_maintenance")
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                orphan = conn.execute(
                    "select status, last_error from worker.jobs where identifier = 'orphan'"
                ).fetchone()
                if orphan and orphan[0] == "queued":
                    break
                time.sleep(1)
            assert orphan == (
                "queued",
                "released by maintenance: DAG run send_email/no_such_run no longer exists",
            )
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hello"
        message.set_content("body")
        with smtplib.SMTP("127.0.0.1", int(fresh_stack_env["WORKER_SMTP_PORT"]), timeout=10) as smtp:
            smtp.send_message(message)
        # Only ours: the sink also holds the digest Airflow runs once when it first sees that DAG.
        mails = [
            mail.read_bytes() for mail in (Path(fresh_stack_env["WORKER_DATA_DIR"]) / "mail").glob("*.eml")
        ]
        assert len([mail for mail in mails if b"Subject: hello" in mail]) == 1
    finally:
        stack.stop_with("sigint")
    assert stack.process.returncode == 0, "".join(stack.output)
    assert survivors(stack.pids) == []
    assert "Airflow: migrating its metadata database" in "".join(stack.output)

    again = RunningStack(fresh_stack_env)
    try:
        assert again.password == stack.password
        # The same Airflow migrated this data folder's database: no `airflow db migrate` again.
        assert "Airflow: metadata database already migrated by apache-airflow==" in "".join(again.output)
        with psycopg.connect(database) as conn:
            assert conn.execute("select count(*) from worker.jobs where identifier = 'kept'").fetchone() == (
                1,
            )
    finally:
        # Its supervisor killed: `make stop` still stops what it had started (the API server kept
        # serving on its port before).
        again.stop_with("kill -9, then make stop")
    assert survivors(again.pids) == []
    assert not (Path(fresh_stack_env["WORKER_DATA_DIR"]) / "stack.pid").exists()
