"""nightly_cleanup: every night at 03:00 Paris time, expired password reset tokens and carts left for
30 days go. A job type with a schedule: each tick enqueues one job and runs it."""

from __future__ import annotations

from utils import config

from jobqueue import job_type


@job_type("nightly_cleanup", schedule=config.cleanup_schedule(), timezone="Europe/Paris", tags=["acme"])
def nightly_cleanup(payload: dict, ctx) -> dict:
    tokens = ctx.connection.execute("delete from acme.password_resets where expires_at < now()").rowcount
    carts = ctx.connection.execute(
        "delete from acme.carts where updated_at < now() - interval '30 days'"
    ).rowcount
    ctx.log.info("removed %d expired token(s) and %d old cart(s)", tokens, carts)
    return {"tick": payload.get("_cron"), "expired_tokens": tokens, "old_carts": carts}
