"""Acme's queries, on the connection a job gets (`ctx.connection`: psycopg 3, inside the job's
transaction, rows as tuples; numeric columns come back as Decimal, dates as date)."""

from __future__ import annotations

import dataclasses
import datetime
from decimal import Decimal
from typing import Any

from jobqueue import PermanentJobError


@dataclasses.dataclass(frozen=True)
class Customer:
    id: int
    email: str
    name: str
    locale: str


@dataclasses.dataclass(frozen=True)
class Line:
    description: str
    quantity: Decimal
    unit_price: Decimal
    vat_rate: Decimal


@dataclasses.dataclass(frozen=True)
class Order:
    id: int
    number: str
    ordered_on: datetime.date
    customer: Customer
    lines: list[Line]


def customer(conn: Any, customer_id: int) -> Customer:
    row = conn.execute(
        "select id, email, name, locale from acme.customers where id = %s", [customer_id]
    ).fetchone()
    if row is None:  # retrying cannot make it exist
        raise PermanentJobError(f"no customer {customer_id}")
    return Customer(*row)


def order(conn: Any, order_id: int) -> Order:
    row = conn.execute(
        "select id, number, ordered_on, customer_id from acme.orders where id = %s", [order_id]
    ).fetchone()
    if row is None:
        raise PermanentJobError(f"no order {order_id}")
    lines = conn.execute(
        "select description, quantity, unit_price, vat_rate from acme.order_lines "
        "where order_id = %s order by position",
        [order_id],
    ).fetchall()
    return Order(row[0], row[1], row[2], customer(conn, row[3]), [Line(*line) for line in lines])


def sales_by_day(
    conn: Any, first: datetime.date, after: datetime.date
) -> list[tuple[datetime.date, int, Decimal]]:
    """(day, orders, total before tax) for each day with sales in [first, after)."""
    return conn.execute(
        """
        select o.ordered_on, count(distinct o.id), sum(l.quantity * l.unit_price)
        from acme.orders o join acme.order_lines l on l.order_id = o.id
        where o.ordered_on >= %s and o.ordered_on < %s and o.status = 'paid'
        group by o.ordered_on order by o.ordered_on
        """,
        [first, after],
    ).fetchall()
