"""The daily digest: one `send_email` job per recipient and day. Its job key is the recipient and the
day, and a key already used (by a job in any status, done ones included) is never enqueued again, so
a rerun or a backfill of a day never sends twice."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from jobqueue import paths
from jobqueue.jobs import JobKeyMode
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)
RECIPIENTS_FILE = paths.INCLUDE_DIR / "examples" / "digest_recipients.json"


def load_recipients(raw: str | None = None) -> list[dict[str, Any]]:
    """From the Airflow Variable `digest_recipients` (a JSON list), else the shipped example."""
    return list(json.loads(raw if raw is not None else RECIPIENTS_FILE.read_text()))


def enqueue_digest(jobs: JobManager, day: datetime.date, recipients: list[dict[str, Any]]) -> list[int]:
    enqueued = []
    for recipient in recipients:
        key = f"digest:{recipient['email']}:{day.isoformat()}"
        if jobs.job_key_exists(key):
            log.info("digest %s was already enqueued", key)
            continue
        payload = {
            "to": recipient["email"],
            "template": "daily_digest",
            "locale": recipient.get("locale", "en"),
            "context": {"name": recipient["name"], "date": day.strftime("%d/%m/%Y")},
        }
        # unsafe_dedupe also covers two runs of one day racing each other.
        job = jobs.add_job("send_email", payload, job_key=key, job_key_mode=JobKeyMode.UNSAFE_DEDUPE)
        enqueued.append(job.id)
    log.info("digest of %s: %d e-mail job(s) enqueued", day, len(enqueued))
    return enqueued
