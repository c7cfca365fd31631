"""The job-type API through its runtime, against a real PostgreSQL: every outcome path, the
transaction shared by a job and the jobs it enqueues, async and threaded concurrency, batch
handlers, time limits and chains. A DAG run is played by running its steps in order with one
worker id, as its tasks would."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pydantic
import pytest

from jobqueue import PermanentJobError, forms, job_chain, job_type, paths, step
from jobqueue.claiming import claim_batch
from jobqueue.exceptions import InvalidJobType, RunPayloadRefused
from jobqueue.manager import JobManager
from jobqueue.runtime import StepRun
from tests.helpers import add, all_jobs, job, load_dag_file, rows
from tests.python import chained_jobs

WORKER = "resize_image/manual__1"


class ResizeImage(pydantic.BaseModel):
    url: str
    width: int = pydantic.Field(gt=0)


def run(job_type, db_url: str, worker: str = WORKER, conf: dict | None = None) -> list[dict]:
    """Every step of one DAG run, in order; what each task would return as its XCom."""
    connect = lambda: psycopg.connect(db_url)  # noqa: E731
    return [StepRun(job_type, index, worker, connect).run(conf) for index in range(len(job_type.steps))]


def make_runnable(conn) -> None:
    """A failed attempt's back-off, over at once."""
    conn.execute("update worker._jobs set run_at = now() where state = 'waiting'")


@job_type("resize_image")
def resize_image(payload: ResizeImage, ctx) -> dict | None:
    if payload.width > 10_000:
        raise PermanentJobError("width over 10000")
    if payload.url == "flaky" and ctx.job.attempts == 1:
        raise ConnectionError("image server went away")
    ctx.add_job("send_email", {"resized": payload.url}, job_key=f"resized:{ctx.job.id}")
    if payload.url == "crash-after-enqueue":
        raise RuntimeError("crashed after enqueuing")
    return {"width": payload.width, "attempts": ctx.job.attempts}


def test_each_outcome_of_a_handler(conn, db_url):
    ok = add(conn, "resize_image", {"url": "a.png", "width": 800})["id"]
    flaky = add(conn, "resize_image", {"url": "flaky", "width": 10})["id"]
    too_wide = add(conn, "resize_image", {"url": "b.png", "width": 20_000})["id"]
    bad = add(conn, "resize_image", {"url": "c.png", "width": "wide"})["id"]
    crash = add(conn, "resize_image", {"url": "crash-after-enqueue", "width": 5})["id"]
    [summary] = run(resize_image, db_url)
    assert summary == {"jobs": 4, "completed": 1, "retry": 2, "failed": 2, "failed_in_run": 2}

    done = job(conn, ok)
    assert (done["status"], done["result"]) == ("completed", {"width": 800, "attempts": 1})
    again = job(conn, flaky)
    assert (again["status"], again["attempts"]) == ("scheduled", 1)  # retried after a back-off
    assert again["last_error"] == "step resize_image failed: ConnectionError: image server went away"
    assert (job(conn, too_wide)["status"], job(conn, too_wide)["last_error"]) == (
        "failed",
        "width over 10000",
    )
    refused = job(conn, bad)
    assert refused["status"] == "failed" and "payload.width" in refused["last_error"], refused
    assert job(conn, crash)["status"] == "scheduled"
    # Only the completed job's child exists: the crashed one's went with its transaction.
    children = [j for j in all_jobs(conn) if j["identifier"] == "send_email"]
    assert [child["job_key"] for child in children] == [f"resized:{ok}"]

    # Each failed attempt is kept with its error, its traceback (the handler's own line in it) and
    # the task that ran it; a PermanentJobError's message is the whole story.
    [attempt] = JobManager(conn).attempts(flaky)
    assert (attempt.attempt, attempt.outcome, attempt.worker_id, attempt.task_id) == (
        1, "retry", WORKER, "resize_image",
    )  # fmt: skip
    assert attempt.error == again["last_error"] and attempt.traceback is not None
    assert 'raise ConnectionError("image server went away")' in attempt.traceback
    # From the handler's own frame: none of the runtime's that called it.
    assert "plugins/jobqueue/" not in attempt.traceback and __file__ in attempt.traceback
    [final] = JobManager(conn).attempts(too_wide)
    assert (final.outcome, final.error, final.traceback) == ("failed", "width over 10000", None)

    make_runnable(conn)
    run(resize_image, db_url, worker="resize_image/manual__2")
    retried = job(conn, flaky)
    assert (retried["status"], retried["attempts"], retried["result"]) == (
        "completed",
        2,
        {"width": 10, "attempts": 2},
    )


