"""A real browser on the stack's UI: Debian's Chromium, driven by Playwright (which never downloads
one), logged in with the UI's own cookie."""

from __future__ import annotations

import json
from typing import Any

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # Chromium looks Google's hosts up at start, even with the flags above: answer it here.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def logged_in(playwright: Any, api: str, token: str) -> tuple[Any, Any]:
    """(the browser, a page logged in to the stack's UI)."""
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies([{"name": "_token", "value": token, "url": api}])
    return browser, context.new_page()


def trigger_from_the_form(page: Any, api: str, dag_id: str, fields: dict[str, str], context: dict) -> None:
    """Airflow's own trigger form of a DAG, made from its params: text fields typed in, the
    `context` field's JSON editor filled, then submitted; returns once the run's page shows."""
    page.goto(f"{api}/dags/{dag_id}")
    page.get_by_test_id("trigger-dag-button").click()
    for name, value in fields.items():
        page.locator(f"#element_{name}").fill(value)
    page.locator("#element_context .monaco-editor").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps(context))
    page.get_by_test_id("trigger-dag-submit").click()
    page.wait_for_url("**/runs/manual__*", timeout=30_000)
