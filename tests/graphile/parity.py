"""Our schema beside graphile-worker 0.18.0 in one database: the same random operations applied to both,
the states compared after every step.

Each step runs on both systems in ONE transaction (a savepoint per side), so `now()` is the same for
both: run_at, back-offs and lock times are compared to the microsecond, not approximately. The
worker side of graphile-worker (claim, complete, fail) runs the statements its installed library
builds (tests/graphile/statements.mjs); its SQL functions (add_job, reschedule_jobs, ...) are its own.

What is compared, per job: identifier, payload, queue, priority, run_at, attempts, max_attempts,
last_error, key, locked_by, locked_at, flags, created_at and status (graphile-worker's derived from
its columns, as its claim reads them); and which worker holds each named queue. What each call
returns is compared too (which jobs it claimed, removed, failed, ...).

What is not compared, or is translated, is each a row of the README's "Differences from
graphile-worker" table, and nothing else:
- completed jobs: ours keeps them (status completed), graphile-worker deletes them;
- job ids: the two sequences skip differently; jobs are paired by the call that created them;
- updated_at and graphile-worker's revision column;
- complete_jobs of a running job: ours completes it as its worker would; on graphile-worker's side
  the test then runs its worker's own completion for that job (operations.CompleteJobs);
- a job left with no attempts by force_unlock_workers or reschedule_jobs: ours writes a last_error
  saying so; the test writes the same text on graphile-worker's side (operations.ForceUnlockWorkers,
  operations.RescheduleJobs);
- claim_jobs(..., max_jobs => n) is compared with n of graphile-worker's single-job claims;
- a worker completing a job it no longer holds is not played (the queue rows differ then).
- an unknown job_key_mode is played with a job_key only (without one graphile-worker ignores it).
The steps (operations.Draw) keep to inputs both accept, or both refuse; never let two claimable jobs
tie on (priority, run_at), whose order graphile-worker leaves to the plan; and keep every lock
younger than graphile-worker's 4-hour expiry.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tests.graphile.operations import Draw, Op
from tests.graphile.world import Divergence, World


@dataclass
class Failure:
    seed: int
    ops: list[Op]
    problem: str

    def report(self) -> str:
        steps = "\n".join(f"  {i + 1:2}. {op.describe()}" for i, op in enumerate(self.ops))
        return (
            f"seed {self.seed}: ours and graphile-worker 0.18.0 differ after this sequence ({len(self.ops)} "
            f"steps, the shortest found):\n{steps}\nafter step {len(self.ops)}:\n{self.problem}"
        )


def play(world: World, ops: Sequence[Op]) -> tuple[int, str] | None:
    """Replays ops on empty tables: (the step after which the systems differ, how) or None."""
    world.reset()
    for index, op in enumerate(ops):
        try:
            op.run(world)
            world.compare_states()
        except Divergence as exc:
            return index, str(exc)
    return None


def run_sequence(world: World, seed: int, steps: int) -> Failure | None:
    world.reset()
    draw = Draw(random.Random(seed))
    ops: list[Op] = []
    for _ in range(steps):
        ops.append(draw.op(world))
        try:
            ops[-1].run(world)
            world.compare_states()
        except Divergence:
            return shortest(world, seed, ops)
    return None


def shortest(world: World, seed: int, ops: list[Op]) -> Failure:
    """Drops each step in turn, last first, while the rest still differs somewhere; then tries each
    remaining step's simpler versions."""
    found = play(world, ops)
    assert found is not None, "a difference that does not replay"
    ops = ops[: found[0] + 1]
    index = len(ops) - 2
    while index >= 0:
        candidate = ops[:index] + ops[index + 1 :]
        if (again := play(world, candidate)) is not None:
            ops, found = candidate[: again[0] + 1], again
            index = min(index, len(ops) - 1)
        index -= 1
    index = 0
    while index < len(ops):
        for smaller in ops[index].simpler():
            candidate = [*ops[:index], smaller, *ops[index + 1 :]]
            if (again := play(world, candidate)) is not None:
                ops, found = candidate[: again[0] + 1], again
                break
        else:
            index += 1
    return Failure(seed, ops, found[1])
