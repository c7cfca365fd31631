"""The steps of a sequence, each played on both systems, and how they are drawn at random."""

from __future__ import annotations

import datetime
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from psycopg.types.json import Jsonb

from tests.graphile.world import GRAPHILE, OURS, Divergence, World, on

IDENTIFIERS = ("ta", "tb", "tc")
QUEUES = (None, None, None, "q1", "q2")
KEYS = (None, None, "k1", "k2", "k3")
FLAGS: tuple[list[str] | None, ...] = (None, None, None, ["f1"], ["f2"], ["f2", "f1", "f2"], [])
WORKERS = ("w1", "w2", "w3")
MAX_SHIFT = datetime.timedelta(hours=3)  # graphile-worker treats locks older than 4 hours as gone

# Documented differences (README, "Differences from graphile-worker") the test translates.
RESCHEDULED_WITHOUT_ATTEMPTS = "Rescheduled with no attempts left"


def unlocked_during_last_attempt(worker_id: str) -> str:
    return f"Worker {worker_id} was force-unlocked during the last attempt"


Sides = tuple[Callable[[], Any], Callable[[], Any]]


class Op:
    """One step: a graphile-worker side and our side, run in one transaction."""

    returns = ""  # what the jobs each side returns are called, when they are compared

    def describe(self) -> str:
        raise NotImplementedError

    def sides(self, world: World) -> Sides | None:
        """The two sides, prepared outside the step's transaction; None when there is nothing to do."""
        raise NotImplementedError

    def check(self, world: World, graphile: Any, ours: Any) -> None:
        if self.returns:
            theirs = {world.jobs.by_graphile[i].ours if i in world.jobs.by_graphile else -i for i in graphile}
            if theirs != set(ours):
                named = world.jobs.names(graphile, ours)
                raise Divergence(f"{self.returns}: graphile-worker {named[0]}, ours {named[1]}")

    def simpler(self) -> list[Op]:
        """Smaller versions of this step, for the shortest failing sequence."""
        return []

    def run(self, world: World) -> None:
        sides = self.sides(world)
        if sides is None:
            return
        graphile, ours = world.step(*sides)
        if (graphile.error is None) != (ours.error is None):
            raise Divergence(
                f"graphile-worker: {graphile.error or 'accepted'}; ours: {ours.error or 'accepted'}"
            )
        if graphile.error is None:
            self.check(world, graphile.value, ours.value)


def _at(offset: float | None) -> str:
    return "now()" if offset is None else f"now() {'+' if offset >= 0 else '-'} {abs(offset)} s"


def _options(**values: Any) -> str:
    return "".join(f", {name} => {value!r}" for name, value in values.items() if value is not None)


def _spec_number(payload: Any) -> int:
    return int((payload[-1] if isinstance(payload, list) else payload)["n"])


@dataclass(frozen=True)
class Spec:
    """One job to add. `n` numbers it: its payload carries n, and later steps name the job by it."""

    n: int
    identifier: str
    payload: Any
    queue_name: str | None = None
    run_at: float | None = None  # seconds from the step's now()
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: list[str] | None = None

    def describe(self) -> str:
        run_at = "" if self.run_at is None else f", run_at => {_at(self.run_at)}"
        options = _options(queue_name=self.queue_name, max_attempts=self.max_attempts, job_key=self.job_key,
                           priority=self.priority, flags=self.flags)  # fmt: skip
        payload = None if self.payload is None else json.dumps(self.payload)
        return f"{self.identifier!r}, {payload!r}{run_at}{options}"

    def arguments(self, world: World) -> dict[str, Any]:
        """add_job's arguments, the payload as JSON text."""
        payload = None if self.payload is None else json.dumps(self.payload)
        return {
            "identifier": self.identifier, "payload": payload, "queue_name": self.queue_name,
            "run_at": world.at(self.run_at), "max_attempts": self.max_attempts, "job_key": self.job_key,
            "priority": self.priority, "flags": self.flags,
        }  # fmt: skip

    def as_json(self, world: World) -> dict[str, Any]:
        """An add_jobs spec: the given fields only, run_at as a string."""
        run_at = world.at(self.run_at)
        fields = {**self.arguments(world), "payload": self.payload, "run_at": run_at and run_at.isoformat()}
        return {name: value for name, value in fields.items() if value is not None}


