"""Test databases: one throwaway PostgreSQL cluster per run, one database per test.

The cluster is initialised in a temporary folder on a free port (or, with WORKER_TEST_DATABASE_URL,
an existing server is used), a template database gets the migrations once, and each test gets a fresh
clone of it, dropped afterwards.

`make test` runs the suite in parallel (pytest-xdist, `--dist loadgroup` with our work units): each
process has its own cluster; the tests of one stack (the shared one, the fault suite's, a module's
own) or of one graphile-worker install stay in one process, and the long ones start first.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devtools.harness import PREPARED_DATA, free_port, prepared_data
from devtools.localpg import LocalCluster
from jobqueue import paths
from jobqueue.migrations import apply_migrations
from tests import graphile

TEMPLATE = "worker_test_template"

# Modules whose tests share a session fixture this costly run in one process: (fixture, unit).
SHARED = (
    ("shared_stack", "shared-stack"), ("fault_stack", "fault-stack"), ("graphile_worker", "graphile"),
)  # fmt: skip
# Work units (see work_unit) started first, longest first, so that none of them comes last: seconds
# each in a local `make test` (a timeline of each test per process, 2026-12-06; README, Testing).
# The others follow in collection order: each is short.
LONGEST_FIRST = (
    "fault-stack",  # 430 (the outages since 2026-12-06)
    "shared-stack",  # 350 (the team stack's tests since 2026-12-06)
    "tests/e2e/test_acme_worker_e2e.py",  # 124
    "tests/e2e/test_celery.py",  # 118
    "tests/test_bench_smoke_celery.py",  # 102
    "tests/test_bench_smoke.py",  # 78
    "graphile",  # 60
    "tests/e2e/test_stack.py",  # 47
    "tests/test_dag_run.py",  # 43
    "tests/python/test_trigger.py",  # 38
    "tests/test_dags.py",  # 13
)


def work_unit(nodeid: str) -> str:
    """What runs in one process: a test module, or the modules that use one of the SHARED fixtures.
    Read from the module's text: the process that schedules (pytest-xdist's controller) collects
    nothing, so it has the test ids alone."""
    path = nodeid.partition("::")[0]
    text = _module_text(path)
    return next((unit for fixture, unit in SHARED if re.search(rf"\b{fixture}\s*[:,)]", text)), path)


@functools.cache
def _module_text(path: str) -> str:
    try:
        return (paths.PROJECT_ROOT / path).read_text()
    except OSError:
        return ""


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`, with our units (work_unit): pytest-xdist 3.8 groups by renaming each test
    (`item._nodeid`), which pytest 9 no longer reads, so its own grouping silently does nothing."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # the collection's order: the longest first (below)
    return ByWorkUnit(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        unit = work_unit(item.nodeid)
        return LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


def pytest_configure(config: pytest.Config) -> None:
    """One prepared data folder for every stack of the run (devtools.harness.PREPARED_DATA): named
    by the reporting process, inherited by the workers; built while they start (pytest-xdist),
    else by the first stack to need it."""
    if not hasattr(config, "workerinput") and PREPARED_DATA not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="worker-prepared-"))
        folder.chmod(0o755)  # PostgreSQL may run as another user (we are root)
        os.environ[PREPARED_DATA] = str(folder / "data")
        config.stash[_PREPARED] = folder
        if config.getoption("numprocesses", None):
            # The workers take seconds to start and collect: prepare meanwhile (each stack's
            # start waits for it). If it fails, the first stack prepares again and says why.
            preparing = threading.Thread(target=_prepare_quietly, args=(folder / "data",), daemon=True)
            preparing.start()
            config.stash[_PREPARING] = preparing


def pytest_unconfigure(config: pytest.Config) -> None:
    if preparing := config.stash.get(_PREPARING, None):
        preparing.join()
    if folder := config.stash.get(_PREPARED, None):
        shutil.rmtree(folder, ignore_errors=True)
        del os.environ[PREPARED_DATA]


_PREPARED = pytest.StashKey[Path]()
_PREPARING = pytest.StashKey[threading.Thread]()


def _prepare_quietly(folder: Path) -> None:
    with contextlib.suppress(Exception):
        prepared_data(folder)


def pytest_sessionstart(session: pytest.Session) -> None:
    from tests.e2e import faults

    if not hasattr(session.config, "workerinput"):  # the reporting process, not a worker
        for old in faults.SUMMARY_DIR.glob("faults-*.txt"):
            old.unlink()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.e2e import faults

    rounds = [line for f in faults.SUMMARY_DIR.glob("faults-*.txt") for line in f.read_text().splitlines()]
    if rounds:
        terminalreporter.section("faults: recovery")
        for line in [faults.summary()[0], *sorted(rounds, key=_fault_order)]:
            terminalreporter.write_line(line)


def _fault_order(line: str) -> int:
    from tests.e2e import faults

    return next((n for n, fault in enumerate(faults.ALL) if line.startswith(fault)), len(faults.ALL))


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A maintenance URL (database `postgres`) on the server the tests use."""
    explicit = os.environ.get("WORKER_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    folder = Path(tempfile.mkdtemp(prefix="worker-test-pg-"))
    folder.chmod(0o755)  # the server may run as another user (we are root)
    cluster = LocalCluster(folder / "pg", free_port(), durable=False)
    try:
        cluster.start()
        yield cluster.url()
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def create_database(server: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        statement = sql.SQL("create database {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" template {}").format(sql.Identifier(template))
        conn.execute(statement)
    return _with_database(server, name)


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_url(server_url: str) -> Iterator[str]:
    name = f"{TEMPLATE}_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    apply_migrations(url)
    yield name
    drop_database(server_url, name)


@pytest.fixture
def empty_db(server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"worker_test_{uuid.uuid4().hex[:12]}"
    url = create_database(server_url, name)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def db_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh database with the worker schema, cloned from the template."""
    name = f"worker_test_{uuid.uuid4().hex[:12]}"
    url = create_database(server_url, name, template=template_url)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="session")
def graphile_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """graphile-worker 0.18.0 installed from npm by tests/graphile's lock: its node_modules."""
    return graphile.install(tmp_path_factory.mktemp("graphile"))
