"""The daily digest: one e-mail per recipient and day, never twice, at 08:00 Paris time."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

from jobqueue import digest, paths
from jobqueue.manager import JobManager
from tests.helpers import rows

RECIPIENTS = [
    {"email": "ana@example.com", "name": "Ana", "locale": "fr"},
    {"email": "ben@example.com", "name": "Ben"},
]
DAY = datetime.date(2026, 11, 28)


def test_one_job_per_recipient_and_a_rerun_adds_none(conn):
    jobs = JobManager(conn)
    first = digest.enqueue_digest(jobs, DAY, RECIPIENTS)
    assert len(first) == 2
    assert digest.enqueue_digest(jobs, DAY, RECIPIENTS) == []
    # Even once the e-mails went out (a completed job frees its key), a rerun sends nothing.
    rows(conn, "select worker.complete_jobs(%s)", [first])
    assert digest.enqueue_digest(jobs, DAY, RECIPIENTS) == []
    # The next day is another digest.
    assert len(digest.enqueue_digest(jobs, DAY + datetime.timedelta(days=1), RECIPIENTS)) == 2
    keys = [r["job_key"] for r in rows(conn, "select job_key from worker.jobs order by id")]
    assert keys[:2] == ["digest:ana@example.com:2026-11-28", "digest:ben@example.com:2026-11-28"]
    payload = rows(conn, "select payload from worker.jobs order by id limit 1")[0]["payload"]
    assert payload == {"to": "ana@example.com", "template": "daily_digest", "locale": "fr",
                       "context": {"name": "Ana", "date": "28/11/2026"}}  # fmt: skip


NEXT_RUNS = """
import datetime, json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.timetables.base import DataInterval, TimeRestriction
dag = DagBag(dag_folder=sys.argv[1]).dags["daily_digest"]
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