ADD_JOB = """
    select id from {schema}.add_job(
        identifier => %(identifier)s, payload => %(payload)s::{json}, queue_name => %(queue_name)s,
        run_at => %(run_at)s, max_attempts => %(max_attempts)s, job_key => %(job_key)s,
        priority => %(priority)s, flags => %(flags)s, job_key_mode => %(job_key_mode)s)"""


@dataclass(frozen=True)
class AddJob(Op):
    spec: Spec
    job_key_mode: str = "replace"

    def describe(self) -> str:
        mode = "" if self.job_key_mode == "replace" else f", job_key_mode => {self.job_key_mode!r}"
        return f"add_job({self.spec.describe()}{mode})  -- job n={self.spec.n}"

    def sides(self, world: World) -> Sides:
        arguments = {**self.spec.arguments(world), "job_key_mode": self.job_key_mode}
        return (
            lambda: world.ids(on(GRAPHILE, ADD_JOB, json="json"), arguments),
            lambda: world.ids(on(OURS, ADD_JOB, json="jsonb"), arguments),
        )

    def check(self, world: World, graphile: Any, ours: Any) -> None:
        world.jobs.link(self.spec.n, graphile[0], ours[0])


# graphile-worker's add_jobs takes an array of its composite job_spec: built here from the same JSON.
GRAPHILE_ADD_JOBS = """
    select id, payload::text as payload from graphile_worker.add_jobs(
        array(select row(s ->> 'identifier', (s -> 'payload')::json, s ->> 'queue_name',
                         (s ->> 'run_at')::timestamptz, (s ->> 'max_attempts')::smallint, s ->> 'job_key',
                         (s ->> 'priority')::smallint,
                         case when jsonb_typeof(s -> 'flags') = 'array'
                              then array(select jsonb_array_elements_text(s -> 'flags')) end
                     )::graphile_worker.job_spec
              from jsonb_array_elements(%s::jsonb) with ordinality e(s, n) order by n),
        %s)"""
OUR_ADD_JOBS = "select id, payload::text as payload from worker.add_jobs(%s)"


@dataclass(frozen=True)
class AddJobs(Op):
    specs: tuple[Spec, ...]
    preserve_run_at: bool = False

    def describe(self) -> str:
        specs = ", ".join(f"({spec.describe()})" for spec in self.specs)
        mode = ", job_key_preserve_run_at => true" if self.preserve_run_at else ""
        return f"add_jobs([{specs}]{mode})  -- jobs n={[s.n for s in self.specs]}"

    def sides(self, world: World) -> Sides:
        specs = [spec.as_json(world) for spec in self.specs]
        mode = "preserve_run_at" if self.preserve_run_at else "replace"
        ours = [spec | {"job_key_mode": mode} for spec in specs]
        return (
            lambda: world.rows(GRAPHILE_ADD_JOBS, [Jsonb(specs), self.preserve_run_at]),
            lambda: world.rows(OUR_ADD_JOBS, [Jsonb(ours)]),
        )

    def check(self, world: World, graphile: Any, ours: Any) -> None:
        # Each returned job carries the number of the spec that made it (last, in a merged array).
        theirs = {_spec_number(json.loads(row["payload"])): row["id"] for row in graphile}
        mine = {_spec_number(json.loads(row["payload"])): row["id"] for row in ours}
        if set(theirs) != set(mine):
            raise Divergence(
                f"add_jobs returned specs {sorted(theirs)} (graphile-worker), {sorted(mine)} (ours)"
            )
        for n, graphile_id in theirs.items():
            world.jobs.link(n, graphile_id, mine[n])

    def simpler(self) -> list[Op]:
        if len(self.specs) == 1:
            return []
        return [
            AddJobs(self.specs[:i] + self.specs[i + 1 :], self.preserve_run_at)
            for i in range(len(self.specs))
        ]


