"""The acceptance project (examples/acme_worker, a team's graphile-worker app ported) on one real stack,
started as `make run` starts it with the team's folder added (WORKER_PROJECT), through every door:

- SQL `add_job` and `add_jobs` with their options, as the shop's application enqueues;
- Airflow's REST API (a DAG run with a payload) and the job queue's, with an e-mail template the
  team added after the stack started;
- Airflow's trigger form, in a real browser, with that template typed in;
- real ticks of Airflow's scheduler: the team's every-minute `schedule=` (its nightly clean-up, run
  every minute here), a line added to its crontab file while the stack runs, and a backfill;

then checks the jobs, their results, the mails the SMTP server took (French and English, the team's
templates before ours) and the PDFs (the team's own templates). On the way: the jobs of a DAG run
that ended are given back by maintenance at once, and a failed attempt keeps its traceback and the
link to its task's log, which a browser follows to that try's log in Airflow's UI. The job
database is an outside server (WORKER_DATABASE_URL) holding the team's own tables, as a team's
database does.

On the same stack (one for this module: tests/e2e/team.py), who may do what with real logins:
`make run` kept the colleagues given in Airflow's own setting (ops: op, ana: user, vic: viewer)
beside its admin, and every route of the job queue answers each of them as Airflow's auth manager
says, a refused request changing nothing in the database; held against Airflow's own REST API,
which refuses the viewer a DAG run as we refuse it a job."""

from __future__ import annotations

import datetime
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pypdf
import pytest
from psycopg.types.json import Jsonb

from jobqueue import paths
from tests.e2e.browser import logged_in, trigger_from_the_form
from tests.e2e.conftest import API_TIMEOUT, dag_runs, trigger_dag, wait_for
from tests.e2e.team import COLLEAGUES, AcmeStack, acme_stack

pytestmark = pytest.mark.e2e
SCREENSHOTS = paths.PROJECT_ROOT / "test-results" / "screenshots"
IDENTIFIERS = [
    "signup",
    "password_reset",
    "send_invoice",
    "monthly_report",
    "nightly_cleanup",
    "sync_partner",
    "forget_cart",
    "revoke_reset_token",
]
JOB = "select status, attempts, max_attempts, last_error, result, payload from worker.jobs where id = %s"


@pytest.fixture(scope="module")
def acme(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeStack]:
    """The team's stack, for this module's tests (torn down after them, not at the session's end)."""
    with acme_stack(server_url, tmp_path_factory.mktemp("acme")) as running:
        yield running


def enqueue_by_sql(conn: psycopg.Connection) -> dict[str, int]:
    """What the shop's application does, in SQL, with add_job's and add_jobs' options."""

    def add(sql: str, *params: Any) -> int:
        return int(conn.execute(sql, params).fetchone()[0])  # type: ignore[index]

    ids = {
        "signup": add(
            "select id from worker.add_job('signup', %s, job_key => 'signup:1', priority => -5)",
            Jsonb({"customer_id": 1}),
        ),
        "reset_en": add("select id from worker.add_job('password_reset', %s)", Jsonb({"customer_id": 2})),
        "invoice": add(
            "select id from worker.add_job('send_invoice', %s, queue_name => 'invoices',"
            " run_at => now() + interval '3 seconds')",
            Jsonb({"order_id": 1}),
        ),
        "report": add(
            "select id from worker.add_job('monthly_report', %s, max_attempts => 2)",
            Jsonb({"month": "2026-11"}),
        ),
    }
    # The job group's two chores (a token of its own: the nightly cleanup removes expired ones).
    conn.execute(
        "insert into acme.password_resets (token, customer_id, expires_at)"
        " values ('revoke-me', 3, now() + interval '1 hour')"
    )
    ids["cart"] = add("select id from worker.add_job('forget_cart', %s)", Jsonb({"cart_id": 2}))
    ids["token"] = add(
        "select id from worker.add_job('revoke_reset_token', %s)", Jsonb({"token": "revoke-me"})
    )
    specs = [{"identifier": "sync_partner", "payload": {"order_id": order}} for order in (1, 2, 4)]
    partner_ids = [row[0] for row in conn.execute("select id from worker.add_jobs(%s)", [Jsonb(specs)])]
    ids.update(zip(["partner_1", "partner_2", "partner_4"], partner_ids, strict=True))
    return ids