def test_a_run_triggered_with_a_payload_records_it_as_a_job(conn, db_url):
    run(resize_image, db_url, conf={"url": "form.png", "width": 64})
    [manual] = [j for j in all_jobs(conn) if j["identifier"] == "resize_image"]
    assert (manual["status"], manual["job_key"], manual["result"]["width"]) == (
        "completed",
        f"run:{WORKER}",
        64,
    )


def test_a_job_type_caps_the_attempts_of_its_jobs(conn, db_url, caplog):
    @job_type("capped", max_attempts=2)
    def capped(payload, ctx):
        raise ConnectionError(f"never works ({ctx.job.attempts}/{ctx.job.max_attempts})")

    failing = add(conn, "capped", {})["id"]
    fewer = add(conn, "capped", {}, max_attempts=1)["id"]  # its own, lower, stands
    run(capped, db_url, worker="capped/r1")
    # The row shows the cap from the claim on: never "1 of 25" for a job allowed two.
    first = job(conn, failing)
    assert (first["status"], first["attempts"], first["max_attempts"]) == ("scheduled", 1, 2)
    assert (job(conn, fewer)["status"], job(conn, fewer)["max_attempts"]) == ("failed", 1)
    make_runnable(conn)
    caplog.clear()
    run(capped, db_url, worker="capped/r2")
    ended = job(conn, failing)
    assert (ended["status"], ended["attempts"], ended["max_attempts"]) == ("failed", 2, 2)
    assert ended["last_error"] == "step capped failed: ConnectionError: never works (2/2)"
    # Its last attempt is logged as what it is: final.
    assert f"job {failing} failed for good" in caplog.text and "to be retried" not in caplog.text


def test_a_manual_run_s_refused_payload_has_its_job_type_s_cap(conn, db_url):
    @job_type("capped_model", max_attempts=3)
    def capped_model(payload: ResizeImage, ctx):
        return None

    with pytest.raises(RunPayloadRefused, match=r"invalid payload: payload\.width"):
        run(capped_model, db_url, worker="capped_model/manual__1", conf={"url": "a.png", "width": "wide"})
    [refused] = all_jobs(conn)
    # Failed for good with no attempts left: of the three its job type allows, not of 25.
    assert (refused["status"], refused["attempts"], refused["max_attempts"]) == ("failed", 3, 3)


def test_a_run_opens_a_connection_only_for_the_handlers_that_use_one(conn, db_url):
    """A run's own two connections (claims and end of run; the writer's), and one per lane only
    where a handler touched ctx's database: each costs the task a few ms and PostgreSQL a backend.
    What a handler gets as ctx.connection is psycopg's own connection."""
    opened: list[psycopg.Connection] = []

    def connect() -> psycopg.Connection:
        opened.append(psycopg.connect(db_url))
        return opened[-1]

    @job_type("quiet", concurrency=4)
    def quiet(payload, ctx):
        return payload

    @job_type("chatty", concurrency=4)
    def chatty(payload, ctx):
        assert type(ctx.connection) is psycopg.Connection
        return ctx.connection.execute("select 1").fetchone()

    for n in range(20):
        add(conn, "quiet", {"n": n})
        add(conn, "chatty", {"n": n})
    assert StepRun(quiet, 0, "quiet/r1", connect).run(None) == {"jobs": 20, "completed": 20}
    assert len(opened) == 2
    del opened[:]
    assert StepRun(chatty, 0, "chatty/r1", connect).run(None) == {"jobs": 20, "completed": 20}
    assert 3 <= len(opened) <= 2 + 4  # a lane's connection is opened once, then serves its jobs
    assert all(each.closed for each in opened)


