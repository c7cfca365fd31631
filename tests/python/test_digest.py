"""The daily digest: one e-mail per recipient and day, never twice, at 08:00 Paris time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from devtools import airflow_env
from jobqueue import paths
from tests.helpers import load_dag_file, rows, run_steps

RECIPIENTS = [
    {"email": "ana@example.com", "name": "Ana", "locale": "fr"},
    {"email": "ben@example.com", "name": "Ben"},
]
DAILY_DIGEST = load_dag_file("daily_digest").daily_digest
# 08:00 in Paris on 28 November 2026 (winter: UTC+1).
TICK = {"ts": "2026-11-28T07:00:00+00:00", "backfilled": False}


def emails(conn) -> list[dict]:
    return rows(conn, "select * from worker.jobs where identifier = 'send_email' order by id")


def test_each_tick_is_one_job_and_one_email_per_recipient_never_twice(conn, db_url, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_DIGEST_RECIPIENTS", json.dumps(RECIPIENTS))
    assert run_steps(DAILY_DIGEST, db_url, "daily_digest/scheduled__1", cron=TICK) == [
        {"jobs": 1, "completed": 1}
    ]
    [tick] = rows(conn, "select * from worker.jobs where identifier = 'daily_digest'")
    first = emails(conn)
    assert (tick["job_key"], tick["payload"]) == (f"daily_digest:cron:{TICK['ts']}", {"_cron": TICK})
    assert tick["result"] == {"day": "2026-11-28", "email_jobs": [e["id"] for e in first]}
    assert [e["job_key"] for e in first] == [
        "digest:ana@example.com:2026-11-28",
        "digest:ben@example.com:2026-11-28",
    ]
    assert first[0]["payload"] == {"to": "ana@example.com", "template": "daily_digest", "locale": "fr",
                                   "context": {"name": "Ana", "date": "28/11/2026"}}  # fmt: skip
    # A rerun of the tick adds no job.
    assert run_steps(DAILY_DIGEST, db_url, "daily_digest/scheduled__2", cron=TICK) == [{"jobs": 0}]
    # Even once the e-mails went out (a completed job frees its key), the same day sends nothing.
    rows(conn, "select worker.complete_jobs(%s)", [[e["id"] for e in first]])
    run_steps(DAILY_DIGEST, db_url, "daily_digest/manual__3", conf={"_cron": TICK})
    assert len(emails(conn)) == 2
    # The next day is another digest.
    next_day = {"ts": "2026-11-29T07:00:00+00:00", "backfilled": True}
    run_steps(DAILY_DIGEST, db_url, "daily_digest/backfill__4", cron=next_day)
    assert len(emails(conn)) == 4


NEXT_RUNS = """
import datetime, json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import TimeRestriction
# As the scheduler sees it: the DAG serialized by the DAG processor.
parsed = DagBag(dag_folder=sys.argv[1]).dags["daily_digest"]
dag = DagSerialization.from_dict(DagSerialization.to_dict(parsed))
runs, last = [], None
start = datetime.datetime(2027, 3, 26, 12, tzinfo=datetime.timezone.utc)
restriction = TimeRestriction(earliest=start, latest=None, catchup=True)
for _ in range(4):
    info = dag.timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    runs.append(info.run_after.isoformat())
    last = info.data_interval
print(json.dumps(runs))
"""


def test_runs_at_eight_in_paris_across_the_daylight_saving_change(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {"AIRFLOW_HOME": str(tmp_path), "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins")}
    env |= airflow_env.dag_parsing()
    result = subprocess.run(
        [sys.executable, "-c", NEXT_RUNS, str(paths.PROJECT_ROOT / "dags")],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    runs = result.stdout.strip().splitlines()[-1]
    # Clocks go forward on 28 March 2027: 08:00 is 07:00 UTC before, 06:00 UTC after.
    assert runs == (
        '["2027-03-27T07:00:00+00:00", "2027-03-28T06:00:00+00:00", '
        '"2027-03-29T06:00:00+00:00", "2027-03-30T06:00:00+00:00"]'
    )
