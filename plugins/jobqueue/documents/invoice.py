"""Invoices: money in Decimal, computed here, not in the template (VAT per rate, totals), and the
French formats the templates use."""

from __future__ import annotations

import datetime
import decimal
from typing import Annotated, Any

import pydantic

from jobqueue import payloads
from jobqueue.exceptions import PermanentJobError

Money = decimal.Decimal


class InvoiceLine(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    description: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=500)]
    # Bounded: an amount like 1e999999 would overflow the decimal context when multiplied.
    quantity: decimal.Decimal = pydantic.Field(gt=0, le=10**9)
    unit_price: decimal.Decimal = pydantic.Field(ge=0, le=10**12)
    vat_rate: decimal.Decimal = pydantic.Field(default=decimal.Decimal("20"), ge=0, le=100)


class Party(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str
    address: list[str] = []


class InvoiceContext(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    number: str
    date: datetime.date
    due_date: datetime.date | None = None
    seller: Party
    customer: Party
    lines: list[InvoiceLine] = pydantic.Field(min_length=1)
    notes: str | None = None


def _cents(value: decimal.Decimal) -> decimal.Decimal:
    return value.quantize(decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP)


def invoice_context(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        invoice = InvoiceContext.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise PermanentJobError(
            payloads.describe_validation_error(exc).replace("payload.", "payload.context.")
        ) from exc
    lines = []
    by_rate: dict[decimal.Decimal, decimal.Decimal] = {}
    for line in invoice.lines:
        net = _cents(line.quantity * line.unit_price)
        by_rate[line.vat_rate] = by_rate.get(line.vat_rate, decimal.Decimal(0)) + net
        lines.append({**line.model_dump(), "net": net})
    vat = {rate: _cents(base * rate / 100) for rate, base in sorted(by_rate.items())}
    total_net = sum(by_rate.values(), decimal.Decimal(0))
    total_vat = sum(vat.values(), decimal.Decimal(0))
    return {
        **invoice.model_dump(),
        "lines": lines,
        "vat": [{"rate": rate, "base": by_rate[rate], "amount": amount} for rate, amount in vat.items()],
        "total_net": total_net,
        "total_vat": total_vat,
        "total": total_net + total_vat,
    }


CONTEXT_BUILDERS = {"invoice": invoice_context}


def percent(value: decimal.Decimal) -> str:
    """French percentage: 5,5 %."""
    return f"{decimal.Decimal(value).normalize():f}".replace(".", ",") + " %"


def euros(value: decimal.Decimal) -> str:
    """French money format: 1 234,50 €."""
    text = f"{_cents(decimal.Decimal(value)):,.2f}".replace(",", " ").replace(".", ",")
    return f"{text} €"