class Line(pydantic.BaseModel):
    total: decimal.Decimal
    day: datetime.date


def test_what_sql_hands_back_is_enqueued_as_a_model_reads_it(conn, db_url):
    """numeric, date, timestamptz and uuid columns read through ctx.connection (psycopg 3: Decimal,
    date, datetime, UUID) go into a child's payload as pydantic writes them, and read back as such."""

    @job_type("report")
    def report(payload, ctx):
        row = ctx.connection.execute(
            "select 1234.50::numeric, date '2026-11-30', timestamptz '2026-11-30 08:00+01',"
            " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid"
        ).fetchone()
        total, day, at, uuid = row
        ctx.add_job("mail", {"lines": [{"total": total, "day": day}], "at": at, "id": uuid})

    add(conn, "report", {})
    assert run(report, db_url, worker="report/r1") == [{"jobs": 1, "completed": 1}]
    [child] = [each for each in all_jobs(conn) if each["identifier"] == "mail"]
    assert child["payload"] == {
        "lines": [{"total": "1234.50", "day": "2026-11-30"}],
        "at": "2026-11-30T07:00:00Z",
        "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    }
    assert Line.model_validate(child["payload"]["lines"][0]) == Line(
        total=decimal.Decimal("1234.50"), day=datetime.date(2026, 11, 30)
    )


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (object(), "payload.lines.0.total: object is not JSON"),
        (float("nan"), "payload.lines.0.total: float('nan')"),
    ],
    ids=["object", "nan"],
)
def test_a_value_json_cannot_hold_is_refused_at_the_call_naming_the_field(conn, db_url, value, named):
    @job_type("refuses")
    def refuses(payload, ctx):
        ctx.add_job("mail", {"lines": [{"total": value}]})

    refused = add(conn, "refuses", {})["id"]
    run(refuses, db_url, worker="refuses/r1")
    ended = job(conn, refused)
    # Failed for good at once (no attempts left, as graphile-worker says it): the same call would be
    # refused again. Nothing was enqueued.
    assert (ended["status"], ended["attempts"]) == ("failed", ended["max_attempts"]), ended
    assert ended["last_error"].startswith(named), ended["last_error"]
    assert [each["identifier"] for each in all_jobs(conn)] == ["refuses"]


@pytest.mark.parametrize("kind", ["async", "threads"])
def test_concurrency_runs_that_many_jobs_at_once(conn, db_url, kind):
    running, most = [0], [0]
    lock = threading.Lock()
    both_in = threading.Barrier(3, timeout=10)

    def enter() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])

    def leave() -> None:
        with lock:
            running[0] -= 1

    if kind == "async":

        @job_type("parallel", concurrency=3)
        async def parallel(payload, ctx):
            enter()
            await asyncio.to_thread(both_in.wait)  # only passes once three jobs are in at once
            leave()
    else:

        @job_type("parallel", concurrency=3)
        def parallel(payload, ctx):
            enter()
            both_in.wait()
            leave()

    ids = [add(conn, "parallel", {"n": n})["id"] for n in range(6)]
    run(parallel, db_url, worker="parallel/r1")
    assert most[0] == 3
    assert {job(conn, i)["status"] for i in ids} == {"completed"}


def test_one_job_at_a_time_by_default(conn, db_url):
    running, most = [0], [0]

    @job_type("serial")
    async def serial(payload, ctx):
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1

    for n in range(4):
        add(conn, "serial", {"n": n})
    run(serial, db_url, worker="serial/r1")
    assert most[0] == 1


