"""Money as the accountants want it: Decimal throughout, rounded half up to the cent."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def euros(amount: Decimal, locale: str = "fr") -> str:
    """`1 234,50 €` in French, `€1,234.50` in English."""
    text = f"{cents(amount):,.2f}"
    if locale == "fr":
        return text.replace(",", "\u202f").replace(".", ",") + "\u00a0€"
    return "€" + text


def percent(rate: Decimal, locale: str = "fr") -> str:
    """`5,5 %` in French, `5.5%` in English."""
    text = f"{rate.normalize():f}"
    return text.replace(".", ",") + "\u00a0%" if locale == "fr" else text + "%"
