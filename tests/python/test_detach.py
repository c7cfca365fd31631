"""The sender outlives its task: a send task killed mid-batch (kill -9) leaves its detached sender to
finish the batch and record it, and the retried task sends nothing twice (issue 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from jobqueue import detach, paths
from jobqueue.airflow_dag import run_task
from jobqueue.exceptions import DetachedError
from tests.helpers import add, job, run_steps, task_run
from tests.python.test_send_email import RENDER, SEND_EMAIL, WORKER, welcome

# A send task, as Airflow runs it once it has read its context (jobqueue.task_run, tested against
# Airflow's own contexts in tests/test_dag_run.py): the DAG file parsed, then its `send` task.
SEND = """
import sys
from jobqueue.airflow_dag import run_task
from tests.helpers import load_dag_file, task_run
run_task(load_dag_file("send_email").send_email, 1, task_run(sys.argv[1], "send"))
"""


def test_the_result_comes_back():
    assert detach.run_detached(lambda: {"pid": os.getpid(), "sid": os.getsid(0)})["sid"] != os.getsid(0)


def test_an_error_comes_back_named():
    def fails():
        raise ValueError("no such template")

    with pytest.raises(DetachedError, match="failed: ValueError: no such template"):
        detach.run_detached(fails)


def test_a_child_dying_without_a_result_is_an_error():
    with pytest.raises(DetachedError, match="died without a result"):
        detach.run_detached(lambda: os.kill(os.getpid(), signal.SIGKILL))


def test_a_send_task_killed_mid_batch_sends_each_message_once(conn, db_url, smtp, tmp_path, monkeypatch):
    smtp.handler.delay = 0.02  # a slow server: the batch takes about a second
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_CONN_WORKER_DB": db_url,
        "AIRFLOW_CONN_SMTP_DEFAULT": smtp.airflow_uri,
        "WORKER_SMTP_SESSIONS": "2",
        "PYTHONPATH": os.pathsep.join([str(paths.PROJECT_ROOT / "plugins"), str(paths.PROJECT_ROOT)]),
    }
    for name in (
        "AIRFLOW_HOME",
        "AIRFLOW_CONN_WORKER_DB",
        "AIRFLOW_CONN_SMTP_DEFAULT",
        "WORKER_SMTP_SESSIONS",
    ):
        monkeypatch.setenv(name, env[name])
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(100)]
    run_steps(SEND_EMAIL, db_url, WORKER, steps=RENDER)
    run_id = WORKER.partition("/")[2]
    task = subprocess.Popen([sys.executable, "-c", SEND, run_id], env=env)
    deadline = time.monotonic() + 60
    while len(smtp.messages) < 5 and task.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    task.kill()  # the task process, mid-batch: its sender is in a session of its own
    task.wait()
    killed_after = len(smtp.messages)
    assert 5 <= killed_after < len(ids), "the kill did not land mid-batch"

    retry = run_task(SEND_EMAIL, 1, task_run(run_id, "send", try_number=2))  # waits for the orphaned sender

    # The orphan went on to the end of the batch: the retry, let in once it was done, had nothing left.
    assert retry == {"jobs": 0}
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
