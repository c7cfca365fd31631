"""Acme's settings, read from the environment in this one place."""

from __future__ import annotations

import os


def app_url() -> str:
    """Where the shop is: links in e-mails point there."""
    return os.environ.get("ACME_APP_URL", "https://shop.example.com").rstrip("/")


def finance_email() -> str:
    """Who gets the monthly report."""
    return os.environ.get("ACME_FINANCE_EMAIL", "finance@example.com")


def partner_url() -> str | None:
    """The logistics partner's API; unset, orders are not synced (the job says so)."""
    return os.environ.get("ACME_PARTNER_URL") or None


def cleanup_schedule() -> str:
    """When the nightly clean-up runs, Paris time (a staging environment may run it more often)."""
    return os.environ.get("ACME_CLEANUP_SCHEDULE", "0 3 * * *")
