"""password_reset: a customer asked to reset their password. A token valid two hours is stored and
mailed with Acme's own template (French or English). Both happen with the job's completion or not at
all: a failed attempt leaves no token and sends no e-mail."""

from __future__ import annotations

import secrets

import pydantic
from utils import config, db

from jobqueue import job_type

VALID_HOURS = 2


class PasswordReset(pydantic.BaseModel):
    customer_id: int


@job_type("password_reset", max_attempts=3, tags=["acme"])
def password_reset(payload: PasswordReset, ctx) -> dict:
    customer = db.customer(ctx.connection, payload.customer_id)
    token = secrets.token_urlsafe(24)
    ctx.connection.execute(
        "insert into acme.password_resets (token, customer_id, expires_at) "
        "values (%s, %s, now() + make_interval(hours => %s))",
        [token, customer.id, VALID_HOURS],
    )
    email = ctx.add_job(
        "send_email",
        {
            "to": customer.email,
            "template": "acme_password_reset",
            "locale": customer.locale,
            "context": {
                "name": customer.name,
                "reset_url": f"{config.app_url()}/reset/{token}",
                "valid_hours": VALID_HOURS,
            },
        },
    )
    return {"email_job": email.id}  # not the token: a job's result is shown to operators
