"""graphile-worker's crontab file: every line read as graphile-worker reads it, a bad line refused
naming it, and each tick's job enqueued once against a real PostgreSQL, with ?fill= across a
daylight-saving change."""

from __future__ import annotations

import datetime

import pytest

from jobqueue import crontab, paths
from jobqueue.exceptions import InvalidCrontab
from jobqueue.manager import JobManager
from tests.helpers import all_jobs, rows

UTC = datetime.UTC
TEAM_CRONTAB = (paths.PROJECT_ROOT / "tests" / "corpus" / "crontab").read_text()


def at(day: str, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime.fromisoformat(f"{day}T{hour:02}:{minute:02}:00+00:00")


def test_the_team_s_crontab_reads_as_graphile_worker_reads_it():
    items = {item.id: item for item in crontab.parse_crontab(TEAM_CRONTAB)}
    assert sorted(items) == [
        "monthly_invoices", "purge_exports", "rates", "send_digest", "standup_oncall", "standup_reminder"
    ]  # fmt: skip
    rates = items["rates"]
    assert (rates.identifier, rates.expression, rates.queue_name, rates.max_attempts) == (
        "refresh_exchange_rates", "0,10,20,30,40,50 * * * *", "rates", 3,
    )  # fmt: skip
    purge = items["purge_exports"]
    assert (purge.expression, purge.fill, purge.priority, purge.payload) == (
        "0 3 * * 0", datetime.timedelta(days=2), 5, {"older_than_days": 30},
    )  # fmt: skip
    monthly = items["monthly_invoices"]
    assert (monthly.job_key, monthly.job_key_mode, monthly.line) == ("monthly_invoices", "replace", 11)
    assert items["standup_oncall"].identifier == "standup_reminder"
    assert items["send_digest"].dag_id == "crontab_send_digest"


@pytest.mark.parametrize(
    ("line", "expression"),
    [
        ("* * * * * t", "* * * * *"),
        ("0-59 0-23 1-31 1-12 0-6 t", "* * * * *"),  # every value is no restriction (day rule)
        ("0 0 * * 0,7 t", "0 0 * * 0"),
        ("5,1,3 */6 1,15 */3 1-5 t", "1,3,5 0,6,12,18 1,15 1,4,7,10 1,2,3,4,5"),
    ],
    ids=["stars", "full ranges", "sunday twice", "lists"],
)
def test_fields_become_a_cron_expression_of_the_same_meaning(line, expression):
    assert crontab.parse_line(line, 1).expression == expression


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0 8 * * send_digest", "expected five time fields and a task identifier"),
        ("60 8 * * * send_digest", "60 is outside the minute's 0-59"),
        ("0 8 * * 8 send_digest", "8 is outside the day of week's 0-6"),
        ("0 8 10-2 * * send_digest", "range '10-2' of the day of month does not go upwards"),
        ("0 8 * * * send_digest ?fill=2x", "'2x' is not a valid value of option 'fill'"),
        ("0 8 * * * send_digest ?every=2d", "unknown option 'every'"),
        ("0 8 * * * send_digest ?max=2&max=3", "option 'max' is given more than once"),
        ("0 8 * * * send_digest ?max=0", "a job needs at least one attempt"),
        ("0 8 * * * send_digest ?jobKeyMode=replace", "jobKeyMode without jobKey"),
        ("0 8 * * * send_digest ?jobKey=k&jobKeyMode=unsafe_dedupe", "valid value of option 'jobKeyMode'"),
        ("0 8 * * * send_digest {to: 'x'}", "the payload is not JSON"),
        ("0 8 * * * 9lives", "is not `task_identifier"),
    ],
    ids=[
        "four fields", "minute 60", "weekday 8", "downward range", "bad fill", "unknown option",
        "option twice", "max 0", "mode without key", "unsafe_dedupe", "json5", "bad identifier",
    ],
)  # fmt: skip
def test_a_line_that_does_not_parse_is_refused_naming_it(text, problem):
    with pytest.raises(InvalidCrontab, match="crontab line 3: ") as refused:
        crontab.parse_crontab(f"# the team's\n\n{text}\n* * * * * fine\n")
    assert problem in str(refused.value)


