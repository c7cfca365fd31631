"""The Airflow configuration of the stack, as the environment of every Airflow component.

Each setting says why it is there. `make run` applies them; a deployment sets the same variables.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import secrets
from pathlib import Path

from jobqueue import paths, project, settings


def _secret(path: Path, nbytes: int) -> str:
    """A secret kept under the data dir, so a second `make run` reuses it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(nbytes))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_home() -> Path:
    return settings.data_dir() / "airflow"


def passwords_file() -> Path:
    return airflow_home() / "passwords.json"


def write_admin_password() -> None:
    """The admin's password into the passwords file, keeping the other users' (which the Simple auth
    manager generated on an earlier start)."""
    path = passwords_file()
    passwords = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
    passwords["admin"] = admin_password()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(passwords) + "\n")
    path.chmod(0o600)


def admin_password() -> str:
    """AIRFLOW_ADMIN_PASSWORD, else one generated once and kept under the data dir."""
    stored = airflow_home() / "admin-password"
    explicit = settings.admin_password()
    if explicit:
        return explicit
    return _secret(stored, 18)


def migrating_versions() -> dict[str, str]:
    """What the metadata database needs migrated, by the Airflow CLI's group that migrates it
    (`airflow db migrate`, `airflow fab-db migrate`): the package with its installed version, what a
    data folder records once that package has migrated it."""
    packages = {
        "db": "apache-airflow",
        **({"fab-db": "apache-airflow-providers-fab"} if settings.auth_manager() == "fab" else {}),
    }
    return {group: f"{name}=={importlib.metadata.version(name)}" for group, name in packages.items()}


def _sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1).replace(
        "postgres://", "postgresql+psycopg2://", 1
    )


def _smtp_connection() -> str:
    configured = settings.smtp_connection()
    if configured:
        return configured
    # The local sink speaks plain SMTP: no implicit SSL, no STARTTLS.
    return f"smtp://127.0.0.1:{settings.smtp_port()}?disable_ssl=true&disable_tls=true"


def _executor_settings() -> dict[str, str]:
    chosen = settings.executor()
    if chosen == "LocalExecutor":
        # LocalExecutor pre-forks this many workers: sized for a 2-core machine.
        return {"AIRFLOW__CORE__EXECUTOR": chosen, "AIRFLOW__CORE__PARALLELISM": "4"}
    metadata = _sqlalchemy_url(settings.airflow_database_url()).replace(
        "postgresql+psycopg2://", "postgresql://", 1
    )
    return {
        "AIRFLOW__CORE__EXECUTOR": chosen,
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CELERY__BROKER_URL": settings.celery_broker_url() or "",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
    }


def _metrics_settings() -> dict[str, str]:
    """With WORKER_STATSD, Airflow's metrics and the job queue's go to that StatsD server, with
    their tags (the influxdb line format of StatsD: `name,identifier=send_email:3|g`), which plain
    StatsD would drop."""
    server = settings.statsd()
    if server is None:
        return {}
    host, port = server
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": host,
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }


def dag_parsing() -> dict[str, str]:
    """How Airflow finds the DAG files: the product's dags/ (Airflow's own `dags-folder` bundle)
    and, with WORKER_PROJECT, the project's tasks/ as a bundle of its own. What the stack and a test
    parsing dags/ share."""
    team = settings.project()
    bundles = (
        {} if team is None else {"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": dag_bundles(team.tasks)}
    )
    return {
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.PROJECT_ROOT / "dags"),
        **bundles,
        **{name: value for name, value in behaviour().items() if name in _PARSING},
    }


def dag_bundles(tasks: Path) -> str:
    """[dag_processor] dag_bundle_config_list: Airflow's default bundle (the DAGS_FOLDER, ours) and
    a team's tasks/ folder beside it. Airflow puts a bundle's folder on sys.path when it parses or
    runs its files; the project's own root (its utils/) is on PYTHONPATH."""
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    return json.dumps(
        [
            {"name": project.PRODUCT_BUNDLE, "classpath": local, "kwargs": {}},
            {"name": project.BUNDLE, "classpath": local, "kwargs": {"path": str(tasks)}},
        ]
    )


