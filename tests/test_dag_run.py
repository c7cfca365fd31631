"""DAG runs made by Airflow itself, in-process with dag.test(), on a metadata database of the module's
own (never the running stack's), against the real job database and a real SMTP server.

- What our tasks read from the context Airflow hands them (jobqueue.task_run) is read from a context
  Airflow made: a run's type, its conf, its task's try, another run's state. Nothing here builds a
  context, a DAG run or a task instance by hand (the README's testing section says why).
- The send_email DAG: a job that fails for good fails the run, named in its last task's error.
- A job type with a schedule, triggered by hand: no cron tick (only the scheduler's runs are ticks),
  its conf a job of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devtools import airflow_env
from jobqueue import paths
from tests.conftest import create_database, drop_database
from tests.helpers import add, all_jobs
from tests.smtp import SmtpServer

RUN = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dag_file", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = getattr(module, sys.argv[2])
dag = getattr(dag, "dag", dag)
run = dag.test(run_conf=json.loads(sys.argv[3]) if len(sys.argv) > 3 else None)
print("RUN-STATE", run.state)
"""

# A DAG whose one task reports what jobqueue.task_run reads from the context Airflow gives it.
READER = """
import datetime, json
from airflow.sdk import DAG
from airflow.providers.standard.operators.python import PythonOperator
from jobqueue.task_run import TaskRun, dag_run_state

def report(**context):
    run = TaskRun.of(context)
    ti = context["ti"]
    print("TASK-RUN", json.dumps({
        "worker_id": run.worker_id, "task_id": run.task_id, "try_number": run.try_number,
        "run_type": run.run_type, "tick": str(run.tick), "conf": dict(run.conf),
        "own_state": dag_run_state(ti, run.dag_id, run.run_id),
        "missing_state": dag_run_state(ti, run.dag_id, "no_such_run"),
    }))

with DAG("reader", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as reader:
    PythonOperator(task_id="report", python_callable=report)
"""

NIGHTLY = """
from jobqueue import job_type

@job_type("nightly", schedule="* * * * *", timezone="Europe/Paris")
def nightly(payload: dict, ctx) -> dict:
    return {"payload": payload}
"""


@pytest.fixture(scope="module")
def metadata(server_url, tmp_path_factory):
    """The environment of an Airflow home and a migrated metadata database of the module's own."""
    name = f"airflow_test_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name).replace("postgresql://", "postgresql+psycopg2://", 1)
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        **airflow_env.dag_parsing(),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "PYTHONPATH": os.pathsep.join([str(paths.PROJECT_ROOT / "plugins"), str(paths.PROJECT_ROOT)]),
    }
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    yield env
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def airflow(metadata):
    """`run(file, dag, conf)` runs a DAG with dag.test() on the module's metadata database and
    returns its output."""

    def run(dag_file: Path, dag: str, extra_env: dict[str, str], conf: dict | None = None) -> str:
        args = [sys.executable, "-c", RUN, str(dag_file), dag, *([json.dumps(conf)] if conf else [])]
        result = subprocess.run(
            args, env={**metadata, **extra_env}, capture_output=True, text=True, timeout=300
        )  # fmt: skip
        return result.stdout + result.stderr

    return run


