"""docker-compose.yaml: valid against the compose spec (in `make lint`), with no default secret and
no port open beyond loopback. It cannot run here (no container engine), so this is what we check."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from devtools import airflow_env
from jobqueue import paths

COMPOSE = (paths.PROJECT_ROOT / "docker-compose.yaml").read_text()


def test_compose_has_no_default_secret():
    for variable in re.findall(r"\$\{([A-Z_]*(?:PASSWORD|SECRET)[A-Z_]*)([^}]*)\}", COMPOSE):
        name, rest = variable
        assert rest.startswith(":?"), f"{name} must be required (${{{name}:?...}}), not defaulted: {rest!r}"
    assert "POSTGRES_PASSWORD: airflow" not in COMPOSE


def test_compose_ports_are_on_loopback():
    services = yaml.safe_load(COMPOSE)["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published, "the UI should be published"
    assert all(str(port).startswith("127.0.0.1:") for port in published), published


def test_compose_runs_every_airflow_component_with_celery():
    services = yaml.safe_load(COMPOSE)["services"]
    commands = {name: service.get("command") for name, service in services.items()}
    # Every component starts through jobqueue.component, as `make run` does.
    assert commands["airflow-apiserver"] == "python -m jobqueue.component api-server"
    assert commands["airflow-scheduler"] == "python -m jobqueue.component scheduler"
    assert commands["airflow-dag-processor"] == "python -m jobqueue.component dag-processor"
    assert commands["airflow-triggerer"] == "python -m jobqueue.component triggerer"
    assert commands["airflow-worker"] == "python -m jobqueue.component celery worker"
    assert {"postgres", "redis", "mailpit", "airflow-init"} <= set(services)


# What depends on where Airflow runs (hosts, files, secrets, the executor), not on how it behaves.
DEPLOYMENT = {
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    # Who logs in is the deployment's: test_compose_runs_fab_s_auth_manager_as_make_run_can.
    "AIRFLOW__CORE__AUTH_MANAGER",
    # Where the team's tasks/ are mounted: test_compose_adds_the_team_s_folder_as_make_run_does.
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
}


def test_compose_sets_airflow_as_make_run_does():
    compose = yaml.safe_load(COMPOSE)["x-airflow-common"]["environment"]
    wanted = airflow_env.behaviour()
    differ = {
        name: (value, compose.get(name))
        for name, value in wanted.items()
        if str(compose.get(name)).lower() != value.lower()
    }
    assert differ == {}, "docker-compose.yaml and devtools/airflow_env.py disagree (make run's, compose's)"
    only_compose = {name for name in compose if name.startswith("AIRFLOW__")} - set(wanted) - DEPLOYMENT
    assert only_compose == set(), (
        "settings only docker-compose.yaml makes: move them to airflow_env.behaviour"
    )


def test_compose_adds_the_team_s_folder_as_make_run_does():
    common = yaml.safe_load(COMPOSE)["x-airflow-common"]
    environment = common["environment"]
    assert environment["WORKER_PROJECT"] == "/opt/airflow/project"
    assert environment["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] == airflow_env.dag_bundles(
        Path("/opt/airflow/project/tasks")
    )
    assert environment["PYTHONPATH"].split(":") == ["/opt/airflow/plugins", "/opt/airflow/project"]
    assert any(volume.endswith(":/opt/airflow/project:ro") for volume in common["volumes"])


def test_compose_runs_fab_s_auth_manager_as_make_run_can(monkeypatch):
    """Production logins are FAB's (users, roles, per-DAG permissions), the auth manager
    `WORKER_AUTH_MANAGER=fab make run` starts (tests/e2e/test_celery.py plays it); the lock has its
    provider."""
    monkeypatch.setenv("WORKER_AUTH_MANAGER", "fab")
    environment = yaml.safe_load(COMPOSE)["x-airflow-common"]["environment"]
    made = airflow_env.airflow_environment()
    assert environment["AIRFLOW__CORE__AUTH_MANAGER"] == made["AIRFLOW__CORE__AUTH_MANAGER"]
    assert not [name for name in environment if "SIMPLE_AUTH_MANAGER" in name]
    assert "airflow fab-db migrate" in yaml.safe_load(COMPOSE)["services"]["airflow-init"]["command"][1]
    assert "apache-airflow-providers-fab==" in (paths.PROJECT_ROOT / "requirements.txt").read_text()
