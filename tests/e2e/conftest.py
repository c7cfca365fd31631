"""The real stack for end-to-end tests, started the way `make run` starts it.

Most tests share one stack (`shared_stack`, started once per session): each reads only its own jobs
(by id, key or identifier). A test gets a stack of its own only where the configuration differs
(Celery, a job-type folder it edits, start and stop themselves); the fault suite has one too
(`fault_stack`), since it kills components. tests/conftest.py keeps each stack's tests together when
the suite runs in parallel (`make test`: pytest-xdist).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devtools.harness import RunningStack, own_stack_environment
from tests.e2e.statsd import StatsdListener
from tests.smtp import SmtpServer

# How long a call to a stack's API may take. Alone a stack answers in well under a second; with
# the suite's three processes on two cores, a fresh API server's first POST of a DAG run took over
# 10 s (CI, test_stack): a slow answer is not the failure these tests look for.
API_TIMEOUT = 60


def survivors(pids: set[int]) -> list[str]:
    alive = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return alive


def access_token(api: str, password: str, username: str = "admin") -> str:
    request = urllib.request.Request(
        f"{api}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
        return str(json.load(response)["access_token"])


def dag_runs(api: str, password: str, dag_id: str) -> list[dict]:
    request = urllib.request.Request(
        f"{api}/api/v2/dags/{dag_id}/dagRuns?limit=100",
        headers={"Authorization": f"Bearer {access_token(api, password)}"},
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
        return list(json.load(response)["dag_runs"])


def dag_run(api: str, password: str, dag_id: str, run_id: str) -> dict:
    """GET /api/v2/dags/{dag_id}/dagRuns/{run_id}: one run, however many the DAG has."""
    request = urllib.request.Request(
        f"{api}/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}",
        headers={"Authorization": f"Bearer {access_token(api, password)}"},
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
        return dict(json.load(response))


def trigger_dag(api: str, password: str, dag_id: str, conf: dict | None = None) -> dict:
    """POST /api/v2/dags/{dag_id}/dagRuns, as the README shows it with curl."""
    body = {"logical_date": None, **({"conf": conf} if conf is not None else {})}
    request = urllib.request.Request(
        f"{api}/api/v2/dags/{dag_id}/dagRuns",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {access_token(api, password)}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
        return dict(json.load(response))


def token(api: str, password: str) -> int:
    request = urllib.request.Request(
        f"{api}/auth/token",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
            assert "access_token" in json.load(response)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def team_project(folder: Path, tasks: dict[str, str], crontab: str | None = None) -> str:
    """A team's folder (WORKER_PROJECT) of these task files, and a crontab if given: its path."""
    (folder / "tasks").mkdir(parents=True)
    for name, source in tasks.items():
        (folder / "tasks" / name).write_text(source)
    if crontab is not None:
        (folder / "crontab").write_text(crontab)
    return str(folder)


def wait_for(conn, sql: str, params, predicate, timeout: float, what: str):
    """The rows of `sql`, polled every 0.5 s until `predicate` holds for them, for `timeout` s at most."""
    deadline = time.monotonic() + timeout
    while True:
        value = conn.execute(sql, params).fetchall()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {value}")
        time.sleep(0.5)


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    with own_stack_environment("worker-e2e-") as env:
        yield env


@pytest.fixture
def fresh_stack_env() -> Iterator[dict[str, str]]:
    """An empty data folder, as a first `make run` has: not a copy of the run's prepared one."""
    with own_stack_environment("worker-fresh-", fresh=True) as env:
        yield env


class StackUnderTest:
    """A stack started with `env` (everything it needs set), its job database and API at hand."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.database = f"postgresql://postgres@127.0.0.1:{env['WORKER_PG_PORT']}/worker"
        self.api = f"http://127.0.0.1:{env['AIRFLOW_API_PORT']}"
        self.stack = RunningStack(env)

    def stop(self) -> None:
        self.stack.stop_with("sigint")


class MailStack(StackUnderTest):
    """The stack sending to a test-owned SMTP server (which the test may stop to play an outage)."""

    def __init__(self, env: dict[str, str], smtp: SmtpServer | None = None) -> None:
        self.smtp = smtp or SmtpServer()
        self.smtp.start()
        env["AIRFLOW_CONN_SMTP_DEFAULT"] = self.smtp.airflow_uri
        super().__init__(env)

    def stop(self) -> None:
        super().stop()
        self.smtp.stop()


@pytest.fixture
def mail_stack(stack_env: dict[str, str]) -> Iterator[MailStack]:
    running = MailStack(stack_env)
    yield running
    running.stop()


# A job type of the shared stack's team folder, for the metrics test: its own identifier, so its
# counters are its own.
METERED = """\
from jobqueue import PermanentJobError, job_type