def test_a_run_takes_its_share_of_a_burst_and_the_least_batch_of_a_trickle(conn, db_url):
    seen: dict[str, int] = {}

    @job_type("burst", batch=True, batch_size=2, max_batch_size=20, max_active_runs=2)
    def burst(items, ctx):
        seen[ctx.worker_id] = len(items)

    def claim(worker: str) -> int:
        with psycopg.connect(db_url, autocommit=True) as own:
            return len(claim_batch(JobManager(own), "burst", worker, burst.batch_size()))

    for n in range(25):
        add(conn, "burst", {"n": n})
    assert claim("burst/a") == 13  # 25 wait, for two runs: half (up to 20)
    assert claim("burst/b") == 12  # "a" still runs: the last run that may start takes the rest
    conn.execute(
        "update worker._jobs set state = 'waiting', locked_by = null, locked_at = null"
        " where state = 'running'"
    )
    conn.execute("delete from worker._jobs where id in (select id from worker._jobs order by id limit 24)")
    run(burst, db_url, worker="burst/c")  # one job waits: one job, not a share of nothing
    assert seen == {"burst/c": 1}


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_job_past_its_time_limit_fails_its_attempt_alone(conn, db_url, kind):
    release = threading.Event()
    if kind == "async":

        @job_type("slow", time_limit=0.5)
        async def slow(payload, ctx):
            if payload["stuck"]:
                await asyncio.sleep(60)
            return "quick"
    else:

        @job_type("slow", time_limit=datetime.timedelta(seconds=0.5))
        def slow(payload, ctx):
            if payload["stuck"]:
                ctx.add_job("send_email", {"from": "a stuck job"})
                release.wait(60)
                ctx.add_job("send_email", {"from": "a stuck job, later"})
            return "quick"

    stuck = add(conn, "slow", {"stuck": True})["id"]
    quick = add(conn, "slow", {"stuck": False})["id"]
    run(slow, db_url, worker="slow/r1")
    release.set()
    late = job(conn, stuck)
    assert late["status"] == "scheduled"
    assert late["last_error"] == "the job took longer than its time limit of 0.5 s"
    assert (job(conn, quick)["status"], job(conn, quick)["result"]) == ("completed", "quick")
    time.sleep(0.2)  # the stuck thread's late add_job is refused; what it added before is undone
    assert [j["identifier"] for j in all_jobs(conn)] == ["slow", "slow"]


def test_a_batch_handler_reports_an_outcome_per_job(conn, db_url):
    seen = []

    @job_type("send_sms", batch=True, payload=ResizeImage)
    def send_sms(batch, ctx):
        seen.append([item.value.width for item in batch])
        batch[0].done({"sent": True})
        batch[1].fail("number refused")
        batch[2].retry("gateway busy")
        return [None, None, None, ValueError("bad answer"), {"late": 1}]

    ids = [add(conn, "send_sms", {"url": "u", "width": n})["id"] for n in range(1, 6)]
    bad = add(conn, "send_sms", {"url": "u", "width": -1})["id"]
    [summary] = run(send_sms, db_url, worker="send_sms/r1")
    assert seen == [[1, 2, 3, 4, 5]]
    assert summary == {"jobs": 5, "completed": 2, "failed": 2, "retry": 2, "failed_in_run": 2}
    states = [(job(conn, i)["status"], job(conn, i)["last_error"], job(conn, i)["result"]) for i in ids]
    assert states[0] == ("completed", None, {"sent": True})
    assert states[1] == ("failed", "number refused", None)
    assert states[2] == ("scheduled", "gateway busy", None)
    assert states[3][1] == "step send_sms failed: ValueError: bad answer"
    assert states[4] == ("completed", None, {"late": 1})
    assert "payload.width" in job(conn, bad)["last_error"]


def test_a_batch_handler_that_raises_fails_the_jobs_it_did_not_report(conn, db_url):
    @job_type("fragile", batch=True)
    def fragile(batch, ctx):
        batch[0].done()
        raise OSError("session lost")

    first, second = (add(conn, "fragile", {"n": n})["id"] for n in range(2))
    run(fragile, db_url, worker="fragile/r1")
    assert job(conn, first)["status"] == "completed"
    assert job(conn, second)["last_error"] == "step fragile failed: OSError: session lost"