_PARSING = ("AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__CORE__MIGHT_CONTAIN_DAG_CALLABLE")


def behaviour() -> dict[str, str]:
    """How Airflow must behave for the job queue, wherever it runs: `make run` applies these, and
    docker-compose.yaml says the same (tests/test_compose.py holds them together)."""
    return {
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # A DAG file of job types may name neither "airflow" nor "dag": Airflow's own guess would
        # skip it.
        "AIRFLOW__CORE__MIGHT_CONTAIN_DAG_CALLABLE": "jobqueue.airflow_dag.might_contain_job_types",
        # Job DAGs must run as soon as they are parsed, not wait for someone to unpause them.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # The scheduler's idle sleep: Airflow's default, 1 s, cheap when nothing happens;
        # jobqueue.wakeup ends it when a job trigger fires or a task ends.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
        # A task whose process died with its executor (the scheduler killed, a host lost) stops
        # heartbeating: it is failed, and retried, after 60 s instead of Airflow's 5 minutes, and
        # its run's jobs go on. The supervisor heartbeats every 5 s, so 60 s is 12 missed beats.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        # The tasks a dead scheduler had started (its LocalExecutor's processes die with it) are only
        # reset by a scheduler looking for orphans, every 5 minutes by default, once the dead one's
        # heartbeat is 30 s old: looking every 15 s brings a killed scheduler's runs back in ~40 s.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
        # A triggerer that died is replaced, and its triggers (the job watchers) taken over, after
        # 15 s without a heartbeat (every 5 s) instead of 30.
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
        # New or changed DAG files are seen in 30 s instead of 5 minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # An unchanged DAG file is parsed again every 10 minutes, not every 30 s (3.6 % of a core
        # for our five files, idle): in modified_time mode, pinned here, the dag-processor parses
        # a file whose mtime is newer than its last parse at once, whatever this interval. (Airflow
        # compares the mtime with the end of that parse: a file saved while it is being parsed, for
        # a DAG callback say, is seen at its next save, or after this interval.)
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
    }


def simple_auth_manager_users() -> str:
    """Airflow's own `[core] simple_auth_manager_users` when it is given (more users, their roles:
    `ana:user,vic:viewer`), with the `admin` whose password `make run` prints added when missing.
    The Simple auth manager generates the others' passwords into the passwords file."""
    given = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "")
    users = [user.strip() for user in given.split(",") if user.strip()]
    if not any(user.partition(":")[0] == "admin" for user in users):
        users.insert(0, "admin:admin")
    return ",".join(users)


FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def _auth_manager_settings() -> dict[str, str]:
    """Who logs in: the Simple auth manager's users (Airflow's own setting kept, the admin added), or
    FAB's, kept in the metadata database (WORKER_AUTH_MANAGER=fab)."""
    if settings.auth_manager() == "fab":
        return {"AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER}
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": simple_auth_manager_users(),
    }


def airflow_environment() -> dict[str, str]:
    home = airflow_home()
    api = f"http://127.0.0.1:{settings.api_port()}"
    return {
        **_executor_settings(),
        **_metrics_settings(),
        **behaviour(),
        "AIRFLOW_HOME": str(home),
        **dag_parsing(),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.PROJECT_ROOT / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _sqlalchemy_url(settings.airflow_database_url()),
        # The UI and REST API on loopback only; moving the port moves the base and execution URLs.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.api_port()),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        # One API worker: each costs a few hundred MB and a 2-core machine gains nothing from more.
        "AIRFLOW__API__WORKERS": "1",
        # Every component signs and checks task tokens with the same secret (64+ bytes).
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home / "jwt-secret", 64),
        "AIRFLOW__API__SECRET_KEY": _secret(home / "api-secret-key", 32),
        **_auth_manager_settings(),
        # Connections the job DAGs use: the job database and the SMTP server.
        "AIRFLOW_CONN_WORKER_DB": settings.job_database_url(),
        "AIRFLOW_CONN_SMTP_DEFAULT": _smtp_connection(),
    }
