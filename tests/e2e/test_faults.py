"""Nothing lost, nothing twice: each fault played once on one stack under steady load (issue 7):
each component killed (kill -9), then the outages (PostgreSQL restarted, the SMTP server gone) and an
operator's controls (send_email paused, a burst rate-limited).

Each round: e-mail jobs every 0.1 s and an invoice every 20th job for 3-5 s, the fault, 6 s more of
load, then every job of the round must end `completed` and no Message-ID reach the SMTP server
twice. The recovery times are printed at the end of the run; `make soak` plays many rounds of any
fault. The stack is `fault_stack` (tests/e2e/conftest.py), which test_restart.py uses after these
rounds. (The outages had a stack of their own until issue 25, to run beside the kills: with three
test processes the rounds in a row are shorter than a process's share, and a stack start less.)
"""

from __future__ import annotations

import os
import random

import pytest

from tests.e2e import faults
from tests.e2e.conftest import MailStack

pytestmark = pytest.mark.e2e
SOAK_ROUNDS = int(os.environ.get("WORKER_SOAK_ROUNDS") or 0)


@pytest.mark.parametrize("fault", faults.ALL)
def test_every_job_done_once_after(fault: str, fault_stack: MailStack) -> None:
    outcome = faults.play(fault_stack, fault)
    assert not outcome.duplicates, f"{fault}: messages accepted twice: {outcome.duplicates}"


@pytest.mark.skipif(not SOAK_ROUNDS, reason="`make soak` (WORKER_SOAK_ROUNDS) plays many rounds")
def test_soak(fault_stack: MailStack) -> None:
    """`make soak`: WORKER_SOAK_ROUNDS rounds, each a fault drawn at random (the seed is printed)."""
    seed = int(os.environ.get("WORKER_SOAK_SEED") or random.randrange(1 << 32))
    print(f"soak: {SOAK_ROUNDS} rounds, WORKER_SOAK_SEED={seed}")
    draw = random.Random(seed)
    wanted = os.environ.get("WORKER_SOAK_FAULTS", "")  # e.g. "task,PostgreSQL": some faults only
    chosen = [f for f in faults.ALL[1:] if not wanted or any(w.strip() in f for w in wanted.split(","))]
    for _ in range(SOAK_ROUNDS):
        outcome = faults.play(fault_stack, draw.choice(chosen), before_s=draw.uniform(2, 30))
        assert not outcome.duplicates, f"{outcome.fault}: messages accepted twice: {outcome.duplicates}"
