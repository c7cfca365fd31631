"""`python -m jobqueue.component <airflow command...>`: an Airflow component with the job DAGs'
modules imported first (for the triggerer and the scheduler, jobqueue.wakeup installed; for the
dag-processor, jobqueue.reparse).

The LocalExecutor forks its workers from the scheduler and each task process from a worker (the
Celery worker forks too), so a module the parent holds costs a task nothing. Without this each task
imported about 0.3 s of modules (psycopg, pydantic, Jinja2, the providers) before doing any work, three
times per e-mail; see the README's Performance section. Only modules are loaded: no connection,
thread or file is opened before the fork, except, in a component that runs tasks, the render
server's supervising thread (documents/server.py), which the forked children do not run.
"""

from __future__ import annotations

import sys

# As airflow.__main__ does: the configuration first, then everything else.
from airflow import configuration  # noqa: F401

PRELOAD = (
    "psycopg",
    "psycopg2",
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "jinja2.ext",
    "airflow.dag_processing.dagbag",
    "airflow.dag_processing.bundles.manager",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.postgres.hooks.postgres",
    "airflow.providers.smtp.hooks.smtp",
    "airflow.providers.standard.operators.python",
    "jobqueue.airflow_dag",
    "jobqueue.emails.steps",
    "jobqueue.documents.steps",
    "jobqueue.digest",
    "jobqueue.maintenance",
    "jobqueue.signup",
    "jobqueue.trigger",
)


def preload() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # Every task process asks for the Task SDK's listener manager, which loads the plugins once per
    # process (cached): load them here, once, before the fork.
    from airflow.sdk.listener import get_listener_manager

    get_listener_manager()


def main() -> None:
    from airflow.__main__ import main as airflow_main

    preload()
    from jobqueue import wakeup

    if sys.argv[1:2] == ["triggerer"]:
        wakeup.install()
    elif sys.argv[1:2] == ["scheduler"]:
        wakeup.install_scheduler()
    elif sys.argv[1:2] == ["dag-processor"]:
        from jobqueue import reparse

        reparse.install()
    if runs_tasks(sys.argv[1:]):
        start_render_server()
    sys.argv = ["airflow", *sys.argv[1:]]
    airflow_main()


def runs_tasks(command: list[str]) -> bool:
    """Whether this component runs the host's tasks: a Celery worker, or a scheduler whose
    executors include the LocalExecutor (it forks each task from this process)."""
    if command[:2] == ["celery", "worker"]:
        return True
    from airflow.configuration import conf

    return command[:1] == ["scheduler"] and "LocalExecutor" in conf.get("core", "executor")


def start_render_server() -> None:
    """The host's render server beside the process that runs its tasks (documents/server.py): its
    PDF workers outlive the runs. Started from the main thread before Airflow's loop, and before
    any fork, so the executor's workers hold nothing of it."""
    from jobqueue import settings
    from jobqueue.documents import server

    path = server.socket_path(settings.data_dir())
    if path is not None:
        server.keep_running(path, settings.pdf_workers(), settings.pdf_idle_seconds())


if __name__ == "__main__":
    main()