def add_template_after_start(project: Path) -> None:
    """A new e-mail template of the team's, written while the stack runs."""
    for locale, subject, body in [
        ("en", "Your order {{ number }} is on its way", "Hello {{ name }}, order {{ number }} left today."),
        (
            "fr",
            "Votre commande {{ number }} est en route",
            "Bonjour {{ name }}, la commande {{ number }} est partie.",
        ),
    ]:
        folder = project / "templates" / "email" / "acme_order_shipped" / locale
        folder.mkdir(parents=True)
        (folder / "subject.txt").write_text(subject + "\n")
        (folder / "body.txt").write_text(body + "\n")
        (folder / "body.html").write_text(f"<p>{body}</p>\n")


def trigger_with_the_form(acme: AcmeStack) -> None:
    """Airflow's own trigger form for send_email, the new template typed into its field."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, page = logged_in(playwright, acme.api, acme.token())
        fields = {"to": "form@example.com", "template": "acme_order_shipped"}
        trigger_from_the_form(page, acme.api, "send_email", fields, {"name": "Form", "number": "A-2026-0103"})
        browser.close()


def follow_a_failed_attempt_to_its_log(acme: AcmeStack, job_id: int) -> None:
    """The job's page lists its failed attempt with the traceback; its link opens that try's log in
    Airflow's UI, which holds the handler's error."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser, page = logged_in(playwright, acme.api, acme.token())
        page.goto(f"{acme.api}/job-queue/{job_id}")
        attempt = page.locator("table.attempts tr", has_text="503 Service Unavailable")
        expect(attempt).to_have_count(1)
        assert "raise_for_status" in attempt.locator("pre.traceback").text_content()
        page.screenshot(path=SCREENSHOTS / "job-failed-attempt.png", full_page=True)
        attempt.locator("a.task-log").click()
        page.wait_for_url("**/dags/sync_partner/runs/**/tasks/sync_partner?try_number=1")
        expect(page.get_by_text("503 Service Unavailable").first).to_be_visible(timeout=30_000)
        page.screenshot(path=SCREENSHOTS / "job-failed-attempt-log.png")
        browser.close()


def ended(conn: psycopg.Connection, job_id: int, timeout: float = 180) -> tuple:
    [row] = wait_for(
        conn, JOB, [job_id], lambda rows: bool(rows) and rows[0][0] in ("completed", "failed"), timeout,
        f"job {job_id} to end",
    )  # fmt: skip
    return tuple(row)


def pdf_text(acme: AcmeStack, document: str) -> str:
    reader = pypdf.PdfReader(io.BytesIO((acme.documents / document).read_bytes()))
    return "\n".join(page.extract_text() for page in reader.pages)


def runs(acme: AcmeStack, dag_id: str) -> list[dict]:
    return dag_runs(acme.api, acme.stack.password, dag_id)


def edit_the_crontab(acme: AcmeStack) -> None:
    """A line added to the team's crontab while the stack runs is a DAG within a minute."""
    with (acme.project / "crontab").open("a") as crontab:
        crontab.write('* * * * * signup ?id=signup_every_minute {"customer_id": 3}\n')
    deadline = time.monotonic() + 60
    while True:
        dags = [dag["dag_id"] for dag in acme.call("GET", "/api/v2/dags?limit=100")["dags"]]
        if "crontab_signup_every_minute" in dags:
            return
        assert time.monotonic() < deadline, "the crontab's new line is no DAG a minute after the edit"
        time.sleep(2)


def backfill_last_night(acme: AcmeStack) -> datetime.datetime:
    """A backfill of the nightly clean-up over three minutes of the night before."""
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    night = yesterday.replace(hour=1, minute=0, second=0, microsecond=0)
    body = {
        "dag_id": "nightly_cleanup", "from_date": night.isoformat(),
        "to_date": (night + datetime.timedelta(minutes=2)).isoformat(), "max_active_runs": 1,
    }  # fmt: skip
    acme.call("POST", "/api/v2/backfills", body)
    return night


def check_the_sql_jobs(acme: AcmeStack, conn: psycopg.Connection, ids: dict[str, int]) -> None:
    assert ended(conn, ids["signup"])[:2] == ("completed", 1)
    status, _, max_attempts, *_ = ended(conn, ids["reset_en"])
    assert (status, max_attempts) == ("completed", 3)  # the job type's cap, in the row
    invoice = ended(conn, ids["invoice"])
    document = ended(conn, invoice[4]["document_job"])
    assert document[5]["context"]["lines"][1]["quantity"] == "3.00"  # numeric, from SQL, exact
    assert "Facture A-2026-0101" in pdf_text(acme, document[4]["document"])
    assert ended(conn, document[4]["email_job"])[0] == "completed"  # sent, with the PDF
    report = ended(conn, ids["report"])
    assert (report[0], report[4]["month"], report[4]["total"]) == ("completed", "2026-11", "206.65")
    sales = ended(conn, report[4]["document_job"])
    assert "Ventes de 2026-11" in pdf_text(acme, sales[4]["document"])
    assert ended(conn, sales[4]["email_job"])[0] == "completed"


