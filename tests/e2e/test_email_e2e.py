"""Through the real stack: 1,000 jobs added by SQL in one statement arrive as e-mails in a handful
of DAG runs, a bad payload fails naming the field, an SMTP outage means retries, and no message is
ever delivered twice."""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.e2e.conftest import dag_run, trigger_dag, wait_for

pytestmark = pytest.mark.e2e


def ours(smtp, ids: list[int]) -> list[str]:
    """The Message-IDs the server received for these jobs."""
    wanted = {f"<job-{i}@localhost>" for i in ids}
    return [message_id for message_id in smtp.message_ids() if message_id in wanted]


def run_state(api: str, password: str, run: dict) -> str:
    return str(dag_run(api, password, "send_email", run["dag_run_id"])["state"])


def assert_nothing_in_xcom_or_rendered_fields(stack_env: dict[str, str]) -> None:
    """A step's task pushes no XCom and stores no rendered field (step_operator.py): the e-mails'
    addresses and contents go between the steps through the job database only."""
    metadata = f"postgresql://postgres@127.0.0.1:{stack_env['WORKER_PG_PORT']}/airflow"
    with psycopg.connect(metadata) as airflow:
        tasks = airflow.execute("select count(*) from task_instance where dag_id = 'send_email'").fetchone()
        xcoms = airflow.execute("select task_id, value from xcom where dag_id = 'send_email'").fetchall()
        rendered = airflow.execute(
            "select rendered_fields::text from rendered_task_instance_fields where dag_id = 'send_email'"
        ).fetchall()
    assert tasks and tasks[0] > 0
    assert (xcoms, rendered) == ([], [])


def assert_short_tasks_sent_no_heartbeat(stack_env: dict[str, str]) -> None:
    """A task shorter than [workers] min_heartbeat_interval (5 s) tells the API server it started
    and how it ended, and no heartbeat between (first_heartbeat.py): the API server's access log."""
    metadata = f"postgresql://postgres@127.0.0.1:{stack_env['WORKER_PG_PORT']}/airflow"
    with psycopg.connect(metadata) as airflow:
        short = [
            str(task)
            for (task,) in airflow.execute(
                "select id from task_instance where dag_id = 'send_email' and state = 'success'"
                " and end_date - start_date < interval '4 seconds'"
            )
        ]
    access = (Path(stack_env["WORKER_DATA_DIR"]) / "logs" / "api-server.log").read_text()
    assert short
    for task in short:
        assert f"path=/execution/task-instances/{task}/run " in access  # the log names each call
        assert f"path=/execution/task-instances/{task}/heartbeat " not in access