@dataclass(frozen=True)
class RemoveJob(Op):
    job_key: str
    returns = "remove_job returned"

    def describe(self) -> str:
        return f"remove_job({self.job_key!r})"

    def sides(self, world: World) -> Sides:
        call = "select id from {schema}.remove_job(%s)"
        return (
            lambda: world.ids(on(GRAPHILE, call), [self.job_key]),
            lambda: world.ids(on(OURS, call), [self.job_key]),
        )


@dataclass(frozen=True)
class OnJobs(Op):
    """An admin function on jobs named by spec number (some may be gone by then)."""

    specs: tuple[int, ...]

    def ids(self, world: World) -> tuple[list[int], list[int]]:
        pairs = world.jobs.pairs(self.specs)
        return [p.graphile for p in pairs] or [0], [p.ours for p in pairs] or [0]


@dataclass(frozen=True)
class CompleteJobs(OnJobs):
    returns = "complete_jobs returned"

    def describe(self) -> str:
        return f"complete_jobs(jobs n={list(self.specs)})"

    def sides(self, world: World) -> Sides:
        graphile_ids, our_ids = self.ids(world)
        # Documented difference: ours completes a running job too, as its worker's completion would.
        running = world.rows(
            "select id, job_queue_id, locked_by from graphile_worker._private_jobs "
            "where id = any(%s) and locked_at is not null",
            [graphile_ids],
        )
        by_worker = [
            world.statements.complete_jobs(worker, [_job_ref(r) for r in running if r["locked_by"] == worker])
            for worker in sorted({r["locked_by"] for r in running})
        ]

        def graphile() -> list[int]:
            done = world.ids("select id from graphile_worker.complete_jobs(%s)", [graphile_ids])
            for statements in by_worker:
                world.run_graphile(statements)
            return done + [row["id"] for row in running]

        return graphile, lambda: world.ids("select id from worker.complete_jobs(%s)", [our_ids])


def _job_ref(row: dict[str, Any]) -> dict[str, int | None]:
    """A job as graphile-worker's worker knows it: its id and its queue's."""
    return {"id": row["id"], "job_queue_id": row["job_queue_id"]}


@dataclass(frozen=True)
class PermanentlyFailJobs(OnJobs):
    reason: str | None = None
    returns = "permanently_fail_jobs returned"

    def describe(self) -> str:
        return f"permanently_fail_jobs(jobs n={list(self.specs)}, {self.reason!r})"

    def sides(self, world: World) -> Sides:
        graphile_ids, our_ids = self.ids(world)
        call = "select id from {schema}.permanently_fail_jobs(%s, %s)"
        return (
            lambda: world.ids(on(GRAPHILE, call), [graphile_ids, self.reason]),
            lambda: world.ids(on(OURS, call), [our_ids, self.reason]),
        )


RESCHEDULE = """
    select id, attempts, max_attempts, last_error from {schema}.reschedule_jobs(
        %s, run_at => %s, priority => %s, attempts => %s, max_attempts => %s)"""


@dataclass(frozen=True)
class RescheduleJobs(OnJobs):
    run_at: float | None = None
    priority: int | None = None
    attempts: int | None = None
    max_attempts: int | None = None
    returns = "reschedule_jobs returned"

    def describe(self) -> str:
        run_at = "" if self.run_at is None else f", run_at => {_at(self.run_at)}"
        options = _options(priority=self.priority, attempts=self.attempts, max_attempts=self.max_attempts)
        return f"reschedule_jobs(jobs n={list(self.specs)}{run_at}{options})"

    def sides(self, world: World) -> Sides:
        graphile_ids, our_ids = self.ids(world)
        options = [world.at(self.run_at), self.priority, self.attempts, self.max_attempts]

        def graphile() -> list[int]:
            changed = world.rows(on(GRAPHILE, RESCHEDULE), [graphile_ids, *options])
            # Documented difference: ours says why a job left with no attempts failed.
            silent = [
                r["id"] for r in changed if r["attempts"] >= r["max_attempts"] and r["last_error"] is None
            ]
            world.rows(
                "update graphile_worker._private_jobs set last_error = %s where id = any(%s)",
                [RESCHEDULED_WITHOUT_ATTEMPTS, silent],
            )
            return [row["id"] for row in changed]

        return graphile, lambda: world.ids(on(OURS, RESCHEDULE), [our_ids, *options])


