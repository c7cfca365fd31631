"""The job queue inside Airflow's UI, in a real browser (Debian's Chromium, driven by Playwright).

Without a login every route of ours is refused. Logged in: Browse > Job queue renders the queue in
Airflow's shell (its sandboxed iframe), in light mode and, switched from Airflow's own menu, in dark
mode; a failed job is retried from it (confirmed in the page: the sandbox has no dialogs) and runs, and
send_email is paused and resumed from its row;
a link to a DAG run moves the shell. A run whose job failed for good ends failed, and its page has
a Jobs tab listing the job. Then Airflow's trigger form, built from send_email's params, sends an
e-mail as a job of its run. Screenshots go to test-results/screenshots/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from jobqueue import paths
from tests.e2e.browser import logged_in, trigger_from_the_form
from tests.e2e.conftest import API_TIMEOUT, access_token, dag_run, trigger_dag, wait_for

pytestmark = pytest.mark.e2e
SCREENSHOTS = paths.PROJECT_ROOT / "test-results" / "screenshots"

ROUTES = """
import json, re
from fastapi.routing import APIRoute
import jobs_plugin
[mounted] = jobs_plugin.JobsPlugin.fastapi_apps
found = []
for route in mounted["app"].routes:
    methods = sorted(route.methods) if isinstance(route, APIRoute) else ["GET"]
    path = re.sub(r"\\{[a-z_]+(:path)?\\}", "1", route.path)
    found += [(method, mounted["url_prefix"] + path) for method in methods]
