"""daily_digest: every day at 08:00, Paris time (07:00 UTC in winter, 06:00 UTC in summer), one
digest e-mail per recipient, enqueued as `send_email` jobs keyed by recipient and day.

A cron job is a DAG: `schedule` is a timetable with a cron expression and a time zone. `catchup` is
off: a paused or late DAG runs once for the latest day, not for every day missed (graphile-worker's
crontab without `?fill=`). To fill missed days (`?fill=2d`), run a backfill from the UI or
`airflow backfill create --dag-id daily_digest --from-date ... --to-date ...`; the job keys make
every day send at most once.
"""

from __future__ import annotations

import datetime

from airflow.sdk import Variable, dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from jobqueue import digest, runs


@dag(
    schedule=CronTriggerTimetable("0 8 * * *", timezone="Europe/Paris"),
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=runs.DEFAULT_ARGS,
    tags=["jobs", "schedule", "email"],
    doc_md=__doc__,
)
def daily_digest():
    @task
    def enqueue(**context) -> list[int]:
        day = context["logical_date"].in_timezone("Europe/Paris").date()
        recipients = digest.load_recipients(Variable.get("digest_recipients", default=None))
        with runs.job_database() as jobs:
            return digest.enqueue_digest(jobs, day, recipients)

    enqueue()


daily_digest()
