"""Every DAG imports without errors and carries tags, an owner and retries."""

from __future__ import annotations

import os
import subprocess
import sys

from devtools import airflow_env
from jobqueue import paths

CHECK = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {
        dag_id: {
            "tags": sorted(dag.tags),
            "owners": sorted({task.owner for task in dag.tasks}),
            "retries": sorted({task.retries for task in dag.tasks}),
            "tasks": [task.task_id for task in dag.tasks],
            "timetable": getattr(dag.timetable, "expression", None),
            "timezone": str(getattr(dag.timetable, "timezone", "")),
        }
        for dag_id, dag in bag.dags.items()
    },
}))
"""


def load_dags(tmp_path, **settings: str) -> dict:
    # A process of its own: parsing DAGs configures Airflow, which must not leak into other tests.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WORKER_"))},
        "AIRFLOW_HOME": str(tmp_path),
        **airflow_env.dag_parsing(),
        "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins"),
        **settings,
    }
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(paths.PROJECT_ROOT / "dags")],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


JOB_TYPES = {
    "send_email": ["render", "send"],
    "generate_pdf": ["render_pdf", "enqueue_email"],
    "user_signup": ["enqueue_welcome"],
    "daily_digest": ["enqueue_digest"],
}


def test_every_dag_is_complete(tmp_path):
    loaded = load_dags(tmp_path)
    assert loaded["errors"] == {}
    assert {"send_email", "user_signup", "generate_pdf", "daily_digest", "worker_maintenance"} <= set(
        loaded["dags"]
    )
    for dag_id, dag in loaded["dags"].items():
        assert dag["tags"], f"{dag_id} has no tags"
        assert "airflow" not in dag["owners"], f"{dag_id} has no owner"
        assert min(dag["retries"]) >= 1, f"{dag_id} has a task without retries"
    # A job type's DAG reads like its chain.
    assert {dag_id: loaded["dags"][dag_id]["tasks"] for dag_id in JOB_TYPES} == JOB_TYPES


def test_the_team_s_crontab_becomes_a_dag_per_line(tmp_path):
    team = paths.PROJECT_ROOT / "tests" / "corpus" / "crontab"
    loaded = load_dags(tmp_path, WORKER_CRONTAB=str(team), WORKER_CRONTAB_TIMEZONE="Europe/Paris")
    assert loaded["errors"] == {}
    crons = {dag_id: dag for dag_id, dag in loaded["dags"].items() if dag_id.startswith("crontab_")}
    assert {dag_id: dag["timetable"] for dag_id, dag in crons.items()} == {
        "crontab_send_digest": "0 7 * * *",
        "crontab_rates": "0,10,20,30,40,50 * * * *",
        "crontab_purge_exports": "0 3 * * 0",
        "crontab_monthly_invoices": "30 8 1 * *",
        "crontab_standup_reminder": "0 9 * * 1,2,3,4,5",
        "crontab_standup_oncall": "0 9 * * 1,2,3,4,5",
    }
    assert {dag["timezone"] for dag in crons.values()} == {"Europe/Paris"}
    assert {tuple(dag["tasks"]) for dag in crons.values()} == {("enqueue",)}


def test_a_crontab_line_that_does_not_parse_fails_the_import_naming_it(tmp_path):
    bad = tmp_path / "crontab"
    bad.write_text("# ours\n0 7 * * * send_digest\n0 25 * * * late_digest\n")
    loaded = load_dags(tmp_path, WORKER_CRONTAB=str(bad))
    [(where, error)] = loaded["errors"].items()
    assert where.endswith("dags/crontab.py")
    assert f"crontab line 3: 25 is outside the hour's 0-23 (in {bad})" in error  # the file, not crontab.py
    # Every line waits for the fix, as graphile-worker refuses to start with such a file.
    assert not [dag_id for dag_id in loaded["dags"] if dag_id.startswith("crontab_")]
    assert "send_email" in loaded["dags"]  # the other DAG files are not touched
