"""The same meanings as graphile-worker 0.18.0, shown against the real one: random operation sequences
applied to both schemas side by side, states compared after every step (tests/graphile/parity.py).

WORKER_PARITY_SEQUENCES (300) sequences of WORKER_PARITY_STEPS (25) steps, seeds from
WORKER_PARITY_SEED (0); a failure prints its seed and the shortest sequence that shows it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobqueue.migrations import apply_migrations
from tests.conftest import create_database, drop_database
from tests.graphile import WorkerStatements, install_schema
from tests.graphile.parity import run_sequence
from tests.graphile.world import World

FIRST_SEED = int(os.environ.get("WORKER_PARITY_SEED", "0"))
SEQUENCES = int(os.environ.get("WORKER_PARITY_SEQUENCES", "300"))
STEPS = int(os.environ.get("WORKER_PARITY_STEPS", "25"))


@pytest.fixture(scope="module")
def world(server_url: str, graphile_worker: Path) -> Iterator[World]:
    name = f"worker_parity_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    apply_migrations(url)
    install_schema(graphile_worker, url)
    statements = WorkerStatements(graphile_worker, url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            yield World(conn, statements)
    finally:
        statements.close()
        drop_database(server_url, name)


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + SEQUENCES))
def test_a_random_sequence_means_the_same_in_both(world: World, seed: int) -> None:
    failure = run_sequence(world, seed, STEPS)
    if failure:
        pytest.fail(failure.report(), pytrace=False)