def test_what_a_task_reads_from_airflows_context(airflow, tmp_path):
    (tmp_path / "reader.py").write_text(READER)
    folder = {"AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path)}
    logged = airflow(tmp_path / "reader.py", "reader", folder, conf={"to": "a@example.com"})
    assert "RUN-STATE success" in logged, logged[-3000:]
    [line] = [line for line in logged.splitlines() if "TASK-RUN" in line]
    seen = json.loads(line.partition("TASK-RUN ")[2])
    assert seen["worker_id"].startswith("reader/manual__")
    assert seen["task_id"] == "report" and seen["try_number"] == 1
    # Airflow's own enums, read as their values: never 'DagRunType.MANUAL' or 'DagRunState.RUNNING'.
    assert seen["run_type"] == "manual" and seen["tick"] == "None"
    assert seen["conf"] == {"to": "a@example.com"}
    assert seen["own_state"] == "running" and seen["missing_state"] is None


def test_a_scheduled_job_type_run_by_hand_is_no_tick(airflow, conn, db_url, tmp_path):
    (tmp_path / "nightly.py").write_text(NIGHTLY)
    waiting = add(conn, "nightly", {"n": 1})["id"]
    extra = {"AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path), "AIRFLOW_CONN_WORKER_DB": db_url}
    logged = airflow(tmp_path / "nightly.py", "nightly", extra, conf={"n": 2})
    assert "RUN-STATE success" in logged, logged[-3000:]
    jobs = {job["id"]: job for job in all_jobs(conn)}
    # The waiting job and the run's own (its conf), and no tick's: `_cron` in no payload.
    assert len(jobs) == 2 and all("_cron" not in job["payload"] for job in jobs.values())
    assert jobs[waiting]["result"] == {"payload": {"n": 1}}
    [own] = [job for job in jobs.values() if job["id"] != waiting]
    assert own["job_key"].startswith("run:nightly/manual__") and own["result"] == {"payload": {"n": 2}}


CRM = """
from jobqueue import PermanentJobError, job_type

@job_type("crm_contact", group="crm")
def crm_contact(payload: dict, ctx) -> dict:
    if payload.get("bad"):
        raise PermanentJobError("no such contact")
    return {"contact": payload["n"]}

@job_type("crm_company", group="crm")
def crm_company(payload: dict, ctx) -> dict:
    return {"company": payload["n"]}

crm = crm_contact.group_dag
"""


def test_a_job_group_s_run_picks_up_every_member_s_jobs(airflow, conn, db_url, tmp_path):
    """One run of the group's DAG takes the waiting jobs of each member, each to its own handler;
    a job failed for good fails the run, as a job type's run, after the others are done."""
    (tmp_path / "crm.py").write_text(CRM)
    contacts = [add(conn, "crm_contact", {"n": n})["id"] for n in range(3)]
    companies = [add(conn, "crm_company", {"n": n})["id"] for n in range(2)]
    bad = add(conn, "crm_contact", {"n": 9, "bad": True})["id"]
    extra = {"AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path), "AIRFLOW_CONN_WORKER_DB": db_url}
    logged = airflow(tmp_path / "crm.py", "crm", extra)
    assert "RUN-STATE failed" in logged, logged[-3000:]
    assert "1 job(s) of this run failed for good" in logged
    jobs = {job["id"]: job for job in all_jobs(conn)}
    assert [jobs[i]["result"] for i in contacts] == [{"contact": n} for n in range(3)]
    assert [jobs[i]["result"] for i in companies] == [{"company": n} for n in range(2)]
    assert (jobs[bad]["status"], jobs[bad]["last_error"]) == ("failed", "no such contact")
    assert {job["last_worker"].partition("/")[0] for job in jobs.values()} == {"crm"}
    # The failed attempt names the task that ran it, whose log its page links to: the group's.
    [(task_id, run_of_attempt)] = conn.execute(
        "select task_id, worker_id from worker._job_attempts where job_id = %s", [bad]
    ).fetchall()
    assert (task_id, run_of_attempt) == ("run", jobs[bad]["last_worker"])
    # A payload has no member to go to: the run refuses it, and enqueues nothing.
    logged = airflow(tmp_path / "crm.py", "crm", extra, conf={"n": 5})
    assert "RUN-STATE failed" in logged and "trigger the DAG of one of them" in logged, logged[-3000:]
    assert len(all_jobs(conn)) == len(jobs)


def test_send_email_dag_test(airflow, conn, db_url):
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
        extra = {"AIRFLOW_CONN_WORKER_DB": db_url, "AIRFLOW_CONN_SMTP_DEFAULT": smtp.airflow_uri}
        logged = airflow(paths.PROJECT_ROOT / "dags" / "send_email.py", "send_email", extra)
        # The bad job failed for good: its run ends failed, the last task naming it, after every
        # good job was sent.
        assert "RUN-STATE failed" in logged, logged[-3000:]
        assert "1 job(s) of this run failed for good (its Jobs tab lists them)" in logged
        assert f"job {bad} failed for good: template 'welcome' (en): 'name' is undefined" in logged
    finally:
        smtp.stop()
    statuses = {job["id"]: (job["status"], job["last_error"]) for job in all_jobs(conn)}
    assert all(statuses[i] == ("completed", None) for i in good), statuses
    assert statuses[bad][0] == "failed" and "'name' is undefined" in statuses[bad][1]
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in good)


# The scheduler's idle probe (jobqueue.idle_probe) on a metadata database Airflow migrated: a DAG of
# its own, whose rows it changes as Airflow's scheduler, API and triggerer would, the module's other
# DAGs paused meanwhile. Each line: what the database holds, whether the probe sees work.
PROBE = """
import datetime
from airflow.models.asset import AssetDagRunQueue, AssetModel
from airflow.models.dag import DagModel
from airflow.models.dagbundle import DagBundleModel
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from sqlalchemy import delete, select, update
from jobqueue import idle_probe

now = datetime.datetime.now(datetime.timezone.utc)
hour = datetime.timedelta(hours=1)

def probe(label, change=None):
    with create_session() as session:
        if change is not None:
            change(session)
    print("PROBE", label, idle_probe.has_work(), flush=True)

def others_paused(session):
    session.execute(update(DagModel).where(DagModel.dag_id != "probe").values(is_paused=True))

def dag(**values):
    ours = update(DagModel).where(DagModel.dag_id == "probe")
    return lambda session: session.execute(ours.values(**values))

def run(state):
    return lambda session: session.execute(update(DagRun).where(DagRun.dag_id == "probe").values(state=state))

def new_run(session):
    session.add(DagRun("probe", "manual__probe", run_type="manual", state="queued", run_after=now))

def asset_event(session):
    session.add(AssetModel(name="probe", uri="probe://x", group="asset"))
    session.flush()
    asset = session.scalar(select(AssetModel.id).where(AssetModel.name == "probe"))
    session.add(AssetDagRunQueue(asset_id=asset, target_dag_id="probe"))

def no_asset_event(session):
    session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == "probe"))

with create_session() as session:
    paused = set(session.scalars(select(DagModel.dag_id).where(DagModel.is_paused.is_(True))))
    session.add(DagBundleModel(name="probe"))
    session.flush()
    session.add(DagModel(
        dag_id="probe", bundle_name="probe", max_active_tasks=1, max_consecutive_failed_dag_runs=0,
        has_task_concurrency_limits=False, is_paused=False, is_stale=False,
        next_dagrun_create_after=now + hour,
    ))
probe("quiet", others_paused)
probe("due-stale", dag(next_dagrun_create_after=now - hour, is_stale=True))
probe("due", dag(is_stale=False))
probe("due-paused", dag(is_paused=True))
probe("not-due", dag(is_paused=False, next_dagrun_create_after=now + hour))
probe("run-queued", new_run)
probe("run-running", run("running"))
probe("run-ended", run("success"))
probe("asset-event", asset_event)
probe("asset-event-consumed", no_asset_event)
with create_session() as session:
    session.execute(delete(DagRun).where(DagRun.dag_id == "probe"))
    session.execute(delete(DagModel).where(DagModel.dag_id == "probe"))
    session.execute(delete(AssetModel).where(AssetModel.name == "probe"))
    session.execute(delete(DagBundleModel).where(DagBundleModel.name == "probe"))
    session.execute(update(DagModel).where(DagModel.dag_id.not_in(paused)).values(is_paused=False))
"""


def test_the_scheduler_s_idle_probe_sees_the_work_its_loop_would_find(metadata):
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=metadata, capture_output=True, text=True, timeout=300
    )  # fmt: skip
    seen = dict(line.split()[1:] for line in result.stdout.splitlines() if line.startswith("PROBE "))
    assert seen == {
        "quiet": "False", "due-stale": "False", "due": "True", "due-paused": "False", "not-due": "False",
        "run-queued": "True", "run-running": "True", "run-ended": "False",
        "asset-event": "True", "asset-event-consumed": "False",
    }, result.stdout + result.stderr[-3000:]  # fmt: skip


# A component's last write (jobqueue.job_end), on the module's metadata database: the job's end
# recorded while its database refuses connections, as during a PostgreSQL restart.
END = """
import sys
from airflow.jobs.job import Job
from airflow.utils.session import create_session
from jobqueue import job_end

assert job_end.install()
job = Job(job_type="TriggererJob")
with create_session() as session:
    job.prepare_for_execution(session=session)
    print("JOB", job.id, flush=True)
    sys.stdin.readline()  # the database goes away meanwhile
    job.state = "failed"
    job.complete_execution(session=session)
print("ENDED", flush=True)
"""


def test_a_component_records_its_end_once_its_database_is_back(metadata, server_url):
    database = metadata["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rpartition("/")[2]
    component = subprocess.Popen(
        [sys.executable, "-c", END], env=metadata, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert component.stdout is not None and component.stdin is not None
    job_id = int(component.stdout.readline().split()[1])
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("alter database {} allow_connections false").format(sql.Identifier(database)))
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [database])
        component.stdin.write("\n")
        component.stdin.flush()
        time.sleep(2.5)  # the component's write fails, and is tried again
        admin.execute(sql.SQL("alter database {} allow_connections true").format(sql.Identifier(database)))
    out, err = component.communicate(timeout=60)
    assert component.returncode == 0 and "ENDED" in out, (out + err)[-3000:]
    assert "cannot record the end of TriggererJob" in out + err  # the first try did fail
    with psycopg.connect(metadata["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", "")) as conn:
        row = conn.execute("select state, end_date from job where id = %s", [job_id]).fetchone()
    assert row is not None and row[0] == "failed" and row[1] is not None, row
