"""sync_partner: a paid order goes to the logistics partner's API. Asynchronous (httpx): up to four
calls at once per run, no more than five a second across every run and host (the partner's quota),
five attempts with graphile-worker's back-off; a refusal (4xx) is final, the partner's own trouble
(5xx, a time-out) is retried."""

from __future__ import annotations

import httpx
import pydantic
from utils import config, db

from jobqueue import PermanentJobError, job_type


class SyncPartner(pydantic.BaseModel):
    order_id: int


@job_type("sync_partner", concurrency=4, rate_limit="5/s", max_attempts=5, time_limit=60, tags=["acme"])
async def sync_partner(payload: SyncPartner, ctx) -> dict:
    url = config.partner_url()
    if url is None:
        raise PermanentJobError("ACME_PARTNER_URL is not set: no partner to send orders to")
    order = db.order(ctx.connection, payload.order_id)
    body = {"reference": order.number, "ordered_on": order.ordered_on.isoformat(), "lines": len(order.lines)}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{url}/orders", json=body, headers={"Idempotency-Key": order.number})
    if 400 <= response.status_code < 500:
        raise PermanentJobError(
            f"the partner refused order {order.number}: {response.status_code} {response.text}"
        )
    response.raise_for_status()  # 5xx: retried
    reference = response.json()["id"]
    ctx.connection.execute(
        "insert into acme.partner_orders (order_id, partner_ref) values (%s, %s) "
        "on conflict (order_id) do update set partner_ref = excluded.partner_ref, synced_at = now()",
        [order.id, reference],
    )
    return {"partner_ref": reference}
