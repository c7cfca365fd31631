"""The pickup trigger: tells Airflow that jobs of some identifiers wait, by events, not slow polling.

Each job type's DAG watches its identifier with a JobsWaitingTrigger; in a triggerer they all share
one PickupLoop per job database (Airflow's shared streams: `shared_stream_key`), so a triggerer
holds one connection and runs one summary query a round however many job types there are (40 job
types held 40 connections, one per trigger, before). The loop LISTENs on `worker_jobs`, wakes when
the next scheduled job is due, and polls as a safety net. For each trigger it fires (one
TriggerEvent, whatever the number of jobs) when claimable jobs wait and either something new
arrived since it last fired (at most once per `min_gap`; a run that claimed a full batch says so
on the channel too), or jobs stay claimable `stale_after` seconds after it fired (an event Airflow
stranded, apache/airflow issue 56050). `stale_after` is longer than a run takes to claim, so a run
that is about to claim does not get an empty twin. Events are hints; the run claims from the table.

Its kwargs are only the identifiers and the connection id, kept stable: changing an AssetWatcher's
trigger kwargs leaves the asset unwatched until the next parse. Tunables are read at run time.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

import psycopg
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from jobqueue import metrics, settings, wakeup
from jobqueue.channel import CHANNEL, conninfo
from jobqueue.manager import AsyncJobManager

log = logging.getLogger(__name__)

# How often a trigger tells the job table it watches its identifiers (maintenance and the Jobs page
# name the identifiers nobody watches).
HEARTBEAT_SECONDS = 30.0
# The charts' sample of the jobs due: a few per minute, the most of them kept (worker._job_minutes).
SAMPLE_SECONDS = 20.0


@dataclasses.dataclass(frozen=True)
class Step:
    fire: bool
    wait: float


def next_step(
    *,
    claimable: bool,
    new_work: bool,
    since_fire: float,
    due_in: float | None,
    tunables: settings.TriggerTunables,
) -> Step:
    """Whether to fire now, and how long to wait for a notification before looking again."""
    if claimable:
        if new_work and since_fire >= tunables.min_gap:
            return Step(True, tunables.stale_after)
        if since_fire >= tunables.stale_after:
            return Step(True, tunables.stale_after)
        limit = tunables.min_gap if new_work else tunables.stale_after
        return Step(False, max(0.0, limit - since_fire))
    wait = tunables.poll_interval
    if due_in is not None:
        wait = min(wait, max(0.0, due_in))
    return Step(False, wait)


@dataclasses.dataclass(frozen=True)
class Fired:
    """What the pickup loop broadcasts to the triggers that share it: the groups of identifiers
    whose trigger is to fire."""

    groups: frozenset[tuple[str, ...]]
    fired_at: str


class Watched:
    """The groups of identifiers the triggers sharing one pickup loop watch (one group per trigger,
    counted: a DAG's trigger and its replacement may overlap while Airflow swaps them). It lives in
    the triggerer's event loop; `changed` wakes the pickup loop when a trigger joins."""

    def __init__(self) -> None:
        self.groups: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def changed(self) -> asyncio.Event:
        """Set when a trigger joins. An asyncio.Event belongs to the loop that first waits on it,
        and this registry outlives a loop (one per test, or a restarted trigger runner)."""
        loop = asyncio.get_running_loop()
        if self._changed is None or self._loop is not loop:
            self._changed, self._loop = asyncio.Event(), loop
        return self._changed

    def add(self, group: tuple[str, ...]) -> None:
        self.groups[group] += 1
        if self._changed is not None:  # else no loop waits yet: its first round sees the group
            self._changed.set()

    def remove(self, group: tuple[str, ...]) -> None:
        self.groups[group] -= 1
        if self.groups[group] <= 0:
            del self.groups[group]

    def identifiers(self) -> list[str]:
        return sorted({identifier for group in self.groups for identifier in group})


# One pickup loop per job database in a triggerer, whatever the number of job types: Airflow runs
# open_shared_stream once for all triggers with the same shared_stream_key.
_SHARED: dict[Hashable, Watched] = {}


def _stream_key(conn_id: str) -> Hashable:
    return ("jobqueue.trigger.JobsWaitingTrigger", conn_id)


def _shared(key: Hashable) -> Watched:
    """The registry of a shared stream, whichever of its loop and its filters asks first."""
    return _SHARED.setdefault(key, Watched())


@dataclasses.dataclass
class _GroupState:
    last_fire: float = float("-inf")
    new_work: bool = True  # on start, jobs may already wait (added while no trigger ran): look at once
    due_in: float | None = None


class PickupLoop:
    """One connection to the job database, LISTENing, for every watched group: one summary query a
    round for all identifiers, then each group's own decision (next_step) with its own state."""

    def __init__(
        self, watched: Watched, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]
    ) -> None:
        self.watched = watched
        self.connect = connect
        self.states: dict[tuple[str, ...], _GroupState] = {}

    async def events(self) -> AsyncIterator[Fired]:
        """Forever: a lost connection (the database restarted, the network dropped) is reopened,
        after a back-off, and the job table looked at again; it never ends the triggers' stream."""
        backoff = 1.0
        while True:
            try:
                async for fired in self._watch():
                    backoff = 1.0
                    yield fired
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("job database unreachable (%s); retrying in %.0f s", exc, backoff)
                for state in self.states.values():
                    state.new_work = True  # notifications may have been missed meanwhile
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _watch(self) -> AsyncIterator[Fired]:
        tunables = settings.trigger_tunables()
        async with await self.connect() as conn:
            jobs = AsyncJobManager(conn)
            await jobs.listen(CHANNEL)
            log.info("watching %s for jobs", CHANNEL)
            chores = _Chores(tunables)
            while True:
                self.watched.changed.clear()
                identifiers = self.watched.identifiers()
                if identifiers:
                    await chores.do(jobs, identifiers)
                fire, wait = self._decide(
                    await jobs.waiting_summary(identifiers) if identifiers else {}, tunables
                )
                if fire:
                    yield Fired(frozenset(fire), datetime.datetime.now(datetime.UTC).isoformat())
                    # And the scheduler: make the runs now (wakeup.py).
                    await jobs.notify_fired(sorted({i for group in fire for i in group}))
                started = time.monotonic()
                news = await self._wait_for_news(conn, wait)
                self._note(news, waited=time.monotonic() - started)

    def _decide(
        self, summary: dict[str, tuple[bool, float | None]], tunables: settings.TriggerTunables
    ) -> tuple[list[tuple[str, ...]], float]:
        """The groups to fire now, and how long to wait before looking again."""
        for group in list(self.states):
            if group not in self.watched.groups:
                del self.states[group]
        fire, wait = [], tunables.poll_interval
        now = time.monotonic()
        for group in self.watched.groups:
            state = self.states.setdefault(group, _GroupState())
            rows = [summary[i] for i in group if i in summary]  # a paused identifier has none
            claimable = any(waiting for waiting, _ in rows)
            state.due_in = min((due for _, due in rows if due is not None), default=None)
            step = next_step(
                claimable=claimable,
                new_work=state.new_work,
                since_fire=now - state.last_fire,
                due_in=state.due_in,
                tunables=tunables,
            )
            if step.fire:
                state.last_fire, state.new_work = now, False
                fire.append(group)
            wait = min(wait, step.wait)
        return fire, wait

    def _note(self, news: set[str] | None, waited: float) -> None:
        """Marks new work for the groups the notifications concern (None: every group), and for
        those whose next scheduled job has come due meanwhile."""
        for group, state in self.states.items():
            notified = news is None or bool(news.intersection(group))
            came_due = state.due_in is not None and state.due_in <= waited
            if notified or came_due:
                state.new_work = True

    async def _wait_for_news(self, conn: psycopg.AsyncConnection[Any], timeout: float) -> set[str] | None:
        """Waits up to `timeout` for a notification that concerns a watched group, or for a trigger
        to join; returns the identifiers notified (None: all of them). The wait is on the socket
        itself: psycopg's notifies(timeout=...) wakes every 0.1 s to look for a cancellation. What
        came before the wait (during the summary query, which psycopg keeps aside) is taken first."""
        deadline = time.monotonic() + timeout
        news: set[str] = set()
        while True:
            async for notify in conn.notifies(timeout=0):
                notified = _notified(notify.payload)
                if notified is None:
                    return None
                news |= notified
            if news & set(self.watched.identifiers()) or self.watched.changed.is_set():
                return news
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return news
            await _readable(conn.pgconn.socket, remaining, self.watched.changed)