@dataclass(frozen=True)
class ForceUnlockWorkers(Op):
    workers: tuple[str, ...]

    def describe(self) -> str:
        return f"force_unlock_workers({list(self.workers)})"

    def sides(self, world: World) -> Sides:
        workers = list(self.workers)

        def graphile() -> None:
            last_attempts = world.rows(
                "select id, locked_by from graphile_worker._private_jobs "
                "where locked_by = any(%s) and attempts >= max_attempts",
                [workers],
            )
            world.rows("select graphile_worker.force_unlock_workers(%s)", [workers])
            for row in last_attempts:  # documented difference: ours says why the job failed
                world.rows(
                    "update graphile_worker._private_jobs set last_error = %s where id = %s",
                    [unlocked_during_last_attempt(row["locked_by"]), row["id"]],
                )

        return graphile, lambda: world.rows("select worker.force_unlock_workers(%s)", [workers])


@dataclass(frozen=True)
class Claim(Op):
    """A worker takes up to `count` jobs: ours in one claim_jobs call, graphile-worker by running its
    default worker's single-job claim `count` times in the same transaction."""

    worker: str
    identifiers: tuple[str, ...]
    count: int
    forbidden_flags: tuple[str, ...] | None = None
    returns = "claimed"

    def describe(self) -> str:
        flags = f", forbidden_flags => {list(self.forbidden_flags)}" if self.forbidden_flags else ""
        return f"claim_jobs({list(self.identifiers)}, {self.worker!r}, {self.count}{flags})"

    def sides(self, world: World) -> Sides:
        forbidden = list(self.forbidden_flags) if self.forbidden_flags else None
        identifiers = list(self.identifiers)
        get_job = world.statements.get_job(self.worker, identifiers, forbidden)
        arguments = [identifiers, self.worker, self.count, forbidden]
        return (
            lambda: world.run_graphile([get_job] * self.count),
            lambda: world.ids("select id from worker.claim_jobs(%s, %s, %s, %s)", arguments),
        )


@dataclass(frozen=True)
class WorkerCompletes(Op):
    """A worker's tasks succeed: graphile-worker's completion statements, our complete_jobs. Only jobs
    the worker still holds (a stale worker completing a job another one took is not played)."""

    worker: str
    specs: tuple[int, ...]

    def describe(self) -> str:
        return f"worker {self.worker!r} completes jobs n={list(self.specs)}"

    def sides(self, world: World) -> Sides | None:
        held = world.rows(
            "select id, job_queue_id from graphile_worker._private_jobs "
            "where id = any(%s) and locked_by = %s",
            [[pair.graphile for pair in world.jobs.pairs(self.specs)], self.worker],
        )
        if not held:
            return None
        statements = world.statements.complete_jobs(self.worker, [_job_ref(row) for row in held])
        our_ids = [world.jobs.by_graphile[row["id"]].ours for row in held]
        return (
            lambda: world.run_graphile(statements),
            lambda: world.ids("select id from worker.complete_jobs(%s)", [our_ids]),
        )


@dataclass(frozen=True)
class WorkerFails(Op):
    """A worker's task throws: graphile-worker's failure statements, our fail_job. Any job: one the
    worker does not hold is left alone by both."""

    worker: str
    spec: int
    message: str

    def describe(self) -> str:
        return f"worker {self.worker!r} fails job n={self.spec}: {self.message!r}"

    def sides(self, world: World) -> Sides:
        pairs = world.jobs.pairs([self.spec])
        graphile_id, our_id = (pairs[0].graphile, pairs[0].ours) if pairs else (0, 0)
        found = world.rows(
            "select id, job_queue_id from graphile_worker._private_jobs where id = %s", [graphile_id]
        )
        job = _job_ref(found[0]) if found else {"id": graphile_id, "job_queue_id": None}
        statements = world.statements.fail_jobs(self.worker, [job], self.message)
        return (
            lambda: world.run_graphile(statements),
            lambda: world.rows("select worker.fail_job(%s, %s, %s)", [our_id, self.worker, self.message]),
        )


