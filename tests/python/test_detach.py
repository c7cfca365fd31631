"""The sender outlives its task: a send task killed mid-batch (kill -9) leaves its detached sender to
finish the batch and record it, and the retried task sends nothing twice (issue 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jobqueue import detach, email_chain, paths
from jobqueue.manager import JobManager
from tests.helpers import add, job
from tests.python.test_email_chain import WORKER, welcome

SEND = """
import json, sys
from jobqueue import email_chain
email_chain.send_detached(sys.argv[1], json.load(open(sys.argv[2])))
"""


def test_the_result_comes_back():
    assert detach.run_detached(lambda: {"pid": os.getpid(), "sid": os.getsid(0)})["sid"] != os.getsid(0)


def test_an_error_comes_back_named():
    def fails():
        raise ValueError("no such template")

    with pytest.raises(detach.DetachedError, match="failed: ValueError: no such template"):
        detach.run_detached(fails)


def test_a_child_dying_without_a_result_is_an_error():
    with pytest.raises(detach.DetachedError, match="died without a result"):
        detach.run_detached(lambda: os.kill(os.getpid(), signal.SIGKILL))


def test_a_send_task_killed_mid_batch_sends_each_message_once(conn, db_url, smtp, tmp_path, monkeypatch):
    smtp.handler.delay = 0.02  # a slow server: the batch takes about a second
    monkeypatch.setenv("AIRFLOW_CONN_WORKER_DB", db_url)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.airflow_uri)
    monkeypatch.setenv("WORKER_SMTP_SESSIONS", "2")
    jobs = JobManager(conn)
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(100)]
    rendered = email_chain.render(jobs, WORKER, email_chain.prepare(jobs, WORKER))
    batch = tmp_path / "rendered.json"
    batch.write_text(json.dumps(rendered))
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins")}
    task = subprocess.Popen([sys.executable, "-c", SEND, WORKER, str(batch)], env=env)
    deadline = time.monotonic() + 60
    while len(smtp.messages) < 5 and task.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    task.kill()  # the task process, mid-batch: its sender is in a session of its own
    task.wait()
    killed_after = len(smtp.messages)
    assert 5 <= killed_after < len(ids), "the kill did not land mid-batch"

    retry = email_chain.send_detached(WORKER, rendered)  # waits for the orphaned sender

    # The orphan went on to the end of the batch: the retry, let in once it was done, had nothing left.
    assert retry.sent == [] and retry.retry == {}
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
