"""Both systems in one database: one connection, the pairing of their jobs, and the comparison of their
states (see parity.py for what is compared and why)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tests.graphile import Statement, WorkerStatements

GRAPHILE, OURS = "graphile_worker", "worker"


class Divergence(Exception):
    """The two systems disagree: what, in words."""


@dataclass
class Pair:
    """One job in both systems."""

    graphile: int
    ours: int


@dataclass
class Jobs:
    """The jobs of one sequence: each spec's number (its payload's "n") -> the pair it created or
    replaced. Steps name jobs by spec number, so a shortened sequence still reads the same."""

    by_spec: dict[int, Pair] = field(default_factory=dict)
    by_graphile: dict[int, Pair] = field(default_factory=dict)
    by_ours: dict[int, Pair] = field(default_factory=dict)

    def link(self, spec: int, graphile_id: int, our_id: int) -> None:
        known = self.by_graphile.get(graphile_id), self.by_ours.get(our_id)
        if known == (None, None):
            pair = Pair(graphile_id, our_id)
            self.by_graphile[graphile_id] = self.by_ours[our_id] = pair
        elif known[0] is not None and known[0] is known[1]:
            pair = known[0]
        else:
            raise Divergence(
                f"spec n={spec}: graphile-worker gave job {graphile_id} ({self._describe(known[0])}), "
                f"ours job {our_id} ({self._describe(known[1])}): not the same job"
            )
        self.by_spec[spec] = pair

    def pairs(self, specs: Sequence[int]) -> list[Pair]:
        return [self.by_spec[n] for n in specs if n in self.by_spec]

    def first_spec(self, pair: Pair) -> int:
        """The number of the spec that created the job (later ones may have replaced it by key)."""
        return min(n for n, p in self.by_spec.items() if p is pair)

    def spec_of(self, our_id: int) -> int:
        return self.first_spec(self.by_ours[our_id])

    def name(self, pair: Pair) -> str:
        return f"n={self.first_spec(pair)} (graphile {pair.graphile}, ours {pair.ours})"

    def names(self, graphile_ids: Sequence[int], our_ids: Sequence[int]) -> tuple[list[str], list[str]]:
        theirs = [self._name(self.by_graphile.get(i), f"graphile {i}") for i in graphile_ids]
        mine = [self._name(self.by_ours.get(i), f"ours {i}") for i in our_ids]
        return sorted(theirs), sorted(mine)

    def _name(self, pair: Pair | None, unknown: str) -> str:
        return self.name(pair) if pair else f"{unknown} (unknown)"

    def _describe(self, pair: Pair | None) -> str:
        return "new" if pair is None else f"already job {self.name(pair)}"


@dataclass
class Outcome:
    value: Any = None
    error: str | None = None


def on(schema: str, template: str, **types: str) -> sql.Composed:
    """`template` with {schema} (and any {type}) filled in: one statement for either system."""
    names = {name: sql.Identifier(value) for name, value in types.items()}
    return sql.SQL(template).format(schema=sql.Identifier(schema), **names)


class World:
    """One database holding both schemas, one connection, and graphile-worker's statement builder."""

    def __init__(self, conn: psycopg.Connection, statements: WorkerStatements) -> None:
        self.conn = conn
        self.statements = statements
        self.jobs = Jobs()
        self.shifted = datetime.timedelta()
        self.now = datetime.datetime.now(datetime.UTC)

    def reset(self) -> None:
        self.conn.execute(
            "truncate graphile_worker._private_jobs, graphile_worker._private_job_queues, "
            "graphile_worker._private_tasks restart identity cascade"
        )
        self.conn.execute(
            "truncate worker._jobs, worker._job_actions, worker._job_steps, worker._job_attempts"
            " restart identity"
        )
        self.jobs = Jobs()
        self.shifted = datetime.timedelta()

    def rows(self, query: str | sql.Composed, params: Any = None) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def ids(self, query: str | sql.Composed, params: Any = None) -> list[int]:
        return [row["id"] for row in self.rows(query, params) if row["id"] is not None]

    def run_graphile(self, statements: Sequence[Statement]) -> list[int]:
        """Runs graphile-worker's own statements as node-postgres sends them; the ids they return."""
        found = []
        with psycopg.RawCursor(self.conn, row_factory=dict_row) as cursor:
            for statement in statements:
                cursor.execute(statement.text, list(statement.values))
                found += [row["id"] for row in cursor.fetchall()] if cursor.description else []
        return found

    def at(self, offset: float | None) -> datetime.datetime | None:
        """A time `offset` seconds from this step's now(), the same for both systems."""
        return None if offset is None else self.now + datetime.timedelta(seconds=offset)

    def step(self, graphile: Callable[[], Any], ours: Callable[[], Any]) -> tuple[Outcome, Outcome]:
        """Both sides in one transaction, each in a savepoint: a refusal rolls back that side only."""
        with self.conn.transaction():
            self.now = self.rows("select now()")[0]["now"]
            return self._attempt(graphile), self._attempt(ours)

    def _attempt(self, side: Callable[[], Any]) -> Outcome:
        try:
            with self.conn.transaction():
                return Outcome(value=side())
        except psycopg.Error as exc:
            return Outcome(error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

    def compare_states(self) -> None:
        with self.conn.transaction():  # one now() for both reads, so `scheduled` means the same
            graphile, ours = self.rows(GRAPHILE_JOBS), self.rows(OUR_JOBS)
            queues = _holders(self.rows(GRAPHILE_QUEUES)), _holders(self.rows(OUR_QUEUES))
        problems = self._job_differences(graphile, {row["id"]: row for row in ours})
        if queues[0] != queues[1]:
            problems.append(
                f"named queues held (queue, worker): graphile-worker {queues[0]}, ours {queues[1]}"
            )
        if problems:
            raise Divergence("\n".join(problems))

    def _job_differences(self, graphile: list[dict[str, Any]], ours: dict[int, dict[str, Any]]) -> list[str]:
        problems = []
        for row in graphile:
            pair = self.jobs.by_graphile.get(row["id"])
            mine = ours.pop(pair.ours, None) if pair else None
            if pair is None or mine is None:
                problems.append(f"only graphile-worker has job {row['id']}: {_show(row)}")
                continue
            theirs, values, name = _comparable(row), _comparable(mine), self.jobs.name(pair)
            problems += [
                f"job {name}: {column}: graphile-worker {_text(value)}, ours {_text(values[column])}"
                for column, value in theirs.items()
                if values[column] != value
            ]
        problems += [f"only ours has job {row['id']}: {_show(row)}" for row in ours.values()]
        return problems


# graphile-worker's status as its claim reads it: locked is running, no attempts left is failed.
GRAPHILE_JOBS = """
    select j.id, t.identifier, j.payload::text as payload, q.queue_name, j.priority, j.run_at, j.attempts,
           j.max_attempts, j.last_error, j.key as job_key, j.locked_by, j.locked_at,
           (select array_agg(f order by f) from jsonb_object_keys(j.flags) f) as flags, j.created_at,
           case when j.locked_at is not null then 'running'
                when j.attempts >= j.max_attempts then 'failed'
                when j.run_at > now() then 'scheduled'
                else 'queued' end as status
    from graphile_worker._private_jobs j
    join graphile_worker._private_tasks t on t.id = j.task_id
    left join graphile_worker._private_job_queues q on q.id = j.job_queue_id
    order by j.id"""
OUR_JOBS = """
    select id, identifier, payload::text as payload, queue_name, priority, run_at, attempts, max_attempts,
           last_error, job_key, locked_by, locked_at, flags, created_at, status
    from worker.jobs where status <> 'completed' order by id"""
GRAPHILE_QUEUES = (
    "select queue_name, locked_by from graphile_worker._private_job_queues where locked_by is not null"
)
OUR_QUEUES = """
    select distinct queue_name, locked_by from worker._jobs
    where state = 'running' and queue_name is not null"""


def _holders(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((row["queue_name"], row["locked_by"]) for row in rows)


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.loads(v) if k == "payload" else v) for k, v in row.items() if k != "id"}


def _text(value: Any) -> str:
    return value.isoformat(timespec="microseconds") if isinstance(value, datetime.datetime) else repr(value)


def _show(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in _comparable(row).items() if v is not None)
