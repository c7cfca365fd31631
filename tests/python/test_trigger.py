"""The pickup trigger against a real PostgreSQL: one event per wake-up, never one per job."""

from __future__ import annotations

import asyncio
import datetime
import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jobqueue import trigger as trigger_module
from jobqueue.trigger import JobsWaitingTrigger, PickupLoop, Watched
from tests.helpers import add, claim, rows

# The pickup loop's connections, as the triggerer's are named (channel.conninfo).
TRIGGER_BACKENDS = (
    "from pg_stat_activity where datname = current_database() and application_name = 'jobqueue-trigger'"
)


async def trigger_connection(db_url: str) -> psycopg.AsyncConnection:
    """The connection the trigger's _connect makes, to the test's database."""
    conn = await psycopg.AsyncConnection.connect(db_url, autocommit=True, application_name="jobqueue-trigger")
    await conn.execute("set jit = off")
    return conn


def terminate_trigger_connections(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as admin:
        killed = admin.execute(f"select count(pg_terminate_backend(pid)) {TRIGGER_BACKENDS}").fetchone()
    assert killed is not None
    return int(killed[0])


class Watcher:
    """Runs the trigger in an event loop thread-free: `events(seconds)` collects what it yields."""

    def __init__(self, db_url: str, identifiers: list[str]) -> None:
        self.trigger = JobsWaitingTrigger(identifiers=identifiers)

        async def connect():
            return await trigger_connection(db_url)

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
    assert terminate_trigger_connections(db_url) == 1
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
    watched = Watched()
    watched.add(("send_email",))
    loop = PickupLoop(watched, connect=None)  # type: ignore[arg-type]

    async def scenario() -> tuple[set[str] | None, float]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute("listen worker_jobs")
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as other:
                await other.execute("""select pg_notify('worker_jobs', '["send_email"]')""")
            await asyncio.sleep(0.2)  # the notification is on the socket ...
            await conn.execute("select 1")  # ... and read during this query, then kept aside
            start = time.monotonic()
            news = await loop._wait_for_news(conn, 5.0)
            return news, time.monotonic() - start

    news, waited = asyncio.run(scenario())
    assert news == {"send_email"} and waited < 1.0, waited


class SharedWatchers:
    """Many triggers in Airflow's own SharedStreamManager, as the triggerer runs them: one pickup
    loop for all (shared_stream_key), each trigger's events through its filter_shared_stream."""

    def __init__(self, db_url: str, identifiers: list[str], monkeypatch) -> None:
        from airflow.triggers.shared_stream import SharedStreamManager

        async def connect(conn_id: str):
            return await trigger_connection(db_url)

        monkeypatch.setattr(trigger_module, "_connect", connect)
        self.loop = asyncio.new_event_loop()
        self.manager = SharedStreamManager()
        self.fired: list[str] = []
        self.tasks: list[asyncio.Task] = []
        for identifier in identifiers:
            self.join(identifier)

    def join(self, identifier: str) -> None:
        """A trigger for `identifier` subscribes, as the triggerer starts one (in its loop)."""

        async def subscribe() -> None:
            trigger = JobsWaitingTrigger(identifiers=[identifier])
            key = trigger.shared_stream_key()
            stream = self.manager.subscribe(trigger_id=len(self.tasks), trigger=trigger, key=key)
            self.tasks.append(asyncio.create_task(self._collect(trigger.filter_shared_stream(stream))))

        self.loop.run_until_complete(subscribe())

    async def _collect(self, events) -> None:
        async for event in events:
            self.fired.extend(event.payload["identifiers"])

    def run(self, seconds: float) -> list[str]:
        """The identifiers fired within `seconds` (one entry per event)."""
        self.fired = []
        self.loop.run_until_complete(asyncio.sleep(seconds))
        return self.fired

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*self.tasks, return_exceptions=True))
        for n in range(len(self.tasks)):
            self.loop.run_until_complete(
                self.manager.unsubscribe(n, ("jobqueue.trigger.JobsWaitingTrigger", "worker_db"))
            )
        self.loop.run_until_complete(self.manager.stop_all())
        self.loop.close()


@pytest.fixture
def forty(db_url, fast, monkeypatch):
    watchers = SharedWatchers(db_url, [f"type_{n:02}" for n in range(40)], monkeypatch)
    yield watchers
    watchers.close()


def trigger_connections(conn) -> int:
    [count] = conn.execute(f"select count(*) {TRIGGER_BACKENDS}").fetchone()
    return count


def test_forty_job_types_share_one_connection_and_each_fires_for_its_own_jobs(forty, conn):
    assert forty.run(0.5) == []
    assert trigger_connections(conn) == 1
    add(conn, "type_07")
    assert forty.run(0.8) == ["type_07"]
    assert claim(conn, ["type_07"])  # taken, as its run would: it does not fire again
    # A burst in one statement (one notification): one event per type, not per job.
    burst = [{"identifier": identifier} for identifier in ("type_00", "type_39", "type_39", "type_12")]
    conn.execute("select worker.add_jobs(%s)", [Jsonb(burst)])
    assert sorted(forty.run(0.8)) == ["type_00", "type_12", "type_39"]
    assert trigger_connections(conn) == 1


def test_a_type_that_joins_the_shared_loop_sees_jobs_already_waiting(forty, conn):
    forty.run(0.3)
    add(conn, "late")
    assert forty.run(0.5) == []  # nobody watches it yet
    forty.join("late")
    assert forty.run(0.8) == ["late"]
    # Named watched at once, not at the loop's next 30 s heartbeat: maintenance would otherwise
    # report its jobs unconsumed meanwhile (WORKER_UNCONSUMED_AFTER_SECONDS can be seconds).
    assert rows(conn, "select identifier from worker._consumers where identifier = 'late'") == [
        {"identifier": "late"}
    ]


def test_the_shared_loop_reconnects_and_no_trigger_fails(forty, conn, db_url):
    forty.run(0.3)
    terminate_trigger_connections(db_url)
    add(conn, "type_03")
    assert set(forty.run(4.0)) == {"type_03"}  # (again after REFIRE_SECONDS while nobody claims it)
    assert all(not task.done() for task in forty.tasks)  # every trigger still runs
