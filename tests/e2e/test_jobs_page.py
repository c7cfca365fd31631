"""The Jobs page in a real browser (headless Chromium, Debian's, driven by Playwright): logged in, it
filters by error text, retries a failed job, and the job runs. Without a login, nothing answers.
Then Airflow's trigger form, built from send_email's params, sends an e-mail as a job of its run."""

from __future__ import annotations

import urllib.error
import urllib.request

import psycopg
import pytest

from tests.e2e.conftest import access_token, wait_for

pytestmark = pytest.mark.e2e
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # Chromium looks Google's hosts up at start, even with the flags above: answer it here.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def test_retry_a_failed_job_from_the_page(stack_env, mail_stack):
    from playwright.sync_api import sync_playwright

    api = f"http://127.0.0.1:{stack_env['AIRFLOW_API_PORT']}"
    with psycopg.connect(mail_stack.database, autocommit=True) as conn:
        payload = '{"to": "page@example.com", "template": "welcome", "context": {"name": "Page"}}'
        job_id = conn.execute(
            "select id from worker.add_job('send_email', %s, run_at => now() + interval '1 day')", [payload]
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "select worker.permanently_fail_jobs(%s, 'SMTP server unreachable: outage 42')", [[job_id]]
        )
        conn.execute("select worker.add_job('send_email', '{}', run_at => now() + interval '1 day')")

        for route in (
            "/jobs/",
            "/jobs/api/jobs",
            f"/jobs/api/jobs/{job_id}",
            "/jobs/openapi.json",
            "/jobs/docs",
        ):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(api + route, timeout=10)
            assert refused.value.code in (401, 403, 404), route
            refused.value.close()
        described = urllib.request.Request(f"{api}/jobs/openapi.json", headers={"Authorization": "Bearer x"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(described, timeout=10)
        assert refused.value.code == 403  # a bad token is refused too
        refused.value.close()

        token = access_token(api, mail_stack.stack.password)
        authorized = urllib.request.Request(
            f"{api}/jobs/openapi.json", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(authorized, timeout=10) as response:
            assert "/api/jobs/actions" in response.read().decode()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            context = browser.new_context()
            context.add_cookies([{"name": "_token", "value": token, "url": api}])
            page = context.new_page()
            page.goto(f"{api}/jobs/")
            assert page.locator("#counts").inner_text().count("send_email") == 1
            page.fill("input[name=error]", "outage 42")
            page.click("#filter")
            rows = page.locator("#jobs tr[data-job]")
            assert rows.count() == 1
            assert "SMTP server unreachable: outage 42" in rows.first.inner_text()
            page.check(f"input[name=job][value='{job_id}']")
            page.on("dialog", lambda dialog: dialog.accept())
            with page.expect_navigation():  # the page reloads itself 0.3 s after the outcome shows
                page.click("text=Retry now")
                page.wait_for_selector("#outcome:has-text('retry: 1 job(s) changed')")
            page.goto(f"{api}/jobs/{job_id}")
            assert "retry" in page.locator("table").last.inner_text()  # the action is recorded

            # Airflow's own trigger form, built from the DAG's params: the payload becomes a job.
            page.goto(f"{api}/dags/send_email")
            page.get_by_test_id("trigger-dag-button").click()
            page.locator("#element_to").fill("form@example.com")
            page.locator("#element_context .monaco-editor").click()
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            page.keyboard.insert_text('{"name": "Form"}')
            page.get_by_test_id("trigger-dag-submit").click()
            page.wait_for_url("**/runs/manual__*", timeout=30_000)
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
    assert [to for to, _ in mail_stack.smtp.messages if to == ["page@example.com"]] == [["page@example.com"]]
    assert [to for to, _ in mail_stack.smtp.messages if to == ["form@example.com"]] == [["form@example.com"]]
