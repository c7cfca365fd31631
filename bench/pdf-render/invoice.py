"""The benchmark's invoice: deterministic data and its one Jinja2 rendering.

Both engines are given the HTML string that render_invoice_html() returns, so
the comparison is engine against engine, never template against template.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import jinja2

HERE = Path(__file__).resolve().parent
CENT = Decimal("0.01")
STANDARD_VAT = Decimal("0.20")
REDUCED_VAT = Decimal("0.055")

# (description, SKU, unit price, VAT rate); cycled to build N line items.
CATALOGUE = (
    ("Café arabica beans, 1 kg bag", "CAF-ARA-1K", "18.90", REDUCED_VAT),
    ("Espresso machine descaler (6 × 30 ml)", "MNT-DSC-6", "12.40", STANDARD_VAT),  # noqa: RUF001
    ("Barista milk jug, inox 600 ml", "ACC-JUG-600", "24.00", STANDARD_VAT),
    ("Crème brûlée ramekins, set of 4", "TBL-RAM-4", "19.95", STANDARD_VAT),
    ("Thé vert Sencha, loose leaf 250 g", "THE-SEN-250", "9.80", REDUCED_VAT),
    ("Grinder service visit (on site)", "SRV-GRD-01", "85.00", STANDARD_VAT),
    ("Paper filters n°4, box of 200", "FLT-N4-200", "4.35", STANDARD_VAT),
    ("Chocolat chaud, poudre 1 kg", "CHO-PDR-1K", "14.20", REDUCED_VAT),
    ("Tamper 58 mm, walnut handle", "ACC-TMP-58", "39.00", STANDARD_VAT),
    ("Sucre de canne, sticks ×500", "SUC-STK-500", "11.60", REDUCED_VAT),  # noqa: RUF001
    ("Knock box with rubber bar", "ACC-KNB-01", "27.50", STANDARD_VAT),
    ("Délivrance express (Zone 2)", "LOG-EXP-Z2", "15.00", STANDARD_VAT),
)


@dataclass(frozen=True)
class Party:
    name: str
    address: tuple[str, ...]
    vat_id: str
    contact: str = ""
    iban: str = ""


@dataclass(frozen=True)
class LineItem:
    description: str
    sku: str
    quantity: int
    unit_price: Decimal
    vat_rate: Decimal
    delivered: bool

    @property
    def net(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class Totals:
    net: Decimal
    vat_by_rate: tuple[tuple[Decimal, Decimal], ...]
    gross: Decimal


@dataclass(frozen=True)
class InvoiceMeta:
    number: str
    issued: str
    due: str
    order_ref: str


@dataclass(frozen=True)
class Invoice:
    meta: InvoiceMeta
    seller: Party
    customer: Party
    items: tuple[LineItem, ...]

    @property
    def totals(self) -> Totals:
        net = sum((item.net for item in self.items), Decimal("0.00"))
        rates = sorted({item.vat_rate for item in self.items}, reverse=True)
        vat_by_rate = tuple(
            (
                rate,
                (sum(i.net for i in self.items if i.vat_rate == rate) * rate).quantize(CENT, ROUND_HALF_UP),
            )
            for rate in rates
        )
        return Totals(net, vat_by_rate, net + sum(v for _, v in vat_by_rate))


def euro(amount: Decimal) -> str:
    return f"€{amount:,.2f}"


def percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f} %"


def build_invoice(n_items: int) -> Invoice:
    """A deterministic invoice with n_items lines (same input, same bytes)."""
    items = tuple(
        LineItem(
            description=CATALOGUE[i % len(CATALOGUE)][0],
            sku=f"{CATALOGUE[i % len(CATALOGUE)][1]}-{i + 1:04d}",
            quantity=1 + (i * 7) % 9,
            unit_price=Decimal(CATALOGUE[i % len(CATALOGUE)][2]),
            vat_rate=CATALOGUE[i % len(CATALOGUE)][3],
            delivered=i % 5 != 3,
        )
        for i in range(n_items)
    )
    return Invoice(
        meta=InvoiceMeta(
            number=f"INV-2026-{n_items:05d}",
            issued="2026-11-28",
            due="2026-12-28",
            order_ref="PO-77812",
        ),
        seller=Party(
            name="Brûlerie Éclair SAS",
            address=("12 rue de la Poste", "69002 Lyon", "France"),
            vat_id="FR40 123456789",
            iban="FR76 3000 6000 0112 3456 7890 189",
        ),
        customer=Party(
            name="Café Müller & Söhne GmbH",
            contact="Attn. Zoë Lefèvre, Accounts payable",
            address=("Königstraße 5", "70173 Stuttgart", "Germany"),
            vat_id="DE 811 907 980",
        ),
        items=items,
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["euro"] = euro
    env.filters["percent"] = percent
    return env


def render_invoice_html(invoice: Invoice) -> str:
    return (
        _environment()
        .get_template("invoice.html")
        .render(
            invoice=invoice.meta,
            seller=invoice.seller,
            customer=invoice.customer,
            items=invoice.items,
            totals=invoice.totals,
        )
    )
