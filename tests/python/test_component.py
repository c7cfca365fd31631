"""How the Airflow components start: job modules loaded before the fork, plugins only from
jobs_plugin.py, and the triggerer's sleep cut short when a trigger has an event."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import anyio
import pytest

from jobqueue import idle_probe, paths, wakeup


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


def test_the_scheduler_loop_is_the_one_wakeup_knows(monkeypatch, db_url):
    from airflow.jobs import scheduler_job_runner

    monkeypatch.setattr(scheduler_job_runner, "time", scheduler_job_runner.time)
    monkeypatch.setenv("AIRFLOW_CONN_WORKER_DB", db_url)
    assert wakeup.install_scheduler(), "Airflow's scheduler loop changed: see jobqueue/wakeup.py"
    assert isinstance(scheduler_job_runner.time, wakeup._SchedulerSleep)
    scheduler_job_runner.time.close()


class _SchedulerLoop:
    """Calls the sleep as SchedulerJobRunner._run_scheduler_loop does: from a method of the object
    whose started `executors` it runs (test_the_scheduler_loop_is_the_one_wakeup_knows holds the
    source to that)."""

    def __init__(self, executors: list, idle_sleep: float = 1.0) -> None:
        self.executors = executors
        self._scheduler_idle_sleep_time = idle_sleep

    def sleep(self, sleeper: wakeup._SchedulerSleep, seconds: float) -> float:
        start = time.monotonic()
        sleeper.sleep(seconds)
        return time.monotonic() - start


def _later(seconds: float, action) -> None:
    def run() -> None:
        time.sleep(seconds)
        action()

    threading.Thread(target=run, daemon=True).start()


@pytest.fixture
def local_executor():
    from airflow.executors.local_executor import LocalExecutor

    executor = LocalExecutor(parallelism=1)
    executor.start()
    yield executor
    executor.end()


@pytest.fixture
def probes(monkeypatch) -> list[float]:
    """The idle probe's calls (when), each answering "no work" (idle_probe.py is tested on a real
    metadata database in tests/test_dag_run.py)."""
    calls: list[float] = []

    def has_work() -> bool:
        calls.append(time.monotonic())
        return False

    monkeypatch.setattr(idle_probe, "has_work", has_work)
    return calls


def test_an_idle_schedulers_sleep_is_long_and_looks_for_work_every_second(db_url, probes, monkeypatch):
    sleeper = wakeup._SchedulerSleep(db_url, hot_seconds=30, hot_sleep=0.1, idle_seconds=10)
    loop = _SchedulerLoop([object()], idle_sleep=1.0)
    start = time.monotonic()
    assert loop.sleep(sleeper, 2.5) >= 2.5  # no work: the whole sleep
    gaps = [later - earlier for earlier, later in zip([start, *probes], probes, strict=False)]
    assert 1 <= len(probes) <= 2 and min(gaps) >= 0.95, gaps  # looked once a second (two, unless late)
    assert loop._scheduler_idle_sleep_time == 10  # the loop's idle sleep is now the long one

    monkeypatch.setattr(idle_probe, "has_work", lambda: True)
    assert 1.0 <= loop.sleep(sleeper, 10) < 5  # work: the loop runs at the next look

    configured_longer = _SchedulerLoop([object()], idle_sleep=30.0)
    other = wakeup._SchedulerSleep(db_url, 30, 0.1, idle_seconds=10)
    configured_longer.sleep(other, 0)
    assert configured_longer._scheduler_idle_sleep_time == 30  # never shortened
    for each in (sleeper, other):
        each.close()
        assert each.listener is not None
        each.listener.join(timeout=10)


def test_the_schedulers_sleep_ends_when_a_trigger_fires_or_a_task_ends_not_when_a_job_arrives(
    conn, db_url, local_executor, probes
):
    sleeper = wakeup._SchedulerSleep(db_url, hot_seconds=30, hot_sleep=0.1, idle_seconds=10)
    loop = _SchedulerLoop([local_executor])
    assert sleeper.listener is None
    assert loop.sleep(sleeper, 0.5) >= 0.5  # the full sleep; also starts the listener
    assert sleeper.unheard == []  # a LocalExecutor's task ends are heard
    time.sleep(0.5)  # let the listener connect

    _later(0.2, lambda: conn.execute("select worker.add_job('send_email', '{}')"))
    assert loop.sleep(sleeper, 1.5) >= 1.5  # a job alone: the trigger decides whether a run is due

    _later(0.3, lambda: conn.execute("select pg_notify('worker_fired', '[\"send_email\"]')"))
    assert loop.sleep(sleeper, 60) < 30  # a trigger fired: its run is to be made
    assert loop.sleep(sleeper, 0.5) >= 0.5  # and not short afterwards: the task ends are heard

    _later(0.3, lambda: local_executor.result_queue.put(("a task", "success", None)))
    assert loop.sleep(sleeper, 60) < 30  # a task ended (its result waits for the heartbeat)
    local_executor.result_queue.get()

    sleeper.close()
    listener = sleeper.listener
    assert listener is not None
    listener.join(timeout=10)
    assert not listener.is_alive()


def test_the_schedulers_sleep_is_short_after_a_trigger_fired_when_task_ends_cannot_be_heard(
    conn, db_url, probes
):
    """Celery's results come by polling: the loop's sleep is the short one for a while after a fire."""
    sleeper = wakeup._SchedulerSleep(db_url, hot_seconds=30, hot_sleep=0.1, idle_seconds=10)
    loop = _SchedulerLoop([object()])  # an executor without a result queue
    assert loop.sleep(sleeper, 0.5) >= 0.5  # cold: the full sleep
    assert sleeper.unheard == ["object"]
    time.sleep(0.5)
    conn.execute("select pg_notify('worker_fired', '[\"send_email\"]')")
    assert loop.sleep(sleeper, 60) < 30  # the fire
    assert loop.sleep(sleeper, 60) < 30  # hot now: the short sleep
    sleeper.close()
    assert sleeper.listener is not None
    sleeper.listener.join(timeout=10)


@pytest.fixture
def reaping_installed(monkeypatch):
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    from jobqueue import reaping

    monkeypatch.setattr(WatchedSubprocess, "_service_subprocess", WatchedSubprocess._service_subprocess)
    assert reaping.install()


def _closes_its_sockets_then_ends() -> None:
    """A child as a trigger runner ends: its sockets closed first, the process gone a moment later
    (here 0.3 s, so that the supervisor surely reads the end-of-files before the child is reapable)."""
    import signal as signals

    signals.signal(signals.SIGINT, signals.SIG_IGN)
    os.closerange(0, 1024)
    time.sleep(0.3)
    os._exit(0)


# Airflow's start() leaves the parent's copy of the child's request socket to the garbage collector.
UNCLOSED_SOCKET = "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"


@pytest.mark.filterwarnings(UNCLOSED_SOCKET)
def test_a_supervisor_sees_its_child_end_though_its_sockets_closed_first(reaping_installed):
    """Airflow's kill(escalation_delay=10), as the triggerer stops its trigger runner: with every
    socket closed before the child could be reaped, Airflow's wait slept the whole 10 s."""
    import uuid

    import attrs
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    @attrs.define(kw_only=True)
    class Child(WatchedSubprocess):
        def _handle_request(self, msg, log, req_id) -> None:
            pass

    child = Child.start(target=_closes_its_sockets_then_ends, id=uuid.uuid4())
    while child.selector.get_map():  # the child ignores SIGINT once its sockets are closed
        child._service_subprocess(max_wait_time=1)
    started = time.monotonic()
    child.kill(escalation_delay=10, force=True)
    assert child._exit_code == 0
    assert time.monotonic() - started < 3


