"""Fixtures the SQL tests share."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection]:
    """A connection listening on the worker_jobs channel."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("listen worker_jobs")
        yield conn
