"""Test databases: one throwaway PostgreSQL cluster per run, one database per test.

The cluster is initialised in a temporary folder on a free port (or, with WORKER_TEST_DATABASE_URL,
an existing server is used), a template database gets the migrations once, and each test gets a fresh
clone of it, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devtools.harness import free_port
from devtools.localpg import LocalCluster
from jobqueue.migrations import apply_migrations
from tests import graphile

TEMPLATE = "worker_test_template"


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