class Rendered(pydantic.BaseModel):
    subject: str
    words: int


def render(payload: ResizeImage, ctx) -> Rendered:
    if payload.width == 13:
        raise PermanentJobError("unlucky")
    return Rendered(subject=f"about {payload.url}", words=payload.width)


def deliver(rendered: Rendered, ctx) -> dict:
    assert isinstance(rendered, Rendered)
    return {"delivered": rendered.subject, "from": ctx.payload.url}


@step(batch=True)
def count(batch, ctx):
    return [{"count": item.value["delivered"]} for item in batch]


CHAIN = job_chain("notify", render, deliver, count)


def test_a_chain_hands_each_job_on_without_xcom(conn, db_url):
    ok = add(conn, "notify", {"url": "x", "width": 3})["id"]
    unlucky = add(conn, "notify", {"url": "y", "width": 13})["id"]
    summaries = run(CHAIN, db_url, worker="notify/r1")
    assert summaries == [
        {"jobs": 2, "handed_on": 1, "failed": 1},
        {"jobs": 1, "handed_on": 1},
        {"jobs": 1, "completed": 1, "failed_in_run": 1},  # the first step's failure: the run fails
    ]
    assert job(conn, ok)["result"] == {"count": "about x"}
    assert (job(conn, unlucky)["status"], job(conn, unlucky)["last_error"]) == ("failed", "unlucky")
    # What the steps handed on is gone once the job's outcome is recorded.
    assert rows(conn, "select * from worker._job_steps") == []


def test_a_retried_step_skips_the_jobs_it_already_handed_on(conn, db_url):
    calls = []

    def first(payload, ctx):
        calls.append(ctx.job.id)
        return payload["n"]

    def second(n: int, ctx):
        return n * 2

    chain = job_chain("twice", first, second)
    ids = [add(conn, "twice", {"n": n})["id"] for n in range(3)]
    connect = lambda: psycopg.connect(db_url)  # noqa: E731
    StepRun(chain, 0, "twice/r1", connect).run(None)
    assert StepRun(chain, 0, "twice/r1", connect).run(None) == {"jobs": 0}
    StepRun(chain, 1, "twice/r1", connect).run(None)
    assert calls == ids
    assert [job(conn, i)["result"] for i in ids] == [0, 2, 4]


def test_a_job_released_meanwhile_starts_its_chain_over(conn, db_url):
    calls = []

    def first(payload, ctx):
        calls.append(ctx.job.attempts)
        return f"attempt {ctx.job.attempts}"

    def second(value: str, ctx):
        return value

    chain = job_chain("restart", first, second)
    released = add(conn, "restart", {})["id"]
    connect = lambda: psycopg.connect(db_url)  # noqa: E731
    StepRun(chain, 0, "restart/r1", connect).run(None)
    conn.execute("select worker.force_unlock_workers(array['restart/r1'])")
    make_runnable(conn)
    # Run r2 takes the job again: what r1's attempt handed on is not its own.
    run(chain, db_url, worker="restart/r2")
    assert calls == [1, 2]
    assert job(conn, released)["result"] == "attempt 2"


def test_user_signup_enqueues_its_welcome_email_with_its_completion(conn, db_url):
    user_signup = load_dag_file("user_signup").user_signup
    first = add(conn, "user_signup", {"email": "ana@example.com", "name": "Ana", "locale": "fr"})["id"]
    bad = add(conn, "user_signup", {"email": "nope", "name": "X"})["id"]
    run(user_signup, db_url, worker="user_signup/manual__test")
    done = job(conn, first)
    [welcome] = [j for j in all_jobs(conn) if j["identifier"] == "send_email"]
    assert (done["status"], done["result"]) == ("completed", {"welcome_job": welcome["id"]})
    assert (welcome["status"], welcome["job_key"]) == ("queued", f"welcome:{first}")
    assert welcome["payload"] == {
        "to": "ana@example.com",
        "template": "welcome",
        "locale": "fr",
        "context": {"name": "Ana"},
    }
    assert job(conn, bad)["status"] == "failed"
    assert "payload.email" in job(conn, bad)["last_error"]