def test_two_lines_of_one_id_are_refused():
    with pytest.raises(InvalidCrontab, match="crontab line 2: id 'a' is used by line 1 already"):
        crontab.parse_crontab("* * * * * a\n0 * * * * a\n")


def test_a_tick_is_enqueued_once_with_graphile_worker_s_job(conn):
    [item] = crontab.parse_crontab(
        '0 3 * * 0 purge_exports ?priority=5&queue=q&max=2 {"older_than_days": 30}'
    )
    jobs = JobManager(conn)
    tick = at("2026-12-06", 3)
    [first] = crontab.enqueue_tick(jobs, item, tick, "UTC")
    assert crontab.enqueue_tick(jobs, item, tick, "UTC") == []  # the run again, or its task retried
    [job] = all_jobs(conn)
    assert job["id"] == first
    assert (job["identifier"], job["run_at"], job["priority"], job["queue_name"], job["max_attempts"]) == (
        "purge_exports", tick, 5, "q", 2,
    )  # fmt: skip
    assert job["payload"] == {"older_than_days": 30, "_cron": {"ts": tick.isoformat(), "backfilled": False}}
    assert job["job_key"] == f"cron:purge_exports:{tick.isoformat()}"


def test_fill_enqueues_the_ticks_missed_within_its_period_as_backfilled(conn):
    [item] = crontab.parse_crontab("0 7 * * * send_digest ?fill=2d")
    jobs = JobManager(conn)
    crontab.enqueue_tick(jobs, item, at("2026-12-01", 7), "UTC")
    # Down from the 2nd to the 5th: the run of the 6th fills the 4th and the 5th, not earlier.
    crontab.enqueue_tick(jobs, item, at("2026-12-06", 7), "UTC")
    enqueued = [(j["run_at"].date().day, j["payload"]["_cron"]["backfilled"]) for j in all_jobs(conn)]
    assert enqueued == [(1, False), (4, True), (5, True), (6, False)]


def test_without_fill_a_missed_tick_is_skipped(conn):
    [item] = crontab.parse_crontab("0 7 * * * send_digest")
    jobs = JobManager(conn)
    crontab.enqueue_tick(jobs, item, at("2026-12-01", 7), "UTC")
    crontab.enqueue_tick(jobs, item, at("2026-12-06", 7), "UTC")
    assert [j["run_at"].date().day for j in all_jobs(conn)] == [1, 6]


def test_fill_over_a_daylight_saving_change_keeps_local_time(conn):
    """08:00 in Paris is 07:00 UTC until 29 March 2026, 06:00 UTC from then on."""
    [item] = crontab.parse_crontab("0 8 * * * send_digest ?fill=3d")
    jobs = JobManager(conn)
    crontab.enqueue_tick(jobs, item, at("2026-03-27", 7), "Europe/Paris")
    crontab.enqueue_tick(jobs, item, at("2026-03-30", 6), "Europe/Paris")
    assert [(j["run_at"], j["payload"]["_cron"]["backfilled"]) for j in all_jobs(conn)] == [
        (at("2026-03-27", 7), False),
        (at("2026-03-28", 7), True),
        (at("2026-03-29", 6), True),
        (at("2026-03-30", 6), False),
    ]
    assert crontab.ticks_between("0 8 * * *", "UTC", at("2026-03-28", 12), at("2026-03-30", 12)) == [
        at("2026-03-29", 8),
        at("2026-03-30", 8),
    ]  # a UTC crontab, graphile-worker's, knows no daylight saving


def test_a_job_key_of_the_line_replaces_the_tick_still_waiting(conn):
    [item] = crontab.parse_crontab("30 8 1 * * monthly_invoices ?jobKey=monthly&jobKeyMode=replace")
    jobs = JobManager(conn)
    first = crontab.enqueue_tick(jobs, item, at("2026-11-01", 8, 30), "UTC")
    second = crontab.enqueue_tick(jobs, item, at("2026-12-01", 8, 30), "UTC")
    assert first == second  # graphile-worker's meaning of a key: one job, brought up to date
    [job] = all_jobs(conn)
    assert (job["job_key"], job["run_at"]) == ("monthly", at("2026-12-01", 8, 30))
    assert rows(conn, "select count(*) as ticks from worker._cron_ticks") == [{"ticks": 2}]
