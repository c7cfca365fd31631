"""The team's stack: `make run` with examples/acme_worker added (WORKER_PROJECT), its job database an
outside server holding the team's own tables, a test-owned SMTP server and partner API, and
colleagues with Airflow's roles beside the admin. The acceptance test and the test of who may do
what play on one (tests/e2e/test_acme_worker_e2e.py)."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from devtools.harness import RunningStack, own_stack_environment
from jobqueue import paths
from jobqueue.migrations import apply_migrations
from tests.conftest import create_database, drop_database
from tests.e2e.conftest import API_TIMEOUT, access_token
from tests.partner import Partner
from tests.smtp import SmtpServer

PROJECT = paths.PROJECT_ROOT / "examples" / "acme_worker"
# Colleagues, in Airflow's own setting (make run adds its admin): their passwords are generated.
COLLEAGUES = {"ops": "op", "ana": "user", "vic": "viewer"}


class AcmeStack:
    def __init__(self, env: dict[str, str], project: Path, database: str, smtp: SmtpServer) -> None:
        self.project = project
        self.database = database
        self.smtp = smtp
        self.api = f"http://127.0.0.1:{env['AIRFLOW_API_PORT']}"
        self.data = Path(env["WORKER_DATA_DIR"])
        self.documents = self.data / "documents"
        self.stack = RunningStack(env)

    def token(self, user: str = "admin") -> str:
        """A token of the admin's, or of a colleague's (whose password Airflow generated)."""
        if user == "admin":
            return access_token(self.api, self.stack.password, user)
        passwords = json.loads((self.data / "airflow" / "passwords.json").read_text())
        return access_token(self.api, passwords[user], user)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.api + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
            return json.load(response)

    def mails_to(self, address: str) -> list[Any]:
        return [message for recipients, message in self.smtp.messages if address in recipients]


@contextmanager
def acme_stack(server_url: str, folder: Path) -> Iterator[AcmeStack]:
    project = folder / "acme_worker"
    shutil.copytree(PROJECT, project)  # the acceptance test edits its crontab and adds a template
    suffix = uuid.uuid4().hex[:8]
    database = create_database(server_url, f"acme_{suffix}")
    metadata = create_database(server_url, f"acme_airflow_{suffix}")
    apply_migrations(database)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute((project / "schema.sql").read_text())  # the team's tables, there before us
    smtp = SmtpServer()
    smtp.start()
    partner = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Partner)
    Partner.calls = []
    threading.Thread(target=partner.serve_forever, daemon=True).start()
    try:
        with own_stack_environment("worker-acme-") as env:
            env.update(
                WORKER_PROJECT=str(project),
                WORKER_DATABASE_URL=database,
                WORKER_AIRFLOW_DATABASE_URL=metadata,
                AIRFLOW_CONN_SMTP_DEFAULT=smtp.airflow_uri,
                AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{u}:{r}" for u, r in COLLEAGUES.items()),
                ACME_CLEANUP_SCHEDULE="* * * * *",  # its nightly clean-up, every minute
                ACME_PARTNER_URL=f"http://127.0.0.1:{partner.server_address[1]}",
            )
            running = AcmeStack(env, project, database, smtp)
            try:
                yield running
            finally:
                running.stack.stop_with("make stop")
    finally:
        smtp.stop()
        partner.shutdown()
        partner.server_close()
        drop_database(server_url, f"acme_{suffix}")
        drop_database(server_url, f"acme_airflow_{suffix}")
