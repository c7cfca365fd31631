"""How the Airflow components start: job modules loaded before the fork, plugins only from
jobs_plugin.py, and the triggerer's sleep cut short when a trigger has an event."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import anyio
import pytest

from jobqueue import paths, wakeup


def test_component_runs_an_airflow_command_after_loading_the_job_modules(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins")}
    result = subprocess.run(
        [sys.executable, "-c", "import sys, runpy; sys.argv[1:] = ['version']; "
         "runpy.run_module('jobqueue.component', run_name='__main__')"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("3.3.2")


# Airflow's .airflowignore reader uses a pathspec pattern class that pathspec now deprecates.
@pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")
# Airflow's execution API (imported through the plugin's auth) pulls in starlette's test client.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_only_jobs_plugin_is_loaded_as_a_plugin():
    """Airflow imports every .py under the plugins folder as a top-level module in every task
    process; .airflowignore keeps the jobqueue package out (it is a package on the path)."""
    from airflow.sdk._shared.plugins_manager import _load_plugins_from_plugin_directory

    before = set(sys.modules)
    plugins, errors = _load_plugins_from_plugin_directory(str(paths.PROJECT_ROOT / "plugins"))
    added = set(sys.modules) - before
    assert errors == {}
    assert [type(plugin).__name__ for plugin in plugins] == ["JobsPlugin"]
    assert not added & {"settings", "manager", "jobs", "trigger", "web", "runs"}, added


@pytest.fixture
def installed_wakeup(monkeypatch):
    from airflow.jobs import triggerer_job_runner

    monkeypatch.setattr(triggerer_job_runner, "anyio", triggerer_job_runner.anyio)
    monkeypatch.setattr(wakeup, "_installed", False)
    monkeypatch.setattr(wakeup, "_scope", None)
    monkeypatch.setattr(wakeup, "_pending", False)
    assert wakeup.install(), "Airflow's trigger runner loop changed: see jobqueue/wakeup.py"
    return triggerer_job_runner.anyio


def test_wake_ends_the_trigger_runners_sleep(installed_wakeup):
    async def main() -> float:
        async def wake_soon() -> None:
            await anyio.sleep(0.05)
            wakeup.wake()

        start = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(wake_soon)
            with installed_wakeup.move_on_after(30):  # as TriggerRunner.arun sleeps, longer
                await anyio.sleep_forever()
        return time.monotonic() - start

    assert anyio.run(main) < 20


def test_an_event_during_the_rounds_work_skips_the_next_sleep(installed_wakeup):
    wakeup.wake()  # the loop was busy sending, not sleeping

    async def main() -> bool:
        with installed_wakeup.move_on_after(30) as scope:
            await anyio.sleep_forever()
        return bool(scope.cancelled_caught)

    assert anyio.run(main)


def test_wake_does_nothing_unless_installed(monkeypatch):
    monkeypatch.setattr(wakeup, "_installed", False)
    monkeypatch.setattr(wakeup, "_pending", False)
    wakeup.wake()
    assert wakeup._pending is False
