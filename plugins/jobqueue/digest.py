"""The daily digest: a cron job type. Each morning's tick is one `daily_digest` job, which enqueues one
`send_email` job per recipient, committed with its own completion. The e-mail's job key is the
recipient and the day, and a key already used (by a job in any status, done ones included) is
never enqueued again, so a rerun or a backfill of a day never sends twice."""

from __future__ import annotations

import datetime
import json
import zoneinfo
from typing import Any

from jobqueue import paths
from jobqueue.context import JobContext
from jobqueue.job_types import CronPayload
from jobqueue.jobs import JobKeyMode
from jobqueue.manager import JobManager

RECIPIENTS_FILE = paths.INCLUDE_DIR / "examples" / "digest_recipients.json"
SCHEDULE, TIMEZONE = "0 8 * * *", "Europe/Paris"


def load_recipients(raw: str | None = None) -> list[dict[str, Any]]:
    """From the Airflow Variable `digest_recipients` (a JSON list), else the shipped example."""
    return list(json.loads(raw if raw is not None else RECIPIENTS_FILE.read_text()))


def enqueue_digest(tick: CronPayload, ctx: JobContext) -> dict[str, Any]:
    from airflow.sdk import Variable

    day = tick.cron.ts.astimezone(zoneinfo.ZoneInfo(TIMEZONE)).date()
    recipients = load_recipients(Variable.get("digest_recipients", default=None))
    enqueued = [job_id for r in recipients if (job_id := enqueue_one(ctx, day, r)) is not None]
    ctx.log.info("digest of %s: %d e-mail job(s) enqueued", day, len(enqueued))
    return {"day": day.isoformat(), "email_jobs": enqueued}


def enqueue_one(ctx: JobContext, day: datetime.date, recipient: dict[str, Any]) -> int | None:
    key = f"digest:{recipient['email']}:{day.isoformat()}"
    if JobManager(ctx.connection).job_key_exists(key):
        ctx.log.info("digest %s was already enqueued", key)
        return None
    payload = {
        "to": recipient["email"],
        "template": "daily_digest",
        "locale": recipient.get("locale", "en"),
        "context": {"name": recipient["name"], "date": day.strftime("%d/%m/%Y")},
    }
    # unsafe_dedupe also covers two runs of one day racing each other.
    return ctx.add_job("send_email", payload, job_key=key, job_key_mode=JobKeyMode.UNSAFE_DEDUPE).id
