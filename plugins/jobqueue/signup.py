"""The `user_signup` job: an example of task chaining. It enqueues the welcome e-mail as a
`send_email` job with the Python API, in the same transaction that completes the signup job, so a
crash can neither lose the e-mail nor enqueue it twice.

    payload = {"email": "ana@example.com", "name": "Ana", "locale": "fr"}
"""

from __future__ import annotations

import logging
from typing import Literal

import pydantic

from jobqueue import mail, runs
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)
IDENTIFIER = "user_signup"


class SignupPayload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    email: mail.Address
    name: mail.SafeText
    locale: Literal["en", "fr"] = "en"


def enqueue_welcome(jobs: JobManager, worker: str) -> list[int]:
    """For each signup, enqueues its welcome e-mail; returns the ids of the e-mail jobs."""
    enqueued = []
    for job in runs.claim_batch(jobs, IDENTIFIER, worker):
        try:
            signup = SignupPayload.model_validate(job.payload)
        except pydantic.ValidationError as exc:
            jobs.fail_job(job.id, worker, mail.describe_validation_error(exc), retry=False)
            jobs.conn.commit()
            continue
        email = {
            "to": signup.email,
            "template": "welcome",
            "locale": signup.locale,
            "context": {"name": signup.name},
        }
        welcome = jobs.add_job("send_email", email, job_key=f"welcome:{job.id}")
        jobs.complete_jobs([job.id])
        jobs.conn.commit()
        log.info("signup job %d enqueued welcome e-mail job %d", job.id, welcome.id)
        enqueued.append(welcome.id)
    return enqueued