SHIFT_GRAPHILE_JOBS = """
    update graphile_worker._private_jobs set run_at = run_at - %(d)s, created_at = created_at - %(d)s,
        updated_at = updated_at - %(d)s, locked_at = locked_at - %(d)s"""
SHIFT_GRAPHILE_QUEUES = "update graphile_worker._private_job_queues set locked_at = locked_at - %(d)s"
SHIFT_OUR_JOBS = """
    update worker._jobs set run_at = run_at - %(d)s, created_at = created_at - %(d)s,
        updated_at = updated_at - %(d)s, locked_at = locked_at - %(d)s, completed_at = completed_at - %(d)s"""


@dataclass(frozen=True)
class TimePasses(Op):
    """The clock moves on: every timestamp of both systems moves back by the same amount."""

    seconds: int

    def describe(self) -> str:
        return f"{self.seconds} s pass"

    def sides(self, world: World) -> Sides:
        shift = {"d": datetime.timedelta(seconds=self.seconds)}
        world.shifted += shift["d"]
        return (
            lambda: [
                world.rows(statement, shift) for statement in (SHIFT_GRAPHILE_JOBS, SHIFT_GRAPHILE_QUEUES)
            ],
            lambda: world.rows(SHIFT_OUR_JOBS, shift),
        )


