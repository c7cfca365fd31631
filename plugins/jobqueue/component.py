"""`python -m jobqueue.component <airflow command...>`: an Airflow component with the job DAGs'
modules imported first (for the triggerer and the scheduler, jobqueue.wakeup installed, and for the
triggerer jobqueue.trigger_loading; for the dag-processor, jobqueue.reparse and
jobqueue.parsing_idle; for all, jobqueue.reaping; for those three, jobqueue.job_end; where tasks
run, jobqueue.first_heartbeat, and with the LocalExecutor, jobqueue.idle_workers).

The LocalExecutor forks its workers from the scheduler and each task process from a worker (the
Celery worker forks too), so a module the parent holds costs a task nothing. Without this each task
imported about 0.3 s of modules (psycopg, pydantic, Jinja2, the providers) before doing any work, three
times per e-mail; see the README's Performance section. Only modules are loaded: no connection,
thread or file is opened before the fork, except, in a component that runs tasks, the render
server's supervising thread (documents/server.py), which the forked children do not run.

Every component, the api-server too, ends through `exit_without_teardown`: as Python would exit,
without freeing its objects one by one first.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

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
    "jobqueue.step_operator",
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

    command = sys.argv[1:]
    if command[:1] != ["api-server"]:  # it forks no task: nothing gained by loading them first
        preload()
    from jobqueue import job_end, reaping, settings, wakeup

    reaping.install()
    if command[:1] in (["scheduler"], ["triggerer"], ["dag-processor"]):
        job_end.install()
    if command[:1] == ["triggerer"]:
        from jobqueue import trigger_loading

        wakeup.install()
        trigger_loading.install(settings.triggerer_load_seconds())
    elif command[:1] == ["scheduler"]:
        wakeup.install_scheduler()
    elif command[:1] == ["dag-processor"]:
        from jobqueue import parsing_idle, reparse

        parsing_idle.install(settings.dag_processor_idle_seconds())
        reparse.install()
    if runs_tasks(command):
        from jobqueue import first_heartbeat, idle_workers

        first_heartbeat.install()
        if command[:1] == ["scheduler"]:
            idle_workers.install(settings.executor_idle_seconds())
        start_render_server()
    sys.argv = ["airflow", *command]
    exit_without_teardown(airflow_main)


def exit_without_teardown(run: Callable[[], object]) -> NoReturn:
    """Runs `run`, then exits as Python would (other threads waited for, atexit handlers run,
    output flushed) but without tearing the interpreter down: freeing a component's millions of
    objects one by one took 1 to 3 s of CPU after Airflow had finished (the api-server 3.1 CPU-s
    and 4.5 s, the scheduler and triggerer about 1 each: a stack's stop 4.5 s instead of 0.8)."""
    try:
        run()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    wait_for_threads = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx does first
    if wait_for_threads is not None:
        wait_for_threads()
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


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
