"""Small helpers shared by the tests: call a function, read jobs back, make a payload."""

from __future__ import annotations

import copy
import json
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobqueue import paths

INVOICE = json.loads((paths.INCLUDE_DIR / "examples" / "generate_pdf.json").read_text())


def rows(conn: psycopg.Connection, query: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def add(conn: psycopg.Connection, identifier: str = "task", payload: Any = None, **options: Any) -> dict:
    args = ["%(identifier)s", "payload => %(payload)s"]
    args += [f"{name} => %({name})s" for name in options]
    params = {"identifier": identifier, "payload": Jsonb({} if payload is None else payload), **options}
    return rows(conn, f"select * from worker.add_job({', '.join(args)})", params)[0]  # noqa: S608


def job(conn: psycopg.Connection, job_id: int) -> dict:
    return rows(conn, "select * from worker.jobs where id = %s", [job_id])[0]


def all_jobs(conn: psycopg.Connection) -> list[dict]:
    return rows(conn, "select * from worker.jobs order by id")


def claim(conn: psycopg.Connection, identifiers: list[str], worker: str = "w1", max_jobs: int = 1, **kw: Any):
    forbidden = kw.get("forbidden_flags")
    return rows(
        conn,
        "select * from worker.claim_jobs(%s, %s, %s, %s)",
        [identifiers, worker, max_jobs, forbidden],
    )


class OtherJobs:
    """A set of unrelated jobs in every state; a test asserts its call left them exactly alone."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        add(conn, "other", {"n": 1})
        add(conn, "other", {"n": 2}, run_at="2999-01-01T00:00:00Z")
        add(conn, "other", {"n": 3}, job_key="other-key", queue_name="other-queue")
        add(conn, "other_running", {"n": 4})
        claim(conn, ["other_running"], worker="other-worker")
        done = add(conn, "other_done", {"n": 5})
        rows(conn, "select worker.complete_jobs(%s)", [[done["id"]]])
        failed = add(conn, "other_failed", {"n": 6})
        rows(conn, "select worker.permanently_fail_jobs(%s, 'broken')", [[failed["id"]]])
        self.ids = [r["id"] for r in rows(conn, "select id from worker.jobs order by id")]
        self.snapshot = self._read()

    def _read(self) -> list[dict]:
        return rows(self.conn, "select * from worker.jobs where id = any(%s) order by id", [self.ids])

    def assert_untouched(self) -> None:
        assert self._read() == self.snapshot


def invoice(n: int, to: str) -> dict:
    """The example invoice (include/examples/generate_pdf.json) numbered 2026-<n>, mailed to `to`."""
    payload = copy.deepcopy(INVOICE)
    payload["context"]["number"] = f"2026-{n:04d}"
    payload["filename"] = f"facture-2026-{n:04d}.pdf"
    payload["email"]["to"] = to
    return payload


def load_dag_file(name: str) -> Any:
    """A file of dags/ imported as a module, as Airflow's DAG processor would."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"dag_file_{name}", paths.PROJECT_ROOT / "dags" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_steps(
    job_type: Any,
    db_url: str,
    worker: str,
    *,
    conf: dict | None = None,
    prepared: Any = None,
    steps: range | None = None,
    cron: dict | None = None,
) -> list[dict]:
    """The steps of one DAG run of a job type, in order, as its tasks run them (without detaching);
    `prepared` stands for what a step's `prepare` would resolve through Airflow. Their summaries."""
    from jobqueue.testing import run_once

    return run_once(job_type, db_url, worker=worker, conf=conf, cron=cron, prepared=prepared, steps=steps)


def task_run(
    run_id: str, task_id: str, *, dag_id: str = "send_email", try_number: int = 1, conf: dict | None = None
) -> Any:
    """Our own TaskRun of a manual run, for a test that runs a task past the point where it read
    Airflow's context (that reading, TaskRun.of, is tested on Airflow's own contexts)."""
    from jobqueue.task_run import TaskRun

    return TaskRun(
        dag_id=dag_id, run_id=run_id, task_id=task_id, try_number=try_number, run_type="manual",
        logical_date=None, run_after=None, conf=conf or {},
    )  # fmt: skip


def serve_as(
    app: Any, role: str, dag_ids: tuple[str, ...] = ("send_email", "generate_pdf"), auth_manager: Any = None
) -> None:
    """The job queue's app answering as a user of that role of Airflow's Simple auth manager: Airflow's
    own user class and auth manager (or `auth_manager`) decide, over these DAGs (on the running
    stack, the token that stands for a user and the DAGs Airflow knows are its own:
    tests/e2e/test_acme_worker_e2e.py)."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user

    from jobqueue import web
    from jobqueue.access import Access

    user = SimpleAuthManagerUser(username=role, role=role)
    app.dependency_overrides[get_user] = lambda: user
    decides = auth_manager or SimpleAuthManager()
    app.dependency_overrides[web.current_access] = lambda: Access(user, decides, frozenset(dag_ids))
