"""The pickup trigger against a real PostgreSQL: one event per wake-up, never one per job."""

from __future__ import annotations

import asyncio
import datetime
import time

import psycopg
import pytest

from jobqueue.trigger import JobsWaitingTrigger
from tests.helpers import add, claim, rows


class Watcher:
    """Runs the trigger in an event loop thread-free: `events(seconds)` collects what it yields."""

    def __init__(self, db_url: str, identifiers: list[str]) -> None:
        self.trigger = JobsWaitingTrigger(identifiers=identifiers)

        async def connect():
            conn = await psycopg.AsyncConnection.connect(
                db_url, autocommit=True, application_name="jobqueue-trigger"
            )
            await conn.execute("set jit = off")
            return conn

        self.trigger._connect = connect  # type: ignore[method-assign]
        self.loop = asyncio.new_event_loop()
        self.stream = self.trigger.run()
        self.pending: asyncio.Task | None = None

    def events(self, seconds: float) -> list[dict]:
        """Every event yielded within `seconds`."""
        found: list[dict] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self.pending is None:
                self.pending = self.loop.create_task(anext(self.stream))  # type: ignore[arg-type]
            done, _ = self.loop.run_until_complete(asyncio.wait({self.pending}, timeout=remaining))
            if done:
                found.append(self.pending.result().payload)
                self.pending = None
        return found

    def close(self) -> None:
        if self.pending:
            # The generator cannot be closed while a step of it still runs: cancel, wait, then close.
            self.pending.cancel()
            self.loop.run_until_complete(asyncio.gather(self.pending, return_exceptions=True))
        self.loop.run_until_complete(self.stream.aclose())  # type: ignore[attr-defined]
        self.loop.close()


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setenv("WORKER_TRIGGER_POLL_SECONDS", "30")
    monkeypatch.setenv("WORKER_TRIGGER_MIN_GAP_SECONDS", "0.2")
    monkeypatch.setenv("WORKER_TRIGGER_REFIRE_SECONDS", "1.5")


@pytest.fixture
def watcher(db_url, fast):
    w = Watcher(db_url, ["send_email"])
    yield w
    w.close()


def test_jobs_waiting_at_start_fire_at_once(conn, db_url, fast):
    add(conn, "send_email")
    w = Watcher(db_url, ["send_email"])
    try:
        assert len(w.events(0.8)) == 1
    finally:
        w.close()


def test_nothing_waiting_nothing_fired(watcher, conn):
    add(conn, "other_job")
    assert watcher.events(1.0) == []


def test_a_burst_is_one_event(watcher, conn):
    assert watcher.events(0.3) == []
    rows(
        conn,
        "select worker.add_jobs(%s::jsonb)",
        ["[" + ",".join(['{"identifier": "send_email"}'] * 1000) + "]"],
    )
    events = watcher.events(1.2)
    assert len(events) == 1
    assert events[0]["identifiers"] == ["send_email"]


def test_each_fire_tells_the_scheduler_and_a_job_alone_does_not(watcher, conn, db_url):
    """jobqueue.wakeup's scheduler sleep listens to worker_fired: one notification per event."""
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen worker_fired")
        add(conn, "other_job")
        assert watcher.events(0.5) == []
        assert list(listener.notifies(timeout=0.5)) == []
        add(conn, "send_email")
        assert len(watcher.events(1.0)) == 1
        fired = [n.payload for n in listener.notifies(timeout=1.0)]
        assert fired == ['["send_email"]']


def test_unclaimed_jobs_fire_again_and_claimed_ones_do_not(watcher, conn):
    add(conn, "send_email")
    assert len(watcher.events(1.0)) == 1
    # Nobody claimed it (a stranded event): the trigger fires again after stale_after.
    assert len(watcher.events(1.5)) == 1
    claim(conn, ["send_email"])
    assert watcher.events(2.5) == []


def test_a_scheduled_job_fires_when_due(watcher, conn):
    assert watcher.events(0.3) == []
    add(conn, "send_email", run_at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5))
    assert watcher.events(1.0) == []
    assert len(watcher.events(1.5)) == 1


def test_a_busy_queue_is_not_claimable(watcher, conn):
    first = add(conn, "send_email", queue_name="q")
    add(conn, "send_email", queue_name="q")
    assert len(watcher.events(0.5)) == 1
    claim(conn, ["send_email"])
    # The second job waits for its queue: no event, however long.
    assert watcher.events(2.0) == []
    rows(conn, "select worker.complete_jobs(%s)", [[first["id"]]])
    assert len(watcher.events(1.0)) == 1


def test_a_queue_headed_by_another_identifier_is_claimable(watcher, conn):
    # graphile-worker's meaning: a free queue gives any claimer the first job it may take.
    add(conn, "generate_pdf", queue_name="q")
    add(conn, "send_email", queue_name="q")
    assert len(watcher.events(1.0)) == 1
    assert claim(conn, ["send_email"])


def test_the_trigger_reconnects_when_its_connection_dies(watcher, conn, db_url):
    assert watcher.events(0.3) == []
    with psycopg.connect(db_url, autocommit=True) as admin:
        killed = admin.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where datname = current_database() and application_name = 'jobqueue-trigger'"
        ).fetchone()
    assert killed == (1,)
    add(conn, "send_email")
    # It reconnects (after about a second) and finds the job waiting.
    assert watcher.events(4.0), "no event after the connection died"


def test_it_says_it_watches_its_identifiers_and_a_failed_heartbeat_stops_nothing(conn, db_url, fast):
    add(conn, "send_email")
    w = Watcher(db_url, ["send_email"])
    try:
        assert len(w.events(0.8)) == 1
        seen = rows(conn, "select identifier from worker._consumers")
        assert seen == [{"identifier": "send_email"}]
    finally:
        w.close()
    conn.execute("drop table worker._consumers")  # a heartbeat that cannot be written
    w = Watcher(db_url, ["send_email"])
    try:
        assert len(w.events(0.8)) == 1
    finally:
        w.close()


def test_a_notification_that_came_during_a_query_wakes_the_wait_at_once(db_url):
    """psycopg keeps aside what arrives while a query runs: the socket has nothing more to read,
    and a wait on it alone would sleep through the notification until its timeout."""
    trigger = JobsWaitingTrigger(identifiers=["send_email"])

    async def scenario() -> tuple[bool, float]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute("listen worker_jobs")
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as other:
                await other.execute("""select pg_notify('worker_jobs', '["send_email"]')""")
            await asyncio.sleep(0.2)  # the notification is on the socket ...
            await conn.execute("select 1")  # ... and read during this query, then kept aside
            start = time.monotonic()
            woken = await trigger._wait_for_news(conn, 5.0)
            return woken, time.monotonic() - start

    woken, waited = asyncio.run(scenario())
    assert woken and waited < 1.0, waited