def test_options_are_checked_when_the_dag_file_is_parsed():
    handler = lambda payload, ctx: None  # noqa: E731
    with pytest.raises(InvalidJobType, match="concurrency must be a whole number of at least 1, got 0"):
        job_type("x", concurrency=0)(handler)
    with pytest.raises(InvalidJobType, match="time_limit must be a positive duration"):
        job_type("x", time_limit=-1)(handler)
    with pytest.raises(InvalidJobType, match="time_limit must be a positive duration, got '10s'"):
        job_type("x", time_limit="10s")(handler)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobType, match="tags must be a list"):
        job_type("x", tags="email")(handler)
    with pytest.raises(InvalidJobType, match="two steps are named alike"):
        job_chain("x", render, render)
    with pytest.raises(InvalidJobType, match=r"no such option: batchsize \(did you mean batch_size\?\)"):
        job_type("x", batchsize=3)(handler)  # type: ignore[call-arg]
    with pytest.raises(InvalidJobType, match=r"schedule '61 \* \* \* \*' in time zone 'UTC' is refused"):
        job_type("x", schedule="61 * * * *")(handler)
    with pytest.raises(InvalidJobType, match="in time zone 'Mars/Olympus' is refused"):
        job_type("x", schedule="0 8 * * *", timezone="Mars/Olympus")(handler)
    with pytest.raises(
        InvalidJobType, match=r"rate_limit must be jobs per second, minute or hour.*'10 a second'"
    ):
        job_type("x", rate_limit="10 a second")(handler)
    with pytest.raises(InvalidJobType, match="rate_limit '0/m' lets no job run"):
        job_type("x", rate_limit="0/m")(handler)
    with pytest.raises(InvalidJobType, match=r"rate_limit must be jobs per second.*got 10"):
        job_type("x", rate_limit=10)(handler)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobType, match=r"group must be a DAG id .*got 'crm sync'"):
        job_type("x", group="crm sync")(handler)
    with pytest.raises(InvalidJobType, match="its group's DAG would have its own DAG's id"):
        job_type("x", group="x")(handler)
    with pytest.raises(InvalidJobType, match="a job group's members have one step each"):
        job_chain("x", render, deliver, group="media")


def test_a_group_s_dag_watches_its_members_which_keep_dags_without_the_asset():
    def handler(payload, ctx):
        return None

    first = job_type("grouped_a", group="grouped", schedule="0 8 * * *")(handler)
    second = job_type("grouped_b", group="grouped")(handler)
    alone = job_type("alone")(handler)
    assert first.group_dag is second.group_dag and first.group_dag.dag_id == "grouped"
    [asset] = first.group_dag.timetable.asset_condition.objects
    assert asset.watchers[0].trigger.serialize()[1]["identifiers"] == ["grouped_a", "grouped_b"]
    # The members' own DAGs: runs by hand, and the first's cron ticks; no asset (the group's picks up).
    assert type(first.dag.timetable).__name__ == "CronTriggerTimetable"
    assert type(second.dag.timetable).__name__ == "NullTimetable"
    assert (
        alone.group_dag is None and alone.dag.timetable.asset_condition.objects[0].name == "worker_jobs_alone"
    )


def test_a_refused_declaration_names_the_line_of_the_dag_file(tmp_path):
    """Airflow's import error shows the last frames of the traceback, which are ours: the message
    itself names the user's file and line."""
    dag_file = tmp_path / "typo.py"
    lines = ["from jobqueue import job_type", "", "", "@job_type('typo', concurency=2)", "def typo(p, ctx):"]
    dag_file.write_text("\n".join([*lines, "    pass", ""]))
    result = subprocess.run(
        [sys.executable, str(dag_file)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins")},
    )  # fmt: skip
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "jobqueue.exceptions.InvalidJobType: no such option: concurency (did you mean concurrency?) "
        f"(at {dag_file}, line 4)"
    ), result.stderr


