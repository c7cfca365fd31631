"""The shop's small chores, enqueued by the thousand on a busy day and each done in a millisecond:
forget a cart its customer emptied, revoke a password reset token once the password is changed.
A job group: one DAG run picks up the jobs of both, where a DAG run each (Airflow's price of a run,
about 0.2 CPU-s) would cost more than the work. Each keeps its own DAG, for a run by hand with its
form and for the rights on its jobs."""

from __future__ import annotations

import pydantic

from jobqueue import job_type


class Cart(pydantic.BaseModel):
    cart_id: int


class ResetToken(pydantic.BaseModel):
    token: str


@job_type("forget_cart", group="acme_housekeeping", tags=["acme"])
def forget_cart(payload: Cart, ctx) -> dict:
    deleted = ctx.connection.execute("delete from acme.carts where id = %s", [payload.cart_id]).rowcount
    return {"cart_id": payload.cart_id, "deleted": deleted}


@job_type("revoke_reset_token", group="acme_housekeeping", tags=["acme"])
def revoke_reset_token(payload: ResetToken, ctx) -> dict:
    deleted = ctx.connection.execute(
        "delete from acme.password_resets where token = %s", [payload.token]
    ).rowcount
    return {"deleted": deleted}
