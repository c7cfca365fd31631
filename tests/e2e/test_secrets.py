"""No secret in what a run leaves behind: the SMTP password, the JWT secret and a connection URL with
its password appear in no log file, no XCom, no rendered template field and no error message, after
jobs that succeeded and jobs that failed (threat: a log reader or a UI user learns a credential).

On the shared stack, after every other test of it (its SMTP server requires this login): this test
is its last, and stops it to read everything it left, its output included."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.e2e

# Files that hold a secret on purpose (they are the secret's home, mode 0600) and the database files.
HOMES = {"jwt-secret", "api-secret-key", "admin-password", "passwords.json"}


def test_no_secret_in_logs_xcom_or_errors(shared_stack):
    smtp, stack = shared_stack.smtp, shared_stack.stack
    password = shared_stack.SMTP_LOGIN[1]
    data = Path(shared_stack.env["WORKER_DATA_DIR"])
    port = shared_stack.env["WORKER_PG_PORT"]
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/worker", autocommit=True) as conn:
            good = conn.execute(
                "select id from worker.add_job('send_email', %s)",
                [Jsonb({"to": "a@example.com", "template": "welcome", "context": {"name": "A"}})],
            ).fetchone()[0]  # type: ignore[index]
            bad = conn.execute(
                "select id from worker.add_job('send_email', %s)", [Jsonb({"template": "welcome"})]
            ).fetchone()[0]  # type: ignore[index]
            deadline = time.monotonic() + 120
            states: dict[int, str] = {}
            while time.monotonic() < deadline:
                states = dict(
                    conn.execute("select id, status from worker.jobs where id in (%s, %s)", [good, bad])
                )
                if states == {good: "completed", bad: "failed"}:
                    break
                time.sleep(0.5)
            assert states == {good: "completed", bad: "failed"}, states
            errors = [row[0] for row in conn.execute("select coalesce(last_error, '') from worker.jobs")]
        assert f"<job-{good}@localhost>" in smtp.message_ids()  # the password was right: the server let it in
        jwt = (data / "airflow" / "jwt-secret").read_text().strip()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/airflow") as meta:
            stored = [
                str(row[0])
                for query in (
                    "select value from xcom",
                    "select rendered_fields from rendered_task_instance_fields",
                    "select coalesce(extra, '') from log",
                )
                for row in meta.execute(query)
            ]
    finally:
        shared_stack.stop()
    texts = [
        (str(path), path.read_bytes().decode(errors="replace"))
        for path in data.rglob("*")
        if path.is_file() and path.name not in HOMES and "pg" not in path.relative_to(data).parts[:1]
    ]
    texts += [("worker.jobs.last_error", e) for e in errors] + [("airflow metadata", s) for s in stored]
    texts += [("stack output", "".join(stack.output))]
    assert any("send_email" in text for _, text in texts), "found nothing to search"
    for secret in (password, jwt, f"mailer:{password}@"):
        leaks = [where for where, text in texts if secret in text]
        assert leaks == [], f"a secret is in {leaks}"