@job_type("metered")
def metered(payload: dict, ctx) -> None:
    if payload.get("fail"):
        raise PermanentJobError("refused on purpose")
    if payload.get("flaky") and ctx.job.attempts == 1:
        raise ConnectionError("once")
"""


# The shared stack's team folder, besides `metered`: a job type with a rate limit, two runs at once
# and a crontab line (test_controls_e2e); and one of a few lines, using only the public contract,
# whose file a test changes while the stack runs (test_job_type_e2e).
THROTTLED = """\
import time

from jobqueue import job_type


@job_type("throttled", rate_limit="10/s", max_active_runs=2)
def throttled(payload: dict, ctx) -> dict:
    return {"claimed": ctx.job.locked_at.timestamp(), "started": time.time()}
"""

RESIZE_IMAGE = """\
from jobqueue import PermanentJobError, job_type


@job_type("resize_image")
def resize_image(payload: dict, ctx) -> dict:
    if payload["width"] > 10_000:
        raise PermanentJobError("width over 10000")
    if payload["url"] == "flaky" and ctx.job.attempts == 1:
        raise ConnectionError("image server went away")
    ctx.add_job("notify", {"image": payload["url"]}, job_key=f"resized:{ctx.job.id}")
    return {"width": payload["width"], "attempts": ctx.job.attempts}
"""

# One for the job queue's views (test_queue_views_e2e): a job that fails twice for two reasons, then
# completes, in three runs; one that runs until it is cancelled.
WATCHED = """\
import asyncio

from jobqueue import job_type


@job_type("watched", concurrency=4)
async def watched(payload: dict, ctx) -> dict:
    if payload.get("stuck"):
        await asyncio.sleep(600)
    if payload.get("flaky") and ctx.job.attempts == 1:
        raise ConnectionError("upstream went away")
    if payload.get("flaky") and ctx.job.attempts == 2:
        raise ValueError("upstream answered nonsense")
    return {"attempt": ctx.job.attempts}
"""


class SharedStack(MailStack):
    """The stack most e2e tests share: the built-in job types and a team folder's (with a crontab),
    an SMTP server that requires a login (whose password must leak nowhere), and metrics to a StatsD
    listener; jobs of an identifier nothing consumes are reported after 5 s."""

    SMTP_LOGIN = ("mailer", "smtp-" + secrets.token_urlsafe(16))

    def __init__(self, env: dict[str, str], project: Path) -> None:
        self.statsd = StatsdListener()
        self.statsd.start()
        self.tasks = project / "tasks"
        tasks = {
            "metered.py": METERED, "throttled.py": THROTTLED, "resize_image.py": RESIZE_IMAGE,
            "watched.py": WATCHED,
        }  # fmt: skip
        env.update(
            WORKER_PROJECT=team_project(
                project, tasks, crontab='* * * * * throttled ?id=every_minute {"round": "cron"}\n'
            ),
            WORKER_STATSD=f"127.0.0.1:{self.statsd.port}",
            WORKER_METRICS_INTERVAL_SECONDS="1",
            WORKER_UNCONSUMED_AFTER_SECONDS="5",
        )
        super().__init__(env, SmtpServer(login=self.SMTP_LOGIN))

    def stop(self) -> None:
        super().stop()
        self.statsd.stop()


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack]:
    """The shared stack, stopped and gone at the end of the session."""
    with own_stack_environment("worker-shared-") as env:
        # The LocalExecutor's workers leave after 3 s without a task (idle_workers.py; 30 by
        # default) and come back with the next: every test on this stack goes through both.
        env["WORKER_EXECUTOR_IDLE_SECONDS"] = "3"
        running = SharedStack(env, tmp_path_factory.mktemp("shared") / "project")
        try:
            yield running
        finally:
            running.stop()


@contextlib.contextmanager
def own_mail_stack(prefix: str) -> Iterator[MailStack]:
    """A MailStack of its own, stopped and gone afterwards."""
    with own_stack_environment(prefix) as env:
        running = MailStack(env)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[MailStack]:
    """The fault suite's stack (tests/e2e/test_faults.py, then test_restart.py, which stops it)."""
    with own_mail_stack("worker-faults-") as running:
        yield running
