"""JobManager: the only caller of the job queries, on any PostgreSQL connection.

`conn` is a psycopg (3) or psycopg2 connection, used as it is inside the caller's transaction (the
caller commits), or a string: a `postgresql://` URL or an Airflow connection id, opened, committed
and closed for this one call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from jobqueue import payloads
from jobqueue.exceptions import BY_SQLSTATE
from jobqueue.jobs import Attempt, Job, JobFilter, JobKeyMode, JobSpec, JsonValue
from jobqueue.queries import query

PauseKind = Literal["identifier", "queue"]
Connectable = Any  # a DB-API connection of psycopg or psycopg2, a URL, or an Airflow connection id


@contextlib.contextmanager
def connection(conn: Connectable) -> Iterator[Any]:
    if not isinstance(conn, str):
        yield conn
        return
    opened = _open(conn)
    try:
        yield opened
        opened.commit()
    except BaseException:
        opened.rollback()
        raise
    finally:
        opened.close()


def _open(conn: str) -> Any:
    if "://" in conn:
        import psycopg

        return psycopg.connect(conn)
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn).get_conn()


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def _message(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    return getattr(diag, "message_primary", None) or str(exc).splitlines()[0]


def _to_json(value: JsonValue, what: str) -> str:
    return payloads.json_text(value, what)


def _json_by_job(values: dict[int, JsonValue], what: str) -> str:
    """{job id: value} as one JSON object: one encoding for a group, not one per element."""
    return payloads.json_text({str(job_id): value for job_id, value in values.items()}, what)


class JobManager:
    def __init__(self, conn: Connectable) -> None:
        self.conn = conn

    @contextlib.contextmanager
    def _executed(self, name: str, params: dict[str, Any]) -> Iterator[Any]:
        """A cursor on which the named query ran, with the project's SQL errors typed."""
        with connection(self.conn) as conn:
            cursor = conn.cursor()
            try:
                cursor.execute(query(name), params)
            except Exception as exc:
                error = BY_SQLSTATE.get(_sqlstate(exc) or "")
                if error is None:
                    raise
                raise error(_message(exc)) from exc
            yield cursor

    def _jobs(self, name: str, params: dict[str, Any]) -> list[Job]:
        with self._executed(name, params) as cursor:
            columns = [column[0] for column in cursor.description]
            return [Job.from_row(dict(zip(columns, row, strict=True))) for row in cursor.fetchall()]

    def add_job(
        self,
        identifier: str,
        payload: JsonValue = None,
        *,
        queue_name: str | None = None,
        run_at: datetime.datetime | None = None,
        max_attempts: int | None = None,
        job_key: str | None = None,
        priority: int | None = None,
        flags: Sequence[str] | None = None,
        job_key_mode: JobKeyMode | str = JobKeyMode.REPLACE,
    ) -> Job:
        params = {
            "identifier": identifier,
            "payload": _to_json({} if payload is None else payload, "payload"),
            "queue_name": queue_name,
            "run_at": run_at,
            "max_attempts": max_attempts,
            "job_key": job_key,
            "priority": priority,
            "flags": list(flags) if flags is not None else None,
            "job_key_mode": str(job_key_mode),
        }
        return self._jobs("add_job", params)[0]

    def add_jobs(self, specs: Iterable[JobSpec]) -> list[Job]:
        body = _to_json([spec.to_json() for spec in specs], "specs")
        return self._jobs("add_jobs", {"specs": body})

    def remove_job(self, job_key: str) -> Job | None:
        jobs = self._jobs("remove_job", {"job_key": job_key})
        return jobs[0] if jobs else None

    def complete_jobs(self, job_ids: Sequence[int], result: JsonValue = None) -> list[Job]:
        encoded = None if result is None else _to_json(result, "result")
        return self._jobs("complete_jobs", {"job_ids": list(job_ids), "result": encoded})

    def complete_each(self, results: dict[int, JsonValue], forget_steps: bool = False) -> int:
        """Completes several jobs in one statement, each with its own result; with `forget_steps`,
        drops what their steps handed on. How many were completed now."""
        params = {"results": _json_by_job(results, "result"), "forget_steps": forget_steps}
        return int(self._scalar("complete_jobs_each", params))

    def permanently_fail_jobs(self, job_ids: Sequence[int], reason: str | None = None) -> list[Job]:
        return self._jobs("permanently_fail_jobs", {"job_ids": list(job_ids), "reason": reason})

    def reschedule_jobs(
        self,
        job_ids: Sequence[int],
        *,
        run_at: datetime.datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        params = {
            "job_ids": list(job_ids),
            "run_at": run_at,
            "priority": priority,
            "attempts": attempts,
            "max_attempts": max_attempts,
        }
        return self._jobs("reschedule_jobs", params)

    def force_unlock_workers(self, worker_ids: Sequence[str], reason: str | None = None) -> None:
        self._execute("force_unlock_workers", {"worker_ids": list(worker_ids), "reason": reason})

    @contextlib.contextmanager
    def transaction(self) -> Iterator[JobManager]:
        """What runs inside is committed together, or rolled back on an exception: the one place
        a connection of ours is committed (the connection is not in autocommit)."""
        try:
            yield self
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def _execute(self, name: str, params: dict[str, Any] | None = None) -> None:
        with self._executed(name, params or {}):
            pass

    def _scalar(self, name: str, params: dict[str, Any] | None = None) -> Any:
        with self._executed(name, params or {}) as cursor:
            return cursor.fetchone()[0]

    # -- the schema (migrations.py) and the move from graphile-worker (graphile_import.py)

    def run_script(self, script: str) -> None:
        """A whole SQL file (a migration), in the caller's transaction."""
        with connection(self.conn) as conn:
            conn.cursor().execute(script.encode())

    def migrations_applied(self) -> set[str]:
        if not self._scalar("migrations_table_exists"):
            return set()
        return {row["name"] for row in self._rows("applied_migrations")}

    def lock_migrations(self) -> None:
        self._execute("lock_migrations")

    def unlock_migrations(self) -> None:
        self._execute("unlock_migrations")

    def graphile_schema_exists(self) -> bool:
        return bool(self._scalar("graphile_schema_exists"))

    def graphile_summary(self) -> tuple[int, int, int]:
        """graphile-worker's jobs: (waiting, failed, running)."""
        [row] = self._rows("graphile_summary")
        waiting, failed, running = row.values()
        return waiting, failed, running

    def move_graphile_jobs(self) -> list[str]:
        """Moves graphile-worker's waiting and failed jobs into ours; the identifier of each."""
        return [row["identifier"] for row in self._rows("graphile_move_jobs")]

    def graphile_already_forwarded(self) -> bool:
        return bool(self._scalar("graphile_already_forwarded"))

    def notify_identifiers(self, identifiers: Sequence[str]) -> None:
        self._execute("notify_identifiers", {"identifiers": list(identifiers)})

    def _rows(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A named query's rows as dicts."""
        with self._executed(name, params or {}) as cursor:
            columns = [column[0] for column in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def claim_jobs(
        self,
        identifiers: Sequence[str],
        worker_id: str,
        max_jobs: int = 1,
        forbidden_flags: Sequence[str] | None = None,
    ) -> list[Job]:
        params = {
            "identifiers": list(identifiers),
            "worker_id": worker_id,
            "max_jobs": max_jobs,
            "forbidden_flags": list(forbidden_flags) if forbidden_flags is not None else None,
        }
        return self._jobs("claim_jobs", params)

    def fail_job(self, job_id: int, worker_id: str, error: str, *, retry: bool = True) -> Job | None:
        params = {"job_id": job_id, "worker_id": worker_id, "error": error, "retry": retry}
        jobs = self._jobs("fail_job", params)
        return jobs[0] if jobs else None

    def add_job_for_worker(
        self,
        identifier: str,
        payload: JsonValue,
        worker_id: str,
        *,
        job_key: str | None = None,
        max_attempts: int | None = None,
    ) -> Job:
        params = {
            "identifier": identifier,
            "payload": _to_json(payload, "payload"),
            "worker_id": worker_id,
            "job_key": job_key,
            "max_attempts": max_attempts,
        }
        return self._jobs("add_job_for_worker", params)[0]

    def remove_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        return self._jobs("remove_jobs", {"job_ids": list(job_ids)})

    def cancel_jobs(self, job_ids: Sequence[int], actor: str | None = None) -> list[Job]:
        """Asks the runs of the running jobs given to stop them (each fails for good, "cancelled by
        <actor>"); removes the waiting and failed ones. Returns both, the removed as REMOVED."""
        return self._jobs("cancel_jobs", {"job_ids": list(job_ids), "actor": actor})

    def record_action(
        self, job_ids: Sequence[int], action: str, actor: str, detail: JsonValue = None
    ) -> None:
        params = {
            "job_ids": list(job_ids),
            "action": action,
            "actor": actor,
            "detail": None if detail is None else _to_json(detail, "detail"),
        }
        self._execute("record_job_action", params)

    def search_jobs(
        self,
        matching: JobFilter,
        *,
        limit: int = 50,
        offset: int = 0,
        identifiers: Sequence[str] | None = None,
    ) -> list[Job]:
        """Jobs matching the filter, newest first; `identifiers`: only of those (None: any)."""
        params = {**self._filtered(matching, identifiers), "limit": limit, "offset": offset}
        return self._jobs("search_jobs", params)

    def count_jobs(self, matching: JobFilter, identifiers: Sequence[str] | None = None) -> int:
        """How many jobs match the filter (of `identifiers`, None: any)."""
        return int(self._scalar("count_jobs", self._filtered(matching, identifiers)))

    def matching_ids(
        self, matching: JobFilter, identifiers: Sequence[str] | None = None, most: int = 100_000
    ) -> list[int]:
        """The ids of the jobs matching the filter, oldest first, at most `most`."""
        params = {**self._filtered(matching, identifiers), "limit": most}
        return [row["id"] for row in self._rows("matching_ids", params)]

    @staticmethod
    def _filtered(matching: JobFilter, identifiers: Sequence[str] | None) -> dict[str, Any]:
        return {**matching.params(), "identifiers": None if identifiers is None else list(identifiers)}

    def waiting_and_runs(self, identifier: str, worker_id: str, most: int) -> tuple[int, int]:
        """(jobs of `identifier` that could be claimed now, counted up to `most`; other workers
        holding jobs of it)."""
        params = {"identifier": identifier, "worker_id": worker_id, "most": most}
        [row] = self._rows("waiting_and_runs", params)
        return int(row["waiting"]), int(row["other_runs"])

    def claimable_identifiers(self, identifiers: Sequence[str]) -> set[str]:
        """Those of `identifiers` with a job a claim could take now (as the trigger sees them: not
        paused, not behind a busy or paused queue, their rate limit's bucket half full)."""
        rows = self._rows("waiting_summary", {"identifiers": list(identifiers)})
        return {row["identifier"] for row in rows if row["claimable"]}

    def rate_limited_waiting(self, identifier: str) -> tuple[float, float] | None:
        """(jobs per second, tokens now) of `identifier`'s rate limit while a job it holds back
        waits; None when it has no limit, is paused or has no job a claim could take now."""
        rows = self._rows("rate_limited_waiting", {"identifier": identifier})
        return (float(rows[0]["per_second"]), float(rows[0]["tokens"])) if rows else None

    def notify_more_waiting(self, identifier: str) -> None:
        self._execute("notify_more_waiting", {"identifier": identifier})

    def lock_sends(self, worker_id: str) -> None:
        """Waits until no other process sends for this worker (a DAG run), then keeps the others
        out until this connection closes: a task's retry and the sender its killed attempt left."""
        self._execute("lock_sends", {"worker_id": worker_id})

    def cap_attempts(self, worker_id: str, cap: int) -> dict[int, int]:
        """Lowers the max_attempts of the jobs the worker holds to `cap` (not below the attempt each
        is on); {job id: its max_attempts now} of those it changed."""
        with self._executed("cap_attempts", {"worker_id": worker_id, "cap": cap}) as cursor:
            return {int(job_id): int(attempts) for job_id, attempts in cursor.fetchall()}

    def held_jobs(self, worker_id: str, identifier: str | None = None) -> list[Job]:
        """The running jobs a worker holds; with `identifier`, only those of it (a job group's run
        holds several members' jobs)."""
        return self._jobs("held_jobs", {"worker_id": worker_id, "identifier": identifier})

    def job_key_exists(self, job_key: str) -> bool:
        """Whether any job, finished or not, carries this key."""
        return bool(self._scalar("job_key_exists", {"job_key": job_key}))

    def save_step_values(self, step: str, values: dict[int, JsonValue]) -> None:
        """What `step` hands to the next step, for each job: {job_id: value}."""
        encoded = _json_by_job(values, f"what step {step!r} returned")
        self._execute("save_step_values", {"step": step, "step_values": encoded})

    def step_values(self, worker_id: str, step: str) -> dict[int, JsonValue]:
        """What `step` handed on for each job the worker holds, from the job's current attempt."""
        with self._executed("step_values", {"worker_id": worker_id, "step": step}) as cursor:
            return {job_id: value for job_id, value in cursor.fetchall()}

    def forget_step_values(self, job_ids: Sequence[int]) -> None:
        self._execute("forget_step_values", {"job_ids": list(job_ids)})

    def unconsumed_identifiers(self, within_seconds: float) -> list[dict[str, Any]]:
        """Identifiers with jobs waiting that no job type's trigger watched in that time:
        [{"identifier", "jobs", "oldest"}]."""
        return self._rows("unconsumed_identifiers", {"within": within_seconds})

    def lock_holders(self) -> list[dict[str, Any]]:
        """Every worker holding running jobs: [{"locked_by", "oldest_lock", "jobs"}]."""
        return self._rows("lock_holders")

    def purge_batch(self, state: str, cutoff: datetime.datetime, batch_size: int) -> list[dict[str, Any]]:
        """Deletes up to batch_size jobs of one status finished before the cutoff: [{"id", "identifier",
        "result"}]."""
        return self._rows("purge_batch", {"state": state, "cutoff": cutoff, "batch_size": batch_size})

    def job_minutes(self, identifiers: Sequence[str], since: datetime.datetime) -> list[dict[str, Any]]:
        """The charts' counts of each minute since `since`, of these identifiers together."""
        return self._rows("job_minutes", {"identifiers": list(identifiers), "since": since})

    def latency_edges(self) -> list[float]:
        """The edges, in seconds, of the pickup latency's buckets (worker._latency_edges)."""
        return [float(edge) for edge in self._scalar("latency_edges")]

    def chart_identifiers(self, since: datetime.datetime) -> list[str]:
        """The identifiers with counts since `since`."""
        return [row["identifier"] for row in self._rows("chart_identifiers", {"since": since})]

    def compact_minutes(self) -> int:
        """Merges each closed minute's rows of the last day into one; how many minutes it merged."""
        with self._executed("compact_minutes", {}) as cursor:
            return int(cursor.rowcount)

    def purge_minutes(self, cutoff: datetime.datetime) -> int:
        """Deletes the charts' counts of the minutes before `cutoff`; how many rows."""
        with self._executed("purge_minutes", {"cutoff": cutoff}) as cursor:
            return int(cursor.rowcount)

    def queue_depth(self) -> list[dict[str, Any]]:
        """Jobs per identifier and status, finished ones over the last day."""
        return self._rows("queue_depth")

    def job_counts(self, identifiers: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Jobs per identifier and status: [{"identifier", "status", "jobs"}], of `identifiers` (None:
        every one); "completed": in the last 24 hours."""
        return self._rows("job_counts", {"identifiers": None if identifiers is None else list(identifiers)})

    def identifiers_of(self, job_ids: Sequence[int]) -> list[str]:
        """The identifiers of these jobs (of those that exist)."""
        return [row["identifier"] for row in self._rows("identifiers_of", {"job_ids": list(job_ids)})]

    def record_failed_attempt(self, job_id: int, attempt: Attempt) -> None:
        """Keeps a failed attempt, in the caller's transaction (the one recording the failure)."""
        fields = dataclasses.asdict(attempt)
        for recorded_here in ("started_at", "ended_at", "job_id"):
            del fields[recorded_here]
        self._execute("record_failed_attempt", {"job_id": job_id, **fields})

    def attempts(self, job_id: int) -> list[Attempt]:
        """A job's attempts, the latest first: the failed ones kept, and the one running or completed."""
        return [Attempt(**row) for row in self._rows("job_attempts", {"job_id": job_id})]

    def cancel_requests(self, worker_id: str) -> dict[int, str]:
        """{job id: who asked} of the requests to cancel jobs the worker holds."""
        rows = self._rows("cancel_requests", {"worker_id": worker_id})
        return {int(row["id"]): str(row["cancel_requested_by"]) for row in rows}

    def cancel_request(self, job_id: int) -> dict[str, Any] | None:
        """{"by", "at"} of the request to cancel the job's running attempt; None if none."""
        found = self._rows("cancel_request", {"job_id": job_id})
        return found[0] if found else None

    def run_attempts(self, worker_id: str, job_ids: Sequence[int]) -> list[Attempt]:
        """The attempts a DAG run made of these jobs (each job's failed ones, and its latest)."""
        params = {"worker_id": worker_id, "job_ids": list(job_ids)}
        return [Attempt(**row) for row in self._rows("run_attempts", params)]

    def job_actions(self, job_id: int) -> list[dict[str, Any]]:
        """What was done to a job by hand, oldest first."""
        return self._rows("job_actions", {"job_id": job_id})

    def pause(self, kind: PauseKind, name: str, actor: str | None = None) -> bool:
        """Stops claiming the jobs of an identifier or a queue; False if it was paused already."""
        return bool(self._scalar("pause", {"kind": kind, "name": name, "actor": actor}))

    def resume(self, kind: PauseKind, name: str) -> bool:
        """Claims them again and wakes their consumers; False if it was not paused."""
        return bool(self._scalar("resume", {"kind": kind, "name": name}))

    def paused(self) -> list[dict[str, Any]]:
        """[{"kind", "name", "paused_at", "paused_by"}]."""
        return self._rows("paused")

    def set_rate_limit(self, identifier: str, rate_limit: str | None) -> None:
        """An operator's rate limit ("10/s", "100/m", "1000/h"; "none" lifts it; None goes back
        to what the job type declares)."""
        self._execute("set_rate_limit", {"identifier": identifier, "rate_limit": rate_limit})

    def declare_rate_limit(self, identifier: str, rate_limit: str | None) -> None:
        self._execute("declare_rate_limit", {"identifier": identifier, "rate_limit": rate_limit})

    def rate_limits(self) -> list[dict[str, Any]]:
        """[{"identifier", "declared", "override", "rate_limit", "per_second", "burst", "tokens"}]."""
        return self._rows("rate_limits")

    def add_cron_job(self, cron_id: str, tick: datetime.datetime, spec: dict[str, Any]) -> Job | None:
        """The job of one tick of a crontab line (spec: one add_jobs spec), or None if that tick
        was enqueued already."""
        params = {"cron_id": cron_id, "tick": tick, "spec": _to_json(spec, "the crontab line's job")}
        jobs = self._jobs("add_cron_job", params)
        return jobs[0] if jobs else None

    def last_cron_tick(self, cron_id: str) -> datetime.datetime | None:
        return self._scalar("last_cron_tick", {"cron_id": cron_id})

    def run_jobs(self, worker_id: str, limit: int = 500) -> list[Job]:
        """The jobs a DAG run (its worker id) attempted, whatever became of them later, failed ones
        first."""
        return self._jobs("run_jobs", {"worker_id": worker_id, "limit": limit})

    def run_attempted_counts(self, worker_id: str) -> dict[str, int]:
        """{status now: jobs} of the jobs a DAG run attempted."""
        rows = self._rows("run_attempted_counts", {"worker_id": worker_id})
        return {row["status"]: row["jobs"] for row in rows}

    def run_job_counts(self, worker_id: str) -> dict[str, int]:
        """{status: jobs} of the jobs a DAG run worked on last."""
        return {row["status"]: row["jobs"] for row in self._rows("run_job_counts", {"worker_id": worker_id})}

    def running_jobs(self, identifiers: Sequence[str] | None, limit: int = 200) -> list[dict[str, Any]]:
        """The jobs running now, the longest running first (of `identifiers`; None: any)."""
        params = {"identifiers": None if identifiers is None else list(identifiers), "limit": limit}
        return self._rows("running_jobs", params)

    def live_identifiers(self) -> list[str]:
        """Identifiers a job type consumes, or with jobs waiting or running."""
        return [row["identifier"] for row in self._rows("live_identifiers")]

    def live_gauges(self, identifiers: Sequence[str], most: int) -> list[dict[str, Any]]:
        """Per identifier: queued, scheduled, running, failed (each counted up to most + 1),
        oldest_due_age, paused."""
        return self._rows("live_gauges", {"identifiers": list(identifiers), "most": most})

    def waiting_queues(self, limit: int = 100) -> list[dict[str, Any]]:
        """Named queues with jobs due: queue_name, due, oldest_due_age, running."""
        return self._rows("waiting_queues", {"limit": limit})

    def get_job(self, job_id: int) -> Job | None:
        jobs = self._jobs("get_job", {"job_id": job_id})
        return jobs[0] if jobs else None


class AsyncJobManager:
    """The queries the trigger runs, in the triggerer's event loop, on a psycopg AsyncConnection
    in autocommit: the only async callers of the job queries."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def listen(self, channel: str) -> None:
        from psycopg import sql

        await self.conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))

    async def waiting_summary(self, identifiers: Sequence[str]) -> dict[str, tuple[bool, float | None]]:
        """Per identifier: (whether a job a claimer could take waits, seconds until the next
        scheduled one); a paused identifier is left out."""
        cursor = await self.conn.execute(query("waiting_summary"), {"identifiers": list(identifiers)})
        return {
            identifier: (bool(claimable), (next_run_at - db_now).total_seconds() if next_run_at else None)
            for identifier, claimable, next_run_at, db_now in await cursor.fetchall()
        }

    async def notify_fired(self, identifiers: Sequence[str]) -> None:
        await self.conn.execute(query("notify_fired"), {"identifiers": json.dumps(list(identifiers))})

    async def consumers_seen(self, identifiers: Sequence[str]) -> None:
        await self.conn.execute(query("consumers_seen"), {"identifiers": list(identifiers)})

    async def sample_waiting(self, identifiers: Sequence[str]) -> None:
        """The jobs due now of each identifier, into the minute's most (the charts')."""
        await self.conn.execute(query("sample_waiting"), {"identifiers": list(identifiers)})

    async def queue_gauges(self, identifiers: Sequence[str]) -> list[dict[str, Any]]:
        """Per identifier: queued, scheduled, running, failed, oldest_due_age, paused."""
        cursor = await self.conn.execute(query("queue_gauges"), {"identifiers": list(identifiers)})
        columns = [column.name for column in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]