class _Chores:
    """The loop's work besides the pickup, between rounds: the heartbeat, every HEARTBEAT_SECONDS
    and at once when a trigger joined (a job type added to a running triggerer is named watched
    before its jobs could be reported unconsumed), the gauges, every metrics interval, and the
    charts' sample of the jobs due (worker._job_minutes), every SAMPLE_SECONDS."""

    def __init__(self, tunables: settings.TriggerTunables) -> None:
        self.tunables = tunables
        self.last_heartbeat = self.last_gauges = self.last_sample = float("-inf")
        self.heard: set[str] = set()  # the identifiers the last heartbeat named

    async def do(self, jobs: AsyncJobManager, identifiers: list[str]) -> None:
        now = time.monotonic()
        if not self.heard.issuperset(identifiers) or now - self.last_heartbeat >= HEARTBEAT_SECONDS:
            self.last_heartbeat, self.heard = now, set(identifiers)
            await _heartbeat(jobs, identifiers)
        if self.tunables.metrics_interval and now - self.last_gauges >= self.tunables.metrics_interval:
            self.last_gauges = now
            await _report_gauges(jobs, identifiers)
        if now - self.last_sample >= SAMPLE_SECONDS:
            self.last_sample = now
            await _best_effort(jobs.sample_waiting(identifiers), f"sample the jobs due of {identifiers}")


