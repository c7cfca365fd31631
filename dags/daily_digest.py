"""daily_digest: every day at 08:00, Paris time (07:00 UTC in winter, 06:00 UTC in summer), one
digest e-mail per recipient, enqueued as `send_email` jobs keyed by recipient and day.

A cron job is a job type with a `schedule`: each tick enqueues one `daily_digest` job and runs it.
Ticks missed while paused are not run (graphile-worker's crontab without `?fill=`); to fill missed
days (`?fill=2d`), run a backfill from the UI or `airflow backfill create --dag-id daily_digest
--from-date ... --to-date ...`; the job keys make every day send at most once.
"""

from __future__ import annotations

from jobqueue import digest, job_type

daily_digest = job_type(
    "daily_digest",
    schedule=digest.SCHEDULE,
    timezone=digest.TIMEZONE,
    tags=["schedule", "email"],
    doc=__doc__,
)(digest.enqueue_digest)