def check_the_housekeeping_group(conn: psycopg.Connection, ids: dict[str, int]) -> None:
    """The two chores of the job group, enqueued by SQL as any job: done by runs of the group's DAG."""
    forgot, revoked = ended(conn, ids["cart"]), ended(conn, ids["token"])
    assert (forgot[0], forgot[4]) == ("completed", {"cart_id": 2, "deleted": 1})
    assert (revoked[0], revoked[4]) == ("completed", {"deleted": 1})
    runs = "select last_worker from worker.jobs where id = any(%s)"
    assert {row[0].partition("/")[0] for row in conn.execute(runs, [[ids["cart"], ids["token"]]])} == {
        "acme_housekeeping"
    }


def check_the_partner_calls(acme: AcmeStack, conn: psycopg.Connection, ids: dict[str, int]) -> None:
    """The partner's busy answer retried, its traceback and task log kept; its refusal final."""
    assert ended(conn, ids["partner_1"])[:2] == ("completed", 2)
    done, busy = acme.call("GET", f"/job-queue/api/jobs/{ids['partner_1']}/attempts")
    assert (done["attempt"], done["outcome"], done["error"]) == (2, "completed", None)
    assert (busy["attempt"], busy["outcome"], busy["task_id"], busy["try_number"]) == (
        1, "retry", "sync_partner", 1,
    )  # fmt: skip
    assert "raise_for_status" in busy["traceback"] and "503 Service Unavailable" in busy["error"]
    assert busy["task_log_url"].startswith("/dags/sync_partner/runs/")
    assert busy["task_log_url"].endswith("/tasks/sync_partner?try_number=1")
    refused = ended(conn, ids["partner_4"])
    assert refused[:3] == ("failed", 5, 5) and "422" in refused[3]


def scheduled_runs_done(acme: AcmeStack, dag_id: str, at_least: int) -> list[dict]:
    """The DAG's runs that the scheduler started for a tick and that ended well, once there are enough."""
    deadline = time.monotonic() + 240
    while True:
        done = [r for r in runs(acme, dag_id) if (r["run_type"], r["state"]) == ("scheduled", "success")]
        if len(done) >= at_least:
            return done
        assert time.monotonic() < deadline, f"{at_least} scheduled runs of {dag_id} did not end: {done}"
        time.sleep(2)


def check_the_ticks(acme: AcmeStack, conn: psycopg.Connection, night: datetime.datetime) -> None:
    """One job per tick of the every-minute schedule, each scheduled run a tick; the backfill's
    ticks said so; the crontab's new line ticked too."""
    for scheduled in scheduled_runs_done(acme, "nightly_cleanup", at_least=2):
        tick = datetime.datetime.fromisoformat(scheduled["logical_date"])
        assert tick.second == 0  # a whole minute, the schedule's
        jobs = conn.execute(
            "select status, payload->'_cron'->>'backfilled' from worker.jobs where job_key = %s",
            [f"nightly_cleanup:cron:{tick.isoformat()}"],
        ).fetchall()
        assert jobs == [("completed", "false")], (scheduled["dag_run_id"], jobs)  # one job, the tick's
    backfilled = wait_for(
        conn,
        "select payload->'_cron'->>'ts' from worker.jobs where identifier = 'nightly_cleanup'"
        " and (payload->'_cron'->>'backfilled')::boolean and status = 'completed' order by 1",
        [], lambda rows: len(rows) >= 2, 180, "the backfill's ticks",
    )  # fmt: skip
    assert datetime.datetime.fromisoformat(backfilled[0][0]) == night
    # Whichever ran first removed the expired token and the old cart, once.
    cleaned = conn.execute(
        "select sum((result->>'expired_tokens')::int), sum((result->>'old_carts')::int) from worker.jobs"
        " where identifier = 'nightly_cleanup' and status = 'completed'"
    ).fetchone()
    assert cleaned == (1, 1)
    cron_signup = wait_for(
        conn,
        "select status, payload->>'customer_id' from worker.jobs where identifier = 'signup'"
        " and job_key like 'cron:signup_every_minute:%%'",
        [], lambda rows: bool(rows) and rows[0][0] == "completed", 150, "the new crontab line's job",
    )  # fmt: skip
    assert cron_signup[0][1] == "3"