def test_jobs_become_emails(shared_stack):
    smtp, stack, database = shared_stack.smtp, shared_stack.stack, shared_stack.database
    api = shared_stack.api
    with psycopg.connect(database, autocommit=True) as conn:
        specs = [
            {
                "identifier": "send_email",
                "payload": {
                    "to": f"u{n}@example.com",
                    "template": "welcome",
                    "context": {"name": f"U{n}"},
                },
            }
            for n in range(1000)
        ]
        specs.insert(
            100,
            {"identifier": "send_email", "payload": {"template": "welcome", "context": {"name": "x"}}},
        )
        ids = [row[0] for row in conn.execute("select id from worker.add_jobs(%s)", [Jsonb(specs)])]
        bad = ids.pop(100)
        completed = "select count(*) from worker.jobs where id = any(%s) and status = 'completed'"
        wait_for(conn, completed, [ids], lambda v: v[0][0] == 1000, 240, "1000 completed jobs")
        failed = conn.execute(
            "select status, last_error, attempts, max_attempts from worker.jobs where id = %s", [bad]
        ).fetchone()
        # Failed for good at once, no attempts left: it is not retried.
        assert failed == ("failed", "invalid payload: payload.to: Field required", 25, 25)
        assert sorted(ours(smtp, ids)) == sorted(f"<job-{i}@localhost>" for i in ids)
        # A burst is a handful of runs (batches of 500), not one per job.
        runs = conn.execute(
            "select distinct last_worker from worker.jobs where id = any(%s)", [ids]
        ).fetchall()
        assert 2 <= len(runs) <= 8, runs
        # What went between the steps stayed in the job database: Airflow's metadata holds no
        # recipient, payload or message, and no XCom or rendered field at all.
        assert_nothing_in_xcom_or_rendered_fields(shared_stack.env)
        assert_short_tasks_sent_no_heartbeat(shared_stack.env)

        # The SMTP server goes away: jobs wait for a retry, with the error, then go out once.
        smtp.stop()
        later = [row[0] for row in conn.execute("select id from worker.add_jobs(%s)", [Jsonb(specs[:10])])]
        rows = wait_for(
            conn,
            "select status, last_error from worker.jobs where id = any(%s)",
            [later],
            lambda v: len(v) == 10 and all(s == "scheduled" and e for s, e in v),
            120,
            "jobs rescheduled after the SMTP outage",
        )
        assert all("SMTP server unreachable" in error for _, error in rows)
        smtp.start()
        wait_for(conn, completed, [later], lambda v: v[0][0] == 10, 120, "delivery once SMTP is back")

        # Triggered over the REST API with a payload: the run records it as its own job.
        by_hand = {"to": "rest@example.com", "template": "welcome", "context": {"name": "Rest"}}
        run = trigger_dag(api, stack.password, "send_email", by_hand)
        worker = f"send_email/{run['dag_run_id']}"
        of_run = "select status, last_error, payload->>'to' from worker.jobs where last_worker = %s"
        rows = wait_for(conn, of_run, [worker], lambda v: v and v[0][0] == "completed", 120, "the REST job")
        assert rows == [("completed", None, "rest@example.com")]
        # A bad payload leaves a failed job saying why, and a failed run.
        run = trigger_dag(api, stack.password, "send_email", {"template": "welcome"})
        worker = f"send_email/{run['dag_run_id']}"
        rows = wait_for(conn, of_run, [worker], lambda v: v and v[0][0] == "failed", 120, "the bad REST job")
        assert rows == [("failed", "invalid payload: payload.to: Field required", None)]
        deadline = time.monotonic() + 60
        while (state := run_state(api, stack.password, run)) != "failed" and time.monotonic() < deadline:
            time.sleep(1)
        assert state == "failed"
        # A payload the form's schema refuses is refused at the door, naming the field.
        with pytest.raises(urllib.error.HTTPError) as refused:
            trigger_dag(api, stack.password, "send_email", {"locale": "de"})
        assert refused.value.code == 400
        assert "locale" in refused.value.read().decode()
    message_ids = smtp.message_ids()  # ours, and any other DAG's (the digest)
    assert len(message_ids) == len(set(message_ids)), "a message was delivered twice"
    assert len(ours(smtp, ids + later)) == 1010, "a message was lost"
    assert [to for to, _ in smtp.messages if to == ["rest@example.com"]] == [["rest@example.com"]]


def test_a_job_after_the_executors_workers_left_goes_out(shared_stack):
    """The LocalExecutor's workers leave once the host has had no task for a while (3 s on this
    stack) and are forked again for the next job: it goes out as any other."""
    scheduler_log = Path(shared_stack.env["WORKER_DATA_DIR"]) / "logs" / "scheduler.log"
    left = "LocalExecutor worker(s) left until the next task"
    before = scheduler_log.read_text().count(left)
    with psycopg.connect(shared_stack.database, autocommit=True) as conn:
        # The last test's tasks, then quiet: up to the scheduler's idle sleep (10 s) after 3 s
        # without a task, which the stack's crontab (every minute) may push back once.
        deadline = time.monotonic() + 150
        while scheduler_log.read_text().count(left) == before:
            assert time.monotonic() < deadline, "the executor's workers never left"
            time.sleep(0.5)
        payload = {"to": "after-idle@example.com", "template": "welcome", "context": {"name": "I"}}
        job = conn.execute("select id from worker.add_job('send_email', %s)", [Jsonb(payload)]).fetchone()
        assert job is not None
        status = "select status from worker.jobs where id = %s"
        wait_for(conn, status, [job[0]], lambda v: v[0][0] == "completed", 120, "the job after idle")
    assert f"<job-{job[0]}@localhost>" in shared_stack.smtp.message_ids()
