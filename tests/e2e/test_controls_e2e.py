"""Pause and rate limits on the real stack (the shared stack of tests/e2e/conftest.py). A job type
declared with rate_limit="10/s" and two runs at once: paused, its 100 jobs wait and no DAG run
starts; resumed through the Jobs REST API, with the triggerer killed -9 on the way, they all
complete, each once, and take at least 9 s. Then an operator's limit set at run time (5/s, over the
declared 10/s) spreads 50 more over 9 s. Before all that, a crontab line of graphile-worker's
(every minute) runs as its own DAG's schedule (its latest tick at once) and enqueues its job, which
the same job type runs."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.e2e.conftest import API_TIMEOUT, access_token, dag_runs, wait_for
from tests.e2e.faults import component

pytestmark = pytest.mark.e2e

STARTS = (
    "select (result->>'claimed')::float, attempts, last_worker from worker.jobs "
    "where identifier = 'throttled' and status = 'completed' and payload->>'round' = %s"
)


def api_post(api: str, token: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{api}/job-queue/api/{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
        return dict(json.load(response))


def add_round(conn: psycopg.Connection, name: str, count: int) -> None:
    specs = [{"identifier": "throttled", "payload": {"round": name, "n": n}} for n in range(count)]
    conn.execute("select worker.add_jobs(%s)", [Jsonb(specs)])


def settled_runs(api: str, password: str, dag_id: str, quiet: float = 5.0) -> set[str]:
    """The DAG's run ids once none is queued or running and none has appeared for `quiet` s: an
    event the trigger sent before the pause (a refire while the tick's run was still starting, on a
    busy machine) may become a run a few seconds later; that run finds nothing to claim."""
    deadline = time.monotonic() + 120
    seen: set[str] = set()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        runs = dag_runs(api, password, dag_id)
        ids = {run["dag_run_id"] for run in runs}
        if ids != seen or any(run["state"] in ("queued", "running") for run in runs):
            seen, quiet_since = ids, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return ids
        time.sleep(0.5)
    raise AssertionError(f"the runs of {dag_id} did not settle: {seen}")


def completed_once(conn: psycopg.Connection, name: str, count: int) -> list[tuple]:
    done = wait_for(conn, STARTS, [name], lambda v: len(v) == count, 120, f"round {name} to complete")
    assert {attempts for _, attempts, _ in done} == {1}  # nothing ran twice
    return done


def test_pause_resume_and_rate_limits_on_the_stack(shared_stack):
    stack, api = shared_stack.stack, shared_stack.api
    with psycopg.connect(shared_stack.database, autocommit=True) as conn:
        watched = "select 1 from worker._consumers where identifier = 'throttled'"
        wait_for(conn, watched, None, bool, 180, "the trigger of throttled to watch")
        # The crontab's latest tick runs as soon as Airflow sees its DAG (catchup=False): its job
        # is done first, so that it does not start a run while the identifier is paused.
        cron = "select job_key, payload->'_cron', status from worker.jobs where payload->>'round' = 'cron'"
        [(key, tick, _), *_] = wait_for(
            conn, cron, None, lambda v: v and v[0][2] == "completed", 120, "a tick"
        )
        conn.execute("select worker.pause_identifier('throttled')")
        runs_before = settled_runs(api, stack.password, "throttled")
        add_round(conn, "first", 100)
        time.sleep(8)
        first_round = "select status, count(*) from worker.jobs where payload->>'round' = 'first' group by 1"
        waiting = conn.execute(first_round).fetchall()
        assert waiting == [("queued", 100)]
        runs = {run["dag_run_id"] for run in dag_runs(api, stack.password, "throttled")}
        assert runs == runs_before  # the trigger did not fire

        token = access_token(api, stack.password)
        assert api_post(api, token, "resume", {"identifier": "throttled"}) == {"changed": True}
        time.sleep(3)
        component(stack.process.pid, "triggerer").kill()
        first = completed_once(conn, "first", 100)
        claims = sorted(claimed for claimed, _, _ in first)
        assert claims[-1] - claims[0] >= 9.0
        assert len({worker for _, _, worker in first}) >= 2  # over several runs

        api_post(api, token, "rate_limits", {"identifier": "throttled", "rate_limit": "5/s"})
        limits = conn.execute(
            "select declared, override, rate_limit from worker.rate_limits where identifier = 'throttled'"
        )
        assert limits.fetchall() == [("10/s", "5/s", "5/s")]
        add_round(conn, "second", 50)
        second = sorted(claimed for claimed, _, _ in completed_once(conn, "second", 50))
        assert second[-1] - second[0] >= 9.0
        actions = conn.execute(
            "select action from worker.job_actions where detail->>'identifier' = 'throttled' order by id"
        ).fetchall()
        assert actions == [("resume",), ("rate_limit",)]

        assert key == f"cron:every_minute:{tick['ts']}" and tick["backfilled"] is False
        assert tick["ts"].endswith(":00+00:00")  # a whole minute, the tick's
        assert {run["run_type"] for run in dag_runs(api, stack.password, "crontab_every_minute")} == {
            "scheduled"
        }


def test_a_stale_max_active_runs_flag_does_not_hold_the_job_type_back(shared_stack):
    """Airflow's dag-processor writes a DAG's "at max_active_runs" flag from the runs it counted when
    its parse began: a parse while throttled had its two runs, ended after both finished, leaves the
    flag set with none active, and Airflow creates no run until the file is parsed again (600 s).
    The flag as such a parse leaves it: the scheduler mends it, and the job is done."""
    metadata = shared_stack.database.replace("/worker", "/airflow")
    with (
        psycopg.connect(shared_stack.database, autocommit=True) as conn,
        psycopg.connect(metadata, autocommit=True) as meta,
    ):
        active = "select count(*) from dag_run where dag_id = 'throttled' and state in ('queued', 'running')"
        wait_for(meta, active, None, lambda v: v[0][0] == 0, 120, "throttled to have no run")
        meta.execute("update dag set exceeds_max_non_backfill = true where dag_id = 'throttled'")
        add_round(conn, "stale flag", 1)
        completed_once(conn, "stale flag", 1)
        flag = meta.execute("select exceeds_max_non_backfill from dag where dag_id = 'throttled'")
        assert flag.fetchone() == (False,)
    log = (Path(shared_stack.env["WORKER_DATA_DIR"]) / "logs" / "scheduler.log").read_text()
    # None active, or the crontab's every-minute tick's run (one, under the two allowed).
    assert re.search(r"throttled was marked at max_active_runs \(2\) with [01] run\(s\) active; cleared", log)