def test_a_run_puts_its_job_type_s_rate_limit_in_force_before_it_claims(conn, db_url):
    @job_type("limited", rate_limit="3/s", batch_size=10)
    def limited(payload, ctx):
        return None

    for _ in range(5):
        add(conn, "limited", {})
    started = time.monotonic()
    # A bucket of 3 at once, then the 2 others as it refills, within the run: never above 3/s.
    assert run(limited, db_url, worker="limited/r1") == [{"jobs": 5, "completed": 5}]
    assert time.monotonic() - started >= 2 / 3
    assert rows(conn, "select rate_limit, tokens from worker.rate_limits") == [
        {"rate_limit": "3/s", "tokens": 0}
    ]


def test_a_run_held_back_by_its_rate_limit_claims_as_the_bucket_refills_for_a_while(
    conn, db_url, monkeypatch
):
    monkeypatch.setenv("WORKER_RATE_LIMIT_PACE_SECONDS", "1.5")
    claimed_at: list[float] = []

    @job_type("paced", rate_limit="4/s", batch_size=100)
    def paced(payload, ctx):
        claimed_at.append(ctx.job.locked_at.timestamp())

    for _ in range(30):
        add(conn, "paced", {})
    rows(conn, "select worker.declare_rate_limit('paced', '4/s')")  # as the run will: unchanged then
    listener = psycopg.connect(conn.info.dsn, autocommit=True)
    listener.execute("listen worker_jobs")
    [outcome] = run(paced, db_url, worker="paced/r1")
    span = max(claimed_at) - min(claimed_at)
    # 4 at once, then about 4 a second for 1.5 s; never more than the limit lets by then.
    assert 4 < outcome["completed"] <= 4 + 4 * span + 1, (outcome, span)
    assert outcome["jobs"] == outcome["completed"]
    assert rows(conn, "select count(*) from worker.jobs where status = 'queued'") == [
        {"count": 30 - outcome["completed"]}
    ]
    # The rest still waits: the run told the trigger, which fires the next run.
    assert [n.payload for n in listener.notifies(timeout=1)] == ['["paced"]']
    listener.close()


def test_a_paused_job_type_s_manual_and_cron_runs_leave_their_jobs_waiting(conn, db_url):
    rows(conn, "select worker.pause_identifier('resize_image')")
    add(conn, "resize_image", {"url": "waiting.png", "width": 1})
    assert run(resize_image, db_url, conf={"url": "form.png", "width": 64}) == [{"jobs": 0}]
    tick = {"ts": "2026-12-03T08:00:00+00:00", "backfilled": False}
    StepRun(resize_image, 0, "resize_image/scheduled__1", lambda: psycopg.connect(db_url)).run(None, tick)
    assert [(j["status"], j["job_key"]) for j in all_jobs(conn)] == [
        ("queued", None),
        ("queued", f"run:{WORKER}"),
        ("queued", "resize_image:cron:2026-12-03T08:00:00+00:00"),
    ]
    rows(conn, "select worker.resume_identifier('resize_image')")
    run(resize_image, db_url, worker="resize_image/r2")
    # All three claimed once (the cron tick's payload is no ResizeImage: it fails for good).
    assert [(j["status"], j["attempts"]) for j in all_jobs(conn)][:2] == [("completed", 1)] * 2
    assert all_jobs(conn)[2]["last_error"].startswith("invalid payload")


def test_the_trigger_form_comes_from_the_payload_model():
    # Every field may be empty: a run the trigger starts has no payload; the model names what lacks.
    assert forms.model_fields(ResizeImage) == {
        "url": {"title": "Url", "type": ["null", "string"]},
        "width": {"title": "Width", "type": ["integer", "null"]},
    }
    assert set(resize_image.dag.params) == {"url", "width"}
    assert [task.task_id for task in resize_image.dag.tasks] == ["resize_image"]
    assert [task.task_id for task in CHAIN.dag.tasks] == ["render", "deliver", "count"]


