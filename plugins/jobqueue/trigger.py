"""The pickup trigger: tells Airflow that jobs of some identifiers wait, by events, not slow polling.

It LISTENs on `worker_jobs`, wakes when the next scheduled job is due, and polls as a safety net. It
fires (one TriggerEvent, whatever the number of jobs) when claimable jobs wait and either something
new arrived since it last fired (at most once per `min_gap`; a run that claimed a full batch says so
on the channel too), or jobs stay claimable `stale_after` seconds after it fired (an event Airflow
stranded, apache/airflow issue 56050). `stale_after` is longer than a run takes to claim, so a run
that is about to claim does not get an empty twin. Events are hints; the run claims from the table.

Its kwargs are only the identifiers and the connection id, kept stable: changing an AssetWatcher's
trigger kwargs leaves the asset unwatched until the next parse. Tunables are read at run time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import psycopg
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from jobqueue import metrics, settings, wakeup
from jobqueue.channel import CHANNEL, conninfo
from jobqueue.manager import AsyncJobManager

# How often a trigger tells the job table it watches its identifiers (maintenance and the Jobs page
# name the identifiers nobody watches).
HEARTBEAT_SECONDS = 30.0


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


class JobsWaitingTrigger(BaseEventTrigger):
    def __init__(self, identifiers: list[str], conn_id: str = "worker_db") -> None:
        super().__init__()
        self.identifiers = list(identifiers)
        self.conn_id = conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "jobqueue.trigger.JobsWaitingTrigger",
            {"identifiers": self.identifiers, "conn_id": self.conn_id},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        backoff = 1.0
        while True:
            try:
                async for event in self._watch():
                    backoff = 1.0
                    yield event
            except (psycopg.OperationalError, OSError) as exc:
                # The database restarted or the network dropped: reconnect, then look again.
                self.log.warning("job database unreachable (%s); retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        from airflow.sdk import BaseHook

        connection = await BaseHook.aget_connection(self.conn_id)
        conn = await psycopg.AsyncConnection.connect(conninfo(connection), autocommit=True)
        # The summary query is planned for every waiting job; JIT would cost more than it runs.
        await conn.execute("set jit = off")
        return conn

    async def _watch(self) -> AsyncIterator[TriggerEvent]:
        tunables = settings.trigger_tunables()
        async with await self._connect() as conn:
            jobs = AsyncJobManager(conn)
            await jobs.listen(CHANNEL)
            self.log.info("watching %s for jobs %s", CHANNEL, self.identifiers)
            last_fire = last_heartbeat = float("-inf")
            # On start, jobs may already wait (added while no trigger ran): look at once.
            new_work = True
            last_gauges = float("-inf")
            while True:
                if time.monotonic() - last_heartbeat >= HEARTBEAT_SECONDS:
                    last_heartbeat = time.monotonic()
                    await self._heartbeat(jobs)
                if tunables.metrics_interval and time.monotonic() - last_gauges >= tunables.metrics_interval:
                    last_gauges = time.monotonic()
                    await self._report_gauges(jobs)
                claimable, due_in = await jobs.waiting_summary(self.identifiers)
                step = next_step(
                    claimable=claimable,
                    new_work=new_work,
                    since_fire=time.monotonic() - last_fire,
                    due_in=due_in,
                    tunables=tunables,
                )
                if step.fire:
                    last_fire = time.monotonic()
                    new_work = False
                    yield TriggerEvent(
                        {
                            "identifiers": self.identifiers,
                            "fired_at": datetime.datetime.now(datetime.UTC).isoformat(),
                        }
                    )
                    wakeup.wake()  # the runner has queued the event: send it now, not at its tick
                    await jobs.notify_fired(self.identifiers)  # and the scheduler, make its run
                if await self._wait_for_news(conn, step.wait):
                    new_work = True
                elif due_in is not None and due_in <= step.wait:
                    new_work = True  # a scheduled job has come due

    async def _heartbeat(self, jobs: AsyncJobManager) -> None:
        """Says the identifiers are watched (worker._consumers, migration 0005)."""
        await self._best_effort(
            jobs.consumers_seen(self.identifiers), f"say that {self.identifiers} are watched"
        )

    async def _report_gauges(self, jobs: AsyncJobManager) -> None:
        """The queue's gauges of our identifiers, for Airflow's metrics; only when Airflow exports
        them (the query needs worker._paused, migration 0007)."""
        if metrics.enabled():
            await self._best_effort(self._read_gauges(jobs), f"read the queue's gauges of {self.identifiers}")

    async def _read_gauges(self, jobs: AsyncJobManager) -> None:
        metrics.queue_gauges(await jobs.queue_gauges(self.identifiers))

    async def _best_effort(self, work: Awaitable[None], what: str) -> None:
        """Work besides the pickup: refused by the database (a schema older than it needs), it costs
        a warning, not the pickup; a lost connection goes to run()'s retry."""
        try:
            await work
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            self.log.warning("cannot %s: %s", what, exc)

    async def _wait_for_news(self, conn: psycopg.AsyncConnection[Any], timeout: float) -> bool:
        """Waits up to `timeout` for a notification that concerns our identifiers. The wait is on
        the socket itself: psycopg's notifies(timeout=...) wakes every 0.1 s to look for a
        cancellation, which cost the idle triggerer 0.37 % of a core per job type. What came
        before the wait (during the summary query, which psycopg keeps aside) is taken first."""
        deadline = time.monotonic() + timeout
        while True:
            async for notify in conn.notifies(timeout=0):
                if self._concerns(notify.payload):
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await _readable(conn.pgconn.socket, remaining)

    def _concerns(self, payload: str) -> bool:
        try:
            identifiers = json.loads(payload)
        except ValueError:
            return True
        return identifiers is None or any(i in self.identifiers for i in identifiers)


async def _readable(socket: int, timeout: float) -> None:
    """Until the socket has something to read, or `timeout` seconds."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(socket, wake)
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(socket)
