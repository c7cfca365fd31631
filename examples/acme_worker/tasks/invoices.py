"""send_invoice: an order was paid. Its invoice, from the order in Acme's tables, rendered with Acme's
own PDF template by the product's generate_pdf job and mailed to the customer with the PDF attached."""

from __future__ import annotations

import pydantic
from utils import db, money

from jobqueue import job_type


class SendInvoice(pydantic.BaseModel):
    order_id: int


@job_type("send_invoice", tags=["acme"])
def send_invoice(payload: SendInvoice, ctx) -> dict:
    order = db.order(ctx.connection, payload.order_id)
    customer = order.customer
    locale = customer.locale
    totals = [money.cents(line.quantity * line.unit_price) for line in order.lines]
    net = sum(totals, start=money.ZERO)
    vat = sum(
        (money.cents(total * line.vat_rate / 100) for total, line in zip(totals, order.lines, strict=True)),
        start=money.ZERO,
    )
    lines = [
        {
            "description": line.description,
            "quantity": line.quantity,  # a Decimal: exact in the payload ("3.00")
            "unit_price": money.euros(line.unit_price, locale),
            "vat_rate": money.percent(line.vat_rate, locale),
            "total": money.euros(total, locale),
        }
        for total, line in zip(totals, order.lines, strict=True)
    ]
    document = ctx.add_job(
        "generate_pdf",
        {
            "template": "acme_invoice",
            "locale": locale,
            "filename": f"invoice-{order.number}.pdf",
            "context": {
                "number": order.number,
                "date": order.ordered_on,  # a date: ISO 8601 in the payload
                "customer": {"name": customer.name, "email": customer.email},
                "lines": lines,
                "net": money.euros(net, locale),
                "vat": money.euros(vat, locale),
                "total": money.euros(net + vat, locale),
                "total_exact": net + vat,  # a Decimal, for whoever reads the job's payload
            },
            "email": {
                "to": customer.email,
                "context": {"name": customer.name, "document_name": f"invoice {order.number}"},
            },
        },
        job_key=f"invoice:{order.number}",
    )
    return {"document_job": document.id}
