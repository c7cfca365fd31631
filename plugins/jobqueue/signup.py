"""The `user_signup` job: an example of chaining. It enqueues the welcome e-mail as a `send_email`
job through `ctx.add_job`, which the runtime commits with the signup job's completion, so a crash
can neither lose the e-mail nor enqueue it twice.

    payload = {"email": "ana@example.com", "name": "Ana", "locale": "fr"}
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from jobqueue.context import JobContext
from jobqueue.emails.model import Address, SafeText


class SignupPayload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    email: Address
    name: SafeText
    locale: Literal["en", "fr"] = "en"


def welcome_email(signup: SignupPayload) -> dict[str, Any]:
    return {
        "to": signup.email,
        "template": "welcome",
        "locale": signup.locale,
        "context": {"name": signup.name},
    }


def enqueue_welcome(signup: SignupPayload, ctx: JobContext) -> dict[str, int]:
    """Enqueues the signup's welcome e-mail; the job's result names the e-mail job."""
    welcome = ctx.add_job("send_email", welcome_email(signup), job_key=f"welcome:{ctx.job.id}")
    ctx.log.info("enqueued welcome e-mail job %d", welcome.id)
    return {"welcome_job": welcome.id}