class Draw:
    """Draws the next step from a seeded random source and the current state of ours (the two are
    in step until they diverge). Inputs are ones both systems accept, or both refuse."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_spec = 1

    def op(self, world: World) -> Op:
        running = world.rows("select id, locked_by from worker._jobs where state = 'running' order by id")
        choices: list[tuple[int, Callable[[], Op | None]]] = [
            (26, self.add_job),
            (8, self.add_jobs),
            (20, self.claim),
            (10, lambda: self.worker_completes(world, running)),
            (12, lambda: self.worker_fails(world, running)),
            (4, self.remove_job),
            (4, lambda: self.on_jobs(world, CompleteJobs, 3)),
            (
                5,
                lambda: self.on_jobs(
                    world, PermanentlyFailJobs, 3, reason=self.rng.choice((None, "bad item"))
                ),
            ),
            (7, lambda: self.reschedule(world)),
            (4, self.force_unlock),
            (8, lambda: self.time_passes(world)),
            (2, self.refused_by_both),
        ]
        while True:
            [make] = self.rng.choices(
                [make for _, make in choices], weights=[weight for weight, _ in choices]
            )
            if (op := make()) is not None:
                return op

    def spec(self, run_at: float | None = None, payload_may_be_missing: bool = False) -> Spec:
        rng, n = self.rng, self.next_spec
        self.next_spec += 1
        shape = rng.random()
        payload = (
            None if payload_may_be_missing and shape < 0.05 else ({"n": n} if shape < 0.6 else [{"n": n}])
        )
        return Spec(
            n, rng.choice(IDENTIFIERS), payload, queue_name=rng.choice(QUEUES), run_at=run_at,
            max_attempts=rng.choice((None, 1, 2, 3, 3, 5)), job_key=rng.choice(KEYS),
            priority=rng.choice((None, None, -1, 0, 1, 2)), flags=rng.choice(FLAGS),
        )  # fmt: skip

    def offset(self) -> float | None:
        """None (now) half the time, else a past or future time, never the same twice: graphile-worker
        leaves the order of jobs tied on (priority, run_at) to the plan."""
        roll = self.rng.random()
        if roll < 0.5:
            return None
        return round(self.rng.uniform(-600, -0.001) if roll < 0.8 else self.rng.uniform(0.5, 400), 6)

    def some_time(self) -> float:
        return round(self.rng.uniform(-600, 400), 6)

    def add_job(self) -> Op:
        mode = self.rng.choice(("replace", "replace", "replace", "preserve_run_at", "unsafe_dedupe"))
        return AddJob(self.spec(self.offset(), payload_may_be_missing=True), job_key_mode=mode)

    def add_jobs(self) -> Op:
        # One spec at most runs at the statement's now(): several would tie on run_at. One call names
        # a key once (both refuse a repeat; refused_by_both plays that).
        specs, keys = [], set()
        for index in range(self.rng.randint(1, 4)):
            spec = self.spec(self.offset() if index == 0 else self.some_time())
            if spec.job_key in keys:
                spec = replace(spec, job_key=None)
            keys.add(spec.job_key)
            specs.append(spec)
        return AddJobs(tuple(specs), preserve_run_at=self.rng.random() < 0.3)

    def refused_by_both(self) -> Op:
        if self.rng.random() < 0.5:  # without a key graphile-worker ignores the mode (README)
            return AddJob(replace(self.spec(), job_key="k2"), job_key_mode="no_such_mode")
        return AddJobs(
            (replace(self.spec(), job_key="k1"), replace(self.spec(self.some_time()), job_key="k1"))
        )

    def claim(self) -> Op:
        identifiers = tuple(self.rng.sample(IDENTIFIERS, self.rng.randint(1, 3)))
        forbidden = self.rng.choice((None, None, None, ("f1",), ("f1", "f2")))
        return Claim(self.rng.choice(WORKERS), identifiers, self.rng.choice((1, 1, 2, 3)), forbidden)

    def known(self, world: World, most: int) -> tuple[int, ...]:
        specs = sorted(world.jobs.by_spec)
        return tuple(self.rng.sample(specs, self.rng.randint(1, min(most, len(specs))))) if specs else ()

    def worker_completes(self, world: World, running: Sequence[dict[str, Any]]) -> Op | None:
        if not running:
            return None
        worker = self.rng.choice(running)["locked_by"]
        held = [world.jobs.spec_of(row["id"]) for row in running if row["locked_by"] == worker]
        return WorkerCompletes(worker, tuple(self.rng.sample(held, self.rng.randint(1, len(held)))))

    def worker_fails(self, world: World, running: Sequence[dict[str, Any]]) -> Op | None:
        message = f"task error {self.rng.randint(1, 999)}"
        if running and self.rng.random() < 0.85:
            job = self.rng.choice(running)
            return WorkerFails(job["locked_by"], world.jobs.spec_of(job["id"]), message)
        specs = self.known(world, 1)
        return WorkerFails(self.rng.choice(WORKERS), specs[0], message) if specs else None

    def remove_job(self) -> Op:
        return RemoveJob(self.rng.choice([key for key in KEYS if key]))

    def on_jobs(self, world: World, kind: type[OnJobs], most: int, **options: Any) -> Op | None:
        specs = self.known(world, most)
        return kind(specs, **options) if specs else None

    def reschedule(self, world: World) -> Op | None:
        specs, rng = self.known(world, 2), self.rng
        if not specs:
            return None
        return RescheduleJobs(
            specs,
            # One job at a time gets a new run_at: several would tie on it.
            run_at=rng.choice((None, round(rng.uniform(-300, 300), 6))) if len(specs) == 1 else None,
            priority=rng.choice((None, None, -2, 1)),
            attempts=rng.choice((None, None, 0, 1, 3)),
            max_attempts=rng.choice((None, None, 1, 2, 4)),
        )

    def force_unlock(self) -> Op:
        return ForceUnlockWorkers(tuple(self.rng.sample(WORKERS, self.rng.randint(1, 2))))

    def time_passes(self, world: World) -> Op | None:
        seconds = self.rng.choice((1, 3, 10, 60, 300))
        return (
            TimePasses(seconds) if world.shifted + datetime.timedelta(seconds=seconds) <= MAX_SHIFT else None
        )