def test_reaping_declines_a_wait_it_does_not_know(monkeypatch, caplog):
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    from jobqueue import reaping

    def _service_subprocess(self, max_wait_time, raise_on_timeout=False, expect_signal=None):
        return None

    monkeypatch.setattr(WatchedSubprocess, "_service_subprocess", _service_subprocess)
    assert reaping.install() is False
    assert WatchedSubprocess._service_subprocess is _service_subprocess
    assert "not the one jobqueue.reaping knows" in caplog.text


@pytest.fixture
def dag_processor(monkeypatch):
    """A DagFileProcessorManager with its loop's selector, parsing_idle installed (5 s) for this test."""
    import selectors

    from airflow.dag_processing.manager import DagFileProcessorManager

    from jobqueue import parsing_idle

    service = DagFileProcessorManager._service_processor_sockets
    monkeypatch.setattr(DagFileProcessorManager, "_service_processor_sockets", service)
    monkeypatch.setattr(parsing_idle, "_wake_in", None)
    monkeypatch.setattr(parsing_idle, "_unwakeable", False)
    assert parsing_idle.install(5.0), "Airflow's dag-processor loop changed: see jobqueue/parsing_idle.py"
    manager = DagFileProcessorManager(max_runs=1)
    manager.selector = selectors.DefaultSelector()
    yield manager
    manager.selector.close()