def _notified(payload: str) -> set[str] | None:
    """The identifiers a notification names; None when it names none in particular (all)."""
    try:
        identifiers = json.loads(payload)
    except ValueError:
        return None
    return None if not isinstance(identifiers, list) else {str(i) for i in identifiers}


async def _heartbeat(jobs: AsyncJobManager, identifiers: list[str]) -> None:
    """Says the identifiers are watched (worker._consumers, migration 0005)."""
    await _best_effort(jobs.consumers_seen(identifiers), f"say that {identifiers} are watched")


async def _report_gauges(jobs: AsyncJobManager, identifiers: list[str]) -> None:
    """The queue's gauges of the watched identifiers, for Airflow's metrics; only when Airflow
    exports them (the query needs worker._paused, migration 0007)."""
    if metrics.enabled():
        await _best_effort(_read_gauges(jobs, identifiers), f"read the queue's gauges of {identifiers}")


async def _read_gauges(jobs: AsyncJobManager, identifiers: list[str]) -> None:
    metrics.queue_gauges(await jobs.queue_gauges(identifiers))


async def _best_effort(work: Awaitable[None], what: str) -> None:
    """Work besides the pickup: refused by the database (a schema older than it needs), it costs
    a warning, not the pickup; a lost connection goes to the loop's retry."""
    try:
        await work
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:
        log.warning("cannot %s: %s", what, exc)


class JobsWaitingTrigger(BaseEventTrigger):
    """Fires for one group of identifiers (a job type's DAG watches its own). In the triggerer all
    of them share one PickupLoop per job database (shared_stream_key): one connection and one query
    a round, however many job types; alone (run(), as in tests) it runs a loop of its own."""

    def __init__(self, identifiers: list[str], conn_id: str = "worker_db") -> None:
        super().__init__()
        self.identifiers = list(identifiers)
        self.conn_id = conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "jobqueue.trigger.JobsWaitingTrigger",
            {"identifiers": self.identifiers, "conn_id": self.conn_id},
        )

    def shared_stream_key(self) -> Hashable:
        return _stream_key(self.conn_id)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Fired]:
        conn_id = kwargs.get("conn_id", "worker_db")
        watched = _shared(_stream_key(conn_id))
        async for fired in PickupLoop(watched, lambda: _connect(conn_id)).events():
            yield fired

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        watched = _shared(self.shared_stream_key())
        async for event in self._filter(shared_stream, watched):
            yield event

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watched = Watched()
        async for event in self._filter(PickupLoop(watched, self._connect).events(), watched):
            yield event

    async def _filter(self, stream: AsyncIterator[Fired], watched: Watched) -> AsyncIterator[TriggerEvent]:
        group = tuple(self.identifiers)
        watched.add(group)
        self.log.info("watching for jobs %s", self.identifiers)
        try:
            async for fired in stream:
                if group in fired.groups:
                    yield TriggerEvent({"identifiers": self.identifiers, "fired_at": fired.fired_at})
                    wakeup.wake()  # the runner has queued the event: send it now, not at its tick
        finally:
            watched.remove(group)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await _connect(self.conn_id)


async def _connect(conn_id: str) -> psycopg.AsyncConnection[Any]:
    from airflow.sdk import BaseHook

    connection = await BaseHook.aget_connection(conn_id)
    conn = await psycopg.AsyncConnection.connect(conninfo(connection), autocommit=True)
    # The summary query is planned for every waiting job; JIT would cost more than it runs.
    await conn.execute("set jit = off")
    return conn


async def _readable(socket: int, timeout: float, changed: asyncio.Event) -> None:
    """Until the socket has something to read, `changed` is set, or `timeout` seconds."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[Any] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(socket, wake)
    joined: asyncio.Future[Any] = asyncio.ensure_future(changed.wait())
    try:
        await asyncio.wait([ready, joined], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(socket)
        joined.cancel()
        ready.cancel()