print(json.dumps(found))
"""


def our_routes(env: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every route of the plugin's app, as mounted, path parameters filled in: read
    from the app itself, in a process of its own (importing Airflow's API warns, which pytest fails)."""
    result = subprocess.run(
        [sys.executable, "-c", ROUTES], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return [tuple(route) for route in json.loads(result.stdout.strip().splitlines()[-1])]


def refused_without_login(api: str, env: dict[str, str]) -> None:
    routes = our_routes(env)
    assert len(routes) >= 15, routes
    for method, route in [*routes, ("GET", "/job-queue/docs")]:
        data = b"{}" if method == "POST" else None
        request = urllib.request.Request(
            api + route, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=API_TIMEOUT)
        assert refused.value.code in (401, 403, 404), (method, route, refused.value.code)
        refused.value.close()
    described = urllib.request.Request(f"{api}/job-queue/openapi.json", headers={"Authorization": "Bearer x"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(described, timeout=API_TIMEOUT)
    assert refused.value.code == 403  # a bad token is refused too
    refused.value.close()


def failed_run(api: str, password: str) -> str:
    """A send_email run triggered with a payload its template cannot render: its job fails for good."""
    run_id = trigger_dag(api, password, "send_email", {"to": "tab@example.com", "template": "welcome"})[
        "dag_run_id"
    ]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = dag_run(api, password, "send_email", run_id)["state"]
        if state in ("success", "failed"):
            assert state == "failed"  # not green over a job that will never be sent
            return str(run_id)
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not end")


def colour_mode(page, mode: str) -> None:
    """Airflow's own switch: User > Appearance > Light Mode / Dark Mode."""
    page.get_by_role("button", name="User").click()
    page.get_by_role("menuitem", name="Appearance").click()
    page.get_by_role("menuitemradio", name=f"{mode} Mode").click()
    page.keyboard.press("Escape")
    from playwright.sync_api import expect

    expect(page.get_by_role("menuitemradio")).to_have_count(0)  # the menu gone, out of the screenshots


def background(frame) -> str:
    return str(frame.locator("body").evaluate("body => getComputedStyle(body).backgroundColor"))


def test_the_job_queue_inside_airflow_s_ui(shared_stack):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    api, password = shared_stack.api, shared_stack.stack.password
    with psycopg.connect(shared_stack.database, autocommit=True) as conn:
        payload = '{"to": "page@example.com", "template": "welcome", "context": {"name": "Page"}}'
        job_id = conn.execute(
            "select id from worker.add_job('send_email', %s, run_at => now() + interval '1 day')", [payload]
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "select worker.permanently_fail_jobs(%s, 'SMTP server unreachable: outage 42')", [[job_id]]
        )
        conn.execute("select worker.add_job('send_email', '{}', run_at => now() + interval '1 day')")
        conn.execute("select worker.pause_queue('customer:7')")

        refused_without_login(api, shared_stack.env)
        token = access_token(api, password)
        authorized = urllib.request.Request(
            f"{api}/job-queue/openapi.json", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(authorized, timeout=API_TIMEOUT) as response:
            assert "/api/jobs/actions" in json.load(response)["paths"]
        run_id = failed_run(api, password)

        with sync_playwright() as playwright:
            browser, page = logged_in(playwright, api, token)
            page.goto(f"{api}/")
            page.get_by_role("button", name="Browse").click()
            page.get_by_role("menuitem", name="Job queue").click()
            page.wait_for_url("**/plugin/job-queue**")
            sandbox = page.locator("iframe").get_attribute("sandbox") or ""
            assert "allow-popups" not in sandbox and "allow-top-navigation" not in sandbox
            queue = page.frame_locator("iframe")
            assert queue.locator("h1").inner_text() == "Job queue"
            assert queue.locator("#counts").inner_text().count("send_email") == 1
            assert "queue customer:7 paused" in queue.locator("#queue-controls").inner_text()
            colour_mode(page, "Light")
            assert background(queue) == "rgb(255, 255, 255)"
            page.screenshot(path=SCREENSHOTS / "job-queue-light.png")
            colour_mode(page, "Dark")
            page.wait_for_function(
                "() => document.querySelector('iframe').contentDocument"
                ".documentElement.classList.contains('dark')"
            )
            assert background(queue) == "rgb(0, 0, 0)"
            page.screenshot(path=SCREENSHOTS / "job-queue-dark.png")
            colour_mode(page, "Light")

            # Retry the failed job: the action is confirmed inside the page.
            queue.locator("input[name=error]").fill("outage 42")
            queue.locator("#filter").click()
            rows = queue.locator("#jobs tr[data-job]")
            expect(rows).to_have_count(1)  # once the filtered page has loaded
            assert "SMTP server unreachable: outage 42" in rows.first.inner_text()
            queue.locator(f"input[name=job][value='{job_id}']").check()
            queue.get_by_role("button", name="Retry now").click()
            queue.get_by_role("button", name="Confirm").click()
            queue.locator("#outcome:has-text('retry: 1 job(s) changed')").wait_for()

            # Pause and resume send_email from its row; the page reloads itself after each.
            row = queue.locator("#counts tr[data-identifier='send_email']")
            row.get_by_role("button", name="Pause").click()
            expect(row.locator(".paused")).to_have_count(1)
            paused = "select count(*) from worker.paused where kind = 'identifier' and name = 'send_email'"
            assert conn.execute(paused).fetchone() == (1,)
            row.get_by_role("button", name="Resume").click()
            expect(row.locator(".paused")).to_have_count(0)
            assert conn.execute(paused).fetchone() == (0,)

            # The failed run: a link of the queue moves the shell to the run's page, whose Jobs tab
            # lists the job.
            queue.locator("input[name=error]").fill("'name' is undefined")
            queue.locator("#filter").click()
            failed_row = queue.locator("#jobs tr[data-job]", has_text="'name' is undefined")
            expect(rows).to_have_count(1)
            failed_row.locator("a.airflow").click()
            page.wait_for_url(re.compile(r".*/dags/send_email/runs/manual__.*"))
            assert run_id in page.url.replace("%2B", "+").replace("%3A", ":")
            page.get_by_role("link", name="Jobs").first.click()
            page.wait_for_url("**/plugin/job-queue-run")
            tab = page.frame_locator("iframe")
            listed = tab.locator("#run-jobs tr[data-job]")
            listed.first.wait_for()
            assert "failed" in tab.locator("#run-counts").inner_text()
            assert "template 'welcome' (en): 'name' is undefined" in listed.first.inner_text()
            page.screenshot(path=SCREENSHOTS / "dag-run-jobs-tab.png")

            # Airflow's own trigger form, built from the DAG's params: the payload becomes a job.
            trigger_from_the_form(page, api, "send_email", {"to": "form@example.com"}, {"name": "Form"})
            browser.close()

        wait_for(
            conn,
            "select status from worker.jobs where id = %s",
            [job_id],
            lambda rows: rows == [("completed",)],
            120,
            f"job {job_id} done after the retry",
        )
        actor = conn.execute(
            "select actor from worker.job_actions where %s = any(job_ids)", [job_id]
        ).fetchone()
        assert actor == ("admin",)
        # The form's run may also take the retried job, waiting then: find the form's by payload.
        form_job = wait_for(
            conn,
            "select status, payload->>'template', last_worker like 'send_email/manual__%%' "
            "from worker.jobs where payload->>'to' = 'form@example.com'",
            [],
            lambda rows: bool(rows) and rows[0][0] in ("completed", "failed"),
            120,
            "the form's job to end",
        )
        assert form_job == [("completed", "welcome", True)]
    sent = shared_stack.smtp.messages
    assert [to for to, _ in sent if to == ["page@example.com"]] == [["page@example.com"]]
    assert [to for to, _ in sent if to == ["form@example.com"]] == [["form@example.com"]]
    for name in ("job-queue-light.png", "job-queue-dark.png", "dag-run-jobs-tab.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000, name