# The dag-processor's module imports Starlette's test client (Airflow's in-process execution API),
# which warns that httpx2 is not installed; Airflow's own requirement.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_an_idle_dag_processor_waits_long_and_a_file_to_parse_wakes_it(dag_processor):
    from jobqueue import parsing_idle

    def waited(timeout: float) -> float:
        start = time.monotonic()
        dag_processor._service_processor_sockets(timeout=timeout)
        return time.monotonic() - start

    assert waited(0.5) >= 5.0  # nothing to parse: the long wait instead of the loop's 0.5 s
    _later(0.3, parsing_idle.wake)  # reparse.py asked for a file to be parsed again
    assert waited(0.5) < 2.5
    assert waited(0) < 0.5  # the loop was late: no wait, as Airflow's
    dag_processor._file_queue["a file"] = None
    assert waited(0.5) < 2.5  # files wait to be parsed: Airflow's cadence


def test_idle_executor_workers_leave_and_a_busy_ones_stay(local_executor):
    from jobqueue import idle_workers

    workers = list(local_executor.workers.values())  # forked from this process by its start()
    assert len(workers) == 1 and workers[0].is_alive()
    assert idle_workers.retire_when_idle(local_executor, 30, now=100) == 0  # idle from now on
    local_executor.running.add("a task")
    assert idle_workers.retire_when_idle(local_executor, 30, now=200) == 0  # busy: the count restarts
    local_executor.running.clear()
    assert idle_workers.retire_when_idle(local_executor, 30, now=300) == 0
    assert idle_workers.retire_when_idle(local_executor, 30, now=329) == 0
    assert workers[0].is_alive()
    assert idle_workers.retire_when_idle(local_executor, 30, now=331) == 1
    assert local_executor.workers == {}
    assert idle_workers.retire_when_idle(local_executor, 30, now=400) == 0  # none left to retire


def test_idle_workers_declines_an_executor_it_does_not_know(monkeypatch, caplog):
    from airflow.executors.local_executor import LocalExecutor

    from jobqueue import idle_workers

    def _process_workloads(self, workload_list):
        return None

    monkeypatch.setattr(LocalExecutor, "_process_workloads", _process_workloads)
    sync = LocalExecutor.sync
    assert idle_workers.install(30) is False
    assert LocalExecutor.sync is sync
    assert "not the one jobqueue.idle_workers knows" in caplog.text


@pytest.fixture
def trigger_loading_installed(monkeypatch):
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor

    from jobqueue import trigger_loading

    for name in ("load_triggers", "clean_unused"):
        monkeypatch.setattr(TriggerRunnerSupervisor, name, getattr(TriggerRunnerSupervisor, name))
    assert trigger_loading.install(0.5)
    return TriggerRunnerSupervisor


def test_the_triggerer_loads_its_triggers_at_most_every_few_seconds(trigger_loading_installed):
    """Airflow's own load_triggers, which refuses a supervisor without a job: it runs on the first
    call, is skipped within the interval, and runs again after it; per supervisor."""
    import types

    supervisor, other = types.SimpleNamespace(job=None), types.SimpleNamespace(job=None)
    with pytest.raises(RuntimeError, match="requires a Job"):
        trigger_loading_installed.load_triggers(supervisor)
    trigger_loading_installed.load_triggers(supervisor)  # skipped: within the interval
    with pytest.raises(RuntimeError, match="requires a Job"):
        trigger_loading_installed.load_triggers(other)  # another supervisor's first call
    time.sleep(0.6)
    with pytest.raises(RuntimeError, match="requires a Job"):
        trigger_loading_installed.load_triggers(supervisor)


def test_trigger_loading_declines_a_round_it_does_not_know(monkeypatch, caplog):
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor

    from jobqueue import trigger_loading

    def run_once(self):
        return None

    monkeypatch.setattr(TriggerRunnerSupervisor, "run_once", run_once)
    load = TriggerRunnerSupervisor.load_triggers
    assert trigger_loading.install(5) is False
    assert TriggerRunnerSupervisor.load_triggers is load
    assert "not the one jobqueue.trigger_loading knows" in caplog.text