def check_maintenance_releases_an_ended_run(acme: AcmeStack, conn: psycopg.Connection) -> None:
    [finished, *_] = [r for r in runs(acme, "signup") if r["state"] == "success"]
    holder = f"signup/{finished['dag_run_id']}"
    conn.execute("select worker.add_job('orphan_probe')")
    conn.execute("select worker.claim_jobs(array['orphan_probe'], %s)", [holder])
    trigger_dag(acme.api, acme.stack.password, "worker_maintenance")
    released = wait_for(
        conn, "select status, last_error from worker.jobs where identifier = 'orphan_probe'", [],
        lambda rows: rows[0][0] == "queued", 120, "maintenance to release the ended run's job",
    )  # fmt: skip
    assert (
        released[0][1] == f"released by maintenance: DAG run {holder} ended (success) while holding the job"
    )


def check_the_mails(acme: AcmeStack, conn: psycopg.Connection) -> None:
    """Each once, in each customer's language, with the team's templates and documents."""
    wait_for(
        conn, "select 1", [], lambda _: len(acme.mails_to("form@example.com")) == 1, 120, "the form's mail"
    )
    people = ("camille@example.com", "jordan@example.com", "ines@example.com", "form@example.com")
    subjects = {address: sorted(str(m["Subject"]) for m in acme.mails_to(address)) for address in people}
    assert "Bienvenue chez Acme Thés, Camille Martin" in subjects["camille@example.com"]
    assert "Your Acme Teas password" in subjects["jordan@example.com"]
    assert "Your order A-2026-0102 is on its way" in subjects["jordan@example.com"]
    assert "Votre mot de passe Acme Thés" in subjects["ines@example.com"]
    assert subjects["form@example.com"] == ["Your order A-2026-0103 is on its way"]
    [invoice] = [m for m in acme.mails_to("camille@example.com") if list(m.iter_attachments())]
    assert [a.get_filename() for a in invoice.iter_attachments()] == ["invoice-A-2026-0101.pdf"]
    reports = [a.get_filename() for m in acme.mails_to("finance@example.com") for a in m.iter_attachments()]
    assert "sales-2026-11.pdf" in reports
    message_ids = acme.smtp.message_ids()
    assert len(message_ids) == len(set(message_ids)), "a message went out twice"


def test_the_team_s_worker_app_runs_its_day_on_the_stack(acme):
    with psycopg.connect(acme.database, autocommit=True) as conn:
        watched = "select count(*) from worker._consumers where identifier = any(%s)"
        wait_for(conn, watched, [IDENTIFIERS], lambda v: v[0][0] == len(IDENTIFIERS), 180, "its triggers")

        ids = enqueue_by_sql(conn)
        # The REST APIs: a run with a payload (Airflow's), a job (ours), a template added since start.
        run = trigger_dag(acme.api, acme.stack.password, "password_reset", {"customer_id": 3})
        body = {"identifier": "send_invoice", "payload": {"order_id": 3}}
        queued = acme.call("POST", "/job-queue/api/jobs", body)
        add_template_after_start(acme.project)
        context = {"name": "Jordan", "number": "A-2026-0102"}
        shipped = {"to": "jordan@example.com", "template": "acme_order_shipped", "context": context}
        trigger_dag(acme.api, acme.stack.password, "send_email", shipped)  # not 400: offered, not imposed
        trigger_with_the_form(acme)
        edit_the_crontab(acme)
        night = backfill_last_night(acme)

        check_the_sql_jobs(acme, conn, ids)
        check_the_housekeeping_group(conn, ids)
        check_the_partner_calls(acme, conn, ids)
        follow_a_failed_attempt_to_its_log(acme, ids["partner_1"])
        key = f"run:password_reset/{run['dag_run_id']}"
        by_run = wait_for(conn, "select id from worker.jobs where job_key = %s", [key], bool, 120, "its job")
        assert ended(conn, by_run[0][0])[0] == "completed"
        assert ended(conn, queued["id"])[0] == "completed"
        check_the_ticks(acme, conn, night)
        check_maintenance_releases_an_ended_run(acme, conn)
        check_the_mails(acme, conn)
        # Nothing of the team's failed but the order the partner refused.
        failed = (
            "select identifier, payload from worker.jobs where status = 'failed' and identifier = any(%s)"
        )
        assert conn.execute(failed, [IDENTIFIERS]).fetchall() == [("sync_partner", {"order_id": 4})]


# -- who may do what, on the same stack: its colleagues in Airflow's own setting ----------------

FAR = "2999-01-01T00:00:00Z"  # the jobs of this test wait: none sends anything


