"""The trigger's decision, as a pure function: fire now or wait, and for how long."""

from __future__ import annotations

import pytest

from jobqueue.settings import TriggerTunables
from jobqueue.trigger import Step, next_step

T = TriggerTunables(poll_interval=5.0, min_gap=0.2, stale_after=6.0)
NEVER = float("inf")


@pytest.mark.parametrize(
    ("claimable", "new_work", "since_fire", "due_in", "expected"),
    [
        (True, True, NEVER, None, Step(True, 6.0)),  # start-up, or new jobs after a quiet spell
        (True, True, 0.05, None, Step(False, 0.15)),  # new jobs right after a fire: wait out min_gap
        (True, False, 1.0, None, Step(False, 5.0)),  # a run is on its way: give it time to claim
        (True, False, 6.0, None, Step(True, 6.0)),  # still unclaimed: fire again (stranded event)
        (False, True, 0.0, None, Step(False, 5.0)),  # nothing to claim: the poll is the safety net
        (False, False, 9.0, 1.5, Step(False, 1.5)),  # wake when the next scheduled job is due
        (False, False, 9.0, -1.0, Step(False, 0.0)),  # already due (clock skew): look again now
        (False, False, 9.0, 60.0, Step(False, 5.0)),  # far away: the poll comes first
    ],
    ids=[
        "new-work-fires",
        "min-gap",
        "run-pending",
        "stranded-refire",
        "idle-poll",
        "due-soon",
        "due-now",
        "due-later",
    ],
)
def test_next_step(claimable, new_work, since_fire, due_in, expected):
    step = next_step(claimable=claimable, new_work=new_work, since_fire=since_fire, due_in=due_in, tunables=T)
    assert step.fire == expected.fire
    assert step.wait == pytest.approx(expected.wait)
