"""The queue you can see and steer, in a real browser on the shared stack (job type `watched` of its
team folder, tests/e2e/conftest.py): a job that failed twice for two reasons in two runs, then
completed in a third, shows its three attempts, and each failed run's Jobs tab lists it with that
run's error; the live view shows a job running and for how long, and cancels it from its row (the
job fails for good, "cancelled by admin"); an action on every job a
filter matches fails the three it shows, recorded once; the charts draw the identifier's minutes.
Light and dark screenshots of the live view and the charts go to test-results/screenshots/."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jobqueue import paths
from tests.e2e.browser import logged_in
from tests.e2e.conftest import access_token, wait_for
from tests.e2e.test_jobs_page import background, colour_mode

pytestmark = pytest.mark.e2e
SCREENSHOTS = paths.PROJECT_ROOT / "test-results" / "screenshots"


def add(conn, payload: dict, **options) -> int:
    spec = {"identifier": "watched", "payload": payload, **options}
    [(job_id,)] = conn.execute("select id from worker.add_jobs(%s)", [Jsonb([spec])]).fetchall()
    return int(job_id)


def in_both_modes(page, frame, name: str) -> None:
    """Screenshots of the shell in light and dark mode (Airflow's own switch), the frame following."""
    colour_mode(page, "Light")
    assert background(frame) == "rgb(255, 255, 255)"
    page.screenshot(path=SCREENSHOTS / f"{name}-light.png", full_page=True)
    colour_mode(page, "Dark")
    page.wait_for_function(
        "() => document.querySelector('iframe').contentDocument.documentElement.classList.contains('dark')"
    )
    assert background(frame) == "rgb(0, 0, 0)"
    page.screenshot(path=SCREENSHOTS / f"{name}-dark.png", full_page=True)
    colour_mode(page, "Light")


def open_in_shell(page, api: str, path: str):
    """Browse > Job queue, then one of its own links (the frame keeps Airflow's shell around it)."""
    page.goto(f"{api}/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Job queue").click()
    page.wait_for_url("**/plugin/job-queue**")
    frame = page.frame_locator("iframe")
    frame.locator(f"nav.views a[href$='{path}']").click()
    return frame


def test_attempts_runs_live_view_cancel_filter_actions_and_charts(shared_stack):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    api, password = shared_stack.api, shared_stack.stack.password
    with psycopg.connect(shared_stack.database, autocommit=True) as conn:
        flaky = add(conn, {"flaky": True})
        wait_for(
            conn, "select status from worker.jobs where id = %s", [flaky],
            lambda rows: rows == [("completed",)], 180, "the flaky job completed after two failures",
        )  # fmt: skip
        [(first_run,), (second_run,)] = conn.execute(
            "select worker_id from worker._job_attempts where job_id = %s order by attempt", [flaky]
        ).fetchall()
        stuck = add(conn, {"stuck": True})
        wait_for(
            conn, "select status from worker.jobs where id = %s", [stuck],
            lambda rows: rows == [("running",)], 120, "the stuck job running",
        )  # fmt: skip
        later = [add(conn, {"n": n}, run_at="2999-01-01T00:00:00Z") for n in range(3)]

        token = access_token(api, password)
        with sync_playwright() as playwright:
            browser, page = logged_in(playwright, api, token)

            # Every attempt, on the job's page: two failures with their errors, then the completion.
            page.goto(f"{api}/job-queue/{flaky}")
            attempts = page.locator("#attempts tr[data-outcome]")
            expect(attempts).to_have_count(3)
            assert [row.get_attribute("data-outcome") for row in attempts.all()] == [
                "completed",
                "retry",
                "retry",
            ]
            assert "ValueError: upstream answered nonsense" in attempts.nth(1).inner_text()
            assert "ConnectionError: upstream went away" in attempts.nth(2).inner_text()
            page.screenshot(path=SCREENSHOTS / "job-attempts.png", full_page=True)

            # Each failed run's Jobs tab lists the job, with that run's error, though it completed later.
            for run, error in ((first_run, "upstream went away"), (second_run, "upstream answered nonsense")):
                dag_id, _, run_id = run.partition("/")
                page.goto(f"{api}/dags/{dag_id}/runs/{run_id}")
                page.get_by_role("link", name="Jobs").first.click()
                page.wait_for_url("**/plugin/job-queue-run")
                row = page.frame_locator("iframe").locator(f"#run-jobs tr[data-job='{flaky}']")
                expect(row).to_contain_text(error)
                expect(row).to_contain_text("completed")
            page.screenshot(path=SCREENSHOTS / "dag-run-jobs-tab-retried.png")

            # The live view: the stuck job runs, for a time that grows without a reload.
            live = open_in_shell(page, api, "/live")
            running = live.locator(f"#running tr[data-job='{stuck}']")
            expect(running).to_have_count(1)
            before = running.locator(".running-for").inner_text()
            expect(running.locator(".running-for")).not_to_have_text(before, timeout=10_000)
            in_both_modes(page, live, "live-view")
            running.get_by_role("button", name="Cancel").click()
            live.get_by_role("button", name="Confirm").click()
            wait_for(
                conn, "select status, last_error from worker.jobs where id = %s", [stuck],
                lambda rows: rows == [("failed", "cancelled by admin")], 60, "the stuck job cancelled",
            )  # fmt: skip
            expect(live.locator(f"#running tr[data-job='{stuck}']")).to_have_count(0, timeout=15_000)

            # Every job the filter matches: the page counts them, and the action takes them all.
            page.goto(f"{api}/job-queue/?identifier=watched&status=scheduled")
            expect(page.locator("#matching-count")).to_have_text("3")
            page.get_by_role("button", name="Fail all 3").click()
            page.locator("#confirm-reason").fill("not needed after all")
            page.get_by_role("button", name="Confirm").click()
            page.locator("#outcome:has-text('fail: 3 job(s) changed')").wait_for()

            # The charts of the identifier's last hour.
            charts = open_in_shell(page, api, "/charts")
            charts.locator("select[name=identifier]").select_option("watched")
            charts.get_by_role("button", name="Show").click()
            expect(charts.locator("h1")).to_have_text("Charts: watched, last hour")
            expect(charts.locator("svg.chart")).to_have_count(3)
            assert re.search(r"\d+ completed", charts.locator("#totals").inner_text())
            assert charts.locator("#chart-throughput polyline.series-retried").count() == 1
            in_both_modes(page, charts, "charts")
            browser.close()

        statuses = conn.execute(
            "select status, last_error from worker.jobs where id = any(%s)", [later]
        ).fetchall()
        assert statuses == [("failed", "not needed after all")] * 3
        [(detail, job_ids)] = conn.execute(
            "select detail, job_ids from worker.job_actions where action = 'fail' and actor = 'admin'"
            " and detail ? 'filter'"
        ).fetchall()
        assert detail["filter"] == {"identifier": "watched", "status": "scheduled"}
        assert sorted(job_ids) == sorted(later)
    for name in ("job-attempts", "live-view-light", "live-view-dark", "charts-light", "charts-dark"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000, name
