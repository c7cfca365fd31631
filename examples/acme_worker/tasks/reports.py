"""monthly_report: last month's sales, from SQL (dates and numeric sums through ctx.connection),
rendered as a PDF with Acme's template and mailed to finance. The crontab runs it on the 1st; the
shop may enqueue it for any month: {"month": "2026-11"}."""

from __future__ import annotations

import datetime

import pydantic
from utils import config, db, money

from jobqueue import CronTick, job_type


class MonthlyReport(pydantic.BaseModel):
    month: str | None = pydantic.Field(None, pattern=r"^\d{4}-\d{2}$")  # default: the month before
    cron: CronTick | None = pydantic.Field(None, alias="_cron")  # a crontab tick's


def month_of(payload: MonthlyReport) -> datetime.date:
    if payload.month is not None:
        return datetime.date.fromisoformat(payload.month + "-01")
    now = payload.cron.ts if payload.cron else datetime.datetime.now(datetime.UTC)
    first_of_this_month = now.date().replace(day=1)
    return (first_of_this_month - datetime.timedelta(days=1)).replace(day=1)


@job_type("monthly_report", tags=["acme"])
def monthly_report(payload: MonthlyReport, ctx) -> dict:
    first = month_of(payload)
    after = (first + datetime.timedelta(days=32)).replace(day=1)
    days = db.sales_by_day(ctx.connection, first, after)
    total = money.cents(sum((amount for _, _, amount in days), start=money.ZERO))
    label = first.strftime("%Y-%m")
    document = ctx.add_job(
        "generate_pdf",
        {
            "template": "acme_monthly_report",
            "locale": "fr",
            "filename": f"sales-{label}.pdf",
            "context": {
                "month": label,
                "days": [
                    {"day": day, "orders": orders, "amount": money.euros(amount)}
                    for day, orders, amount in days
                ],
                "orders": sum(orders for _, orders, _ in days),
                "total": money.euros(total),
                "total_exact": total,  # a Decimal: "389.75" in the payload
            },
            "email": {
                "to": config.finance_email(),
                "context": {"name": "Finance", "document_name": f"ventes {label}"},
            },
        },
        job_key=f"monthly_report:{label}",
    )
    return {"month": label, "days": len(days), "total": total, "document_job": document.id}