RUN_PARENTS = """
import sys
import psycopg
from jobqueue.runtime import StepRun
from tests.python.chained_jobs import parent
StepRun(parent, 0, "parent/r1", lambda: psycopg.connect(sys.argv[1])).run(None)
"""


def test_a_step_killed_mid_batch_leaves_each_job_with_its_child_or_neither(conn, db_url, tmp_path):
    ids = [add(conn, "parent", {"pause": 0.05})["id"] for _ in range(60)]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(paths.PROJECT_ROOT / "plugins"), str(paths.PROJECT_ROOT)]),
    }
    task = subprocess.Popen([sys.executable, "-c", RUN_PARENTS, db_url], env=env)

    def completed() -> int:
        return conn.execute("select count(*) from worker.jobs where status = 'completed'").fetchone()[0]

    deadline = time.monotonic() + 60
    while completed() < 5 and task.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(task.pid, signal.SIGKILL)
    task.wait()
    assert 5 <= completed() < len(ids), "the kill did not land mid-batch"

    def children() -> dict[int, int]:
        found = rows(conn, "select payload from worker.jobs where identifier = 'child'")
        counted: dict[int, int] = {}
        for child in found:
            counted[child["payload"]["parent"]] = counted.get(child["payload"]["parent"], 0) + 1
        return counted

    done = {j["id"] for j in all_jobs(conn) if j["identifier"] == "parent" and j["status"] == "completed"}
    assert set(children()) == done  # a child exactly where its parent completed

    # The task's retry (the same run) takes back what the killed attempt held.
    run(chained_jobs.parent, db_url, worker="parent/r1")
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
    assert children() == {i: 1 for i in ids}


def test_a_value_the_next_step_refuses_fails_that_job_alone(conn, db_url):
    def count_words(payload, ctx):
        return {"subject": "s", "words": "many" if payload["bad"] else 3}

    def report(rendered: Rendered, ctx):
        return rendered.words

    chain = job_chain("mismatch", count_words, report)
    bad = add(conn, "mismatch", {"bad": True})["id"]
    good = add(conn, "mismatch", {"bad": False})["id"]
    run(chain, db_url, worker="mismatch/r1")
    refused = job(conn, bad)
    assert refused["status"] == "failed"
    assert refused["last_error"].startswith("what step count_words handed on does not fit step report: ")
    assert (job(conn, good)["status"], job(conn, good)["result"]) == ("completed", 3)


def test_a_retried_group_task_gives_each_member_back_its_own_jobs(conn, db_url, monkeypatch):
    """A group's run holds jobs of several members: a try killed while one member's batch ran
    leaves them held; the retry hands each held job to its own member, not to the first that runs."""
    from jobqueue.airflow_dag import _GROUPS, run_group_task
    from tests.helpers import task_run

    def first(payload, ctx):
        return {"first": payload["n"]}

    def second(payload, ctx):
        return {"second": payload["n"]}

    job_type("retried_a", group="retried")(first)
    member = job_type("retried_b", group="retried")(second)
    monkeypatch.setenv("AIRFLOW_CONN_WORKER_DB", db_url)
    run = task_run("manual__1", "run", dag_id="retried", try_number=2)
    a = add(conn, "retried_a", {"n": 1})["id"]
    b = add(conn, "retried_b", {"n": 2})["id"]
    JobManager(conn).claim_jobs(["retried_b"], run.worker_id)  # the killed try's, still held
    assert run_group_task(_GROUPS["retried"], run) == {"jobs": 2, "completed": 2}
    assert member.group_dag.dag_id == "retried"
    assert (job(conn, a)["result"], job(conn, b)["result"]) == ({"first": 1}, {"second": 2})
    assert {job(conn, i)["last_worker"] for i in (a, b)} == {"retried/manual__1"}
