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
        }
        for dag_id, dag in bag.dags.items()
    },
}))
"""


def load_dags(tmp_path) -> dict:
    # A process of its own: parsing DAGs configures Airflow, which must not leak into other tests.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(tmp_path),
        **airflow_env.dag_parsing(),
        "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins"),
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
