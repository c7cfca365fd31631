"""signup: a customer signed up (the shop enqueues it in the transaction that creates the account):
the welcome e-mail, in the customer's language, with Acme's own `welcome` template."""

from __future__ import annotations

import pydantic
from utils import config, db

from jobqueue import job_type


class Signup(pydantic.BaseModel):
    customer_id: int


@job_type("signup", tags=["acme"])
def signup(payload: Signup, ctx) -> dict:
    customer = db.customer(ctx.connection, payload.customer_id)
    email = ctx.add_job(
        "send_email",
        {
            "to": customer.email,
            "template": "welcome",  # Acme's templates/email/welcome, found before the product's
            "locale": customer.locale,
            "context": {"name": customer.name, "login_url": f"{config.app_url()}/login"},
        },
        job_key=f"welcome:{customer.id}",  # one welcome per customer, however often this runs
    )
    return {"email_job": email.id}