def call(acme: Any, user: str, method: str, path: str, body: Any = None) -> tuple[int, str]:
    request = urllib.request.Request(
        acme.api + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {acme.token(user)}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def world(conn: psycopg.Connection) -> list[Any]:
    """What any action could change: the jobs, the actions kept, pauses, rate limits."""
    return [
        conn.execute("select * from worker.jobs order by id").fetchall(),
        conn.execute("select action, actor, detail from worker.job_actions order by id").fetchall(),
        conn.execute("select kind, name from worker.paused order by 1, 2").fetchall(),
        conn.execute("select identifier, override from worker.rate_limits order by 1").fetchall(),
    ]


def writes(job: int) -> list[tuple[str, str, Any]]:
    """Every route that changes something, with a body that would; the last ones put back what the
    first ones changed, so the session's other tests find the stack as it was."""
    return [
        (
            "POST",
            "/job-queue/api/jobs",
            {"identifier": "signup", "payload": {"customer_id": 1}, "run_at": FAR},
        ),
        ("POST", "/job-queue/api/jobs/actions", {"action": "reschedule", "ids": [job], "run_at": FAR}),
        ("POST", f"/job-queue/api/jobs/{job}/retry", None),
        ("POST", "/job-queue/api/jobs/actions", {"action": "reschedule", "ids": [job], "run_at": FAR}),
        ("POST", "/job-queue/api/jobs/actions", {"action": "fail", "ids": [job], "reason": "customer left"}),
        ("POST", "/job-queue/api/pause", {"identifier": "signup", "reason": "provider down"}),
        ("POST", "/job-queue/api/resume", {"identifier": "signup"}),
        ("POST", "/job-queue/api/pause", {"queue_name": "customer:7"}),
        ("POST", "/job-queue/api/resume", {"queue_name": "customer:7"}),
        ("POST", "/job-queue/api/rate_limits", {"identifier": "signup", "rate_limit": "1/h"}),
        ("POST", "/job-queue/api/rate_limits", {"identifier": "signup", "rate_limit": None}),
        ("POST", f"/job-queue/api/jobs/{job}/cancel", None),
    ]


def test_every_route_answers_each_colleague_as_airflow_s_auth_manager_says(acme):
    with psycopg.connect(acme.database, autocommit=True) as conn:
        wait_for(conn, "select count(*) from worker._consumers where identifier = 'signup'", [],
                 lambda v: v[0][0] == 1, 180, "signup's trigger")  # fmt: skip
        [(job,)] = conn.execute(
            "select id from worker.add_job('signup', '{\"customer_id\": 2}', run_at => %s)", [FAR]
        ).fetchall()
        reads = [
            "/job-queue/api/jobs", "/job-queue/api/counts", f"/job-queue/api/jobs/{job}",
            f"/job-queue/api/jobs/{job}/attempts", "/job-queue/api/controls", "/job-queue/",
            f"/job-queue/{job}", "/job-queue/api/runs/signup/manual__1", "/job-queue/runs/signup/manual__1",
            "/job-queue/openapi.json",
        ]  # fmt: skip
        for user in ["admin", *COLLEAGUES]:
            for path in reads:
                assert call(acme, user, "GET", path)[0] == 200, (user, path)

        # The viewer: every action refused, naming what, and nothing changed.
        before = world(conn)
        for method, path, body in writes(job):
            status, answer = call(acme, "vic", method, path, body)
            assert status == 403 and json.loads(answer)["detail"].startswith("vic may not"), (
                path,
                status,
                answer,
            )
        assert world(conn) == before
        page = call(acme, "vic", "GET", "/job-queue/")[1]
        assert "Retry now" not in page and 'data-control="pause"' not in page and 'name="job"' not in page
        # Airflow's own API says the same of a DAG run.
        assert call(acme, "vic", "POST", "/api/v2/dags/signup/dagRuns", {"logical_date": None})[0] == 403

        # The user and the op: every action taken, kept with who did it and why.
        for user in ("ana", "ops"):
            [(job,)] = conn.execute(
                "select id from worker.add_job('signup', '{\"customer_id\": 3}', run_at => %s)", [FAR]
            ).fetchall()
            page = call(acme, user, "GET", "/job-queue/")[1]
            assert "Retry now" in page and 'data-control="pause"' in page
            for method, path, body in writes(job):
                status, answer = call(acme, user, method, path, body)
                assert status in (200, 201), (user, path, status, answer)
            kept = conn.execute(
                "select action, detail->>'reason' from worker.job_actions where actor = %s order by id",
                [user],
            ).fetchall()
            assert ("fail", "customer left") in kept and ("pause", "provider down") in kept, kept
        assert conn.execute("select count(*) from worker.paused").fetchone() == (0,)
        assert conn.execute(
            "select count(*) from worker.rate_limits where override is not null"
        ).fetchone() == (0,)
