"""The send_email DAG run in-process with dag.test(), on a metadata database of its own (never the
running stack's), against the real job database and a real SMTP server. A job that fails for
good fails the run, named in its last task's error."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from devtools import airflow_env
from jobqueue import paths
from tests.conftest import create_database, drop_database
from tests.helpers import add, all_jobs
from tests.smtp import SmtpServer

RUN = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("send_email_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
run = module.send_email.dag.test()
print("RUN-STATE", run.state)
"""


@pytest.fixture
def metadata_url(server_url):
    name = f"airflow_test_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    yield url.replace("postgresql://", "postgresql+psycopg2://", 1)
    drop_database(server_url, name)


def test_send_email_dag_test(conn, db_url, metadata_url, tmp_path):
    smtp = SmtpServer()
    smtp.start()
    try:
        good = [
            add(
                conn,
                "send_email",
                {"to": f"u{n}@example.com", "template": "welcome", "context": {"name": "U"}},
            )["id"]
            for n in range(3)
        ]
        bad = add(conn, "send_email", {"to": "u@example.com", "template": "welcome"})["id"]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            "AIRFLOW_HOME": str(tmp_path),
            **airflow_env.dag_parsing(),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW_CONN_WORKER_DB": db_url,
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp.airflow_uri,
            "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins"),
        }
        airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        result = subprocess.run(
            [sys.executable, "-c", RUN, str(paths.PROJECT_ROOT / "dags" / "send_email.py")],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        # The bad job failed for good: its run ends failed, the last task naming it, after every
        # good job was sent.
        assert "RUN-STATE failed" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
        logged = result.stdout + result.stderr
        assert "1 job(s) of this run failed for good (its Jobs tab lists them)" in logged
        assert f"job {bad} failed for good: template 'welcome' (en): 'name' is undefined" in logged
    finally:
        smtp.stop()
    statuses = {job["id"]: (job["status"], job["last_error"]) for job in all_jobs(conn)}
    assert all(statuses[i] == ("completed", None) for i in good), statuses
    assert statuses[bad][0] == "failed" and "'name' is undefined" in statuses[bad][1]
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in good)
