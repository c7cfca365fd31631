"""The acceptance project (examples/acme_worker, a team's graphile-worker app ported) without Airflow:
each of its job types run as one DAG run would (jobqueue.testing.run_once) against a real
PostgreSQL holding its own tables, then the product's generate_pdf and send_email on what it
enqueued: real WeasyPrint with the team's PDF templates, a real SMTP server, the team's e-mail
templates found before ours. tests/e2e/test_acme_worker_e2e.py drives the same project on the stack.
This is also how a team tests one job type quickly (README, "Your project")."""

from __future__ import annotations

import http.server
import importlib
import io
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdf
import pytest

from jobqueue import paths
from jobqueue.emails import rendering
from jobqueue.testing import run_once
from tests.helpers import add, all_jobs, job, load_dag_file, rows
from tests.partner import Partner
from tests.python.test_send_email import sending

PROJECT = paths.PROJECT_ROOT / "examples" / "acme_worker"
SEND_EMAIL = load_dag_file("send_email").send_email
GENERATE_PDF = load_dag_file("generate_pdf").generate_pdf


@pytest.fixture
def acme(conn, db_url, monkeypatch, document_storage, request) -> Any:
    """The job database with Acme's tables, WORKER_PROJECT set, and `acme.task(name)` its modules."""
    conn.execute((PROJECT / "schema.sql").read_text())
    monkeypatch.setenv("WORKER_PROJECT", str(PROJECT))
    monkeypatch.syspath_prepend(str(PROJECT))
    # One e-mail renderer per process, its template folders read at its first use: a test before
    # this one (test_send_email in the same process) made it without the team's folder, and one
    # after would find Acme's `welcome` in place of the product's.
    rendering.renderer.cache_clear()
    request.addfinalizer(rendering.renderer.cache_clear)

    class Acme:
        storage = document_storage

        @staticmethod
        def task(name: str) -> Any:
            return importlib.import_module(f"tasks.{name}")

    return Acme()


def mails(smtp) -> dict[str, Any]:
    """The messages the server took, by recipient."""
    return {recipients[0]: message for recipients, message in smtp.messages}


def deliver(db_url: str, smtp) -> None:
    """The product's send_email over what waits: render >> send."""
    run_once(SEND_EMAIL, db_url, prepared=sending(smtp))


def pdf_text(storage: Path, document: str) -> str:
    reader = pypdf.PdfReader(io.BytesIO((storage / document).read_bytes()))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_signup_chains_the_welcome_email_with_the_team_s_own_template(acme, conn, db_url, smtp):
    signup = acme.task("signup").signup
    add(conn, "signup", {"customer_id": 1})
    assert run_once(signup, db_url) == [{"jobs": 1, "completed": 1}]
    deliver(db_url, smtp)
    message = mails(smtp)["camille@example.com"]
    # The team's templates/email/welcome, found before the product's, in the customer's French.
    assert message["Subject"] == "Bienvenue chez Acme Thés, Camille Martin"
    assert "https://shop.example.com/login" in message.get_body(("plain",)).get_content()


def test_password_reset_stores_its_token_and_mails_it_in_the_customer_s_language(acme, conn, db_url, smtp):
    password_reset = acme.task("password_reset").password_reset
    asked = add(conn, "password_reset", {"customer_id": 2})["id"]
    unknown = add(conn, "password_reset", {"customer_id": 99})["id"]
    assert run_once(password_reset, db_url) == [{"jobs": 2, "completed": 1, "failed": 1, "failed_in_run": 1}]
    assert "token" not in json.dumps(job(conn, asked)["result"])  # a secret stays out of the history
    [token] = rows(conn, "select token from acme.password_resets where customer_id = 2")
    refused = job(conn, unknown)
    # Failed for good, at its first attempt (the job type allows three), and left no token behind.
    assert (refused["status"], refused["last_error"], refused["max_attempts"]) == (
        "failed", "no customer 99", 3,
    )  # fmt: skip
    deliver(db_url, smtp)
    message = mails(smtp)["jordan@example.com"]
    assert message["Subject"] == "Your Acme Teas password"
    assert f"https://shop.example.com/reset/{token['token']}" in message.get_body(("plain",)).get_content()


def test_an_invoice_from_sql_is_rendered_with_the_team_s_template_and_mailed(acme, conn, db_url, smtp):
    send_invoice = acme.task("invoices").send_invoice
    add(conn, "send_invoice", {"order_id": 1})
    assert run_once(send_invoice, db_url) == [{"jobs": 1, "completed": 1}]
    [document] = [each for each in all_jobs(conn) if each["identifier"] == "generate_pdf"]
    context = document["payload"]["context"]
    # numeric and date columns, as SQL handed them to the handler: exact strings and ISO dates.
    assert [line["quantity"] for line in context["lines"]] == ["1.00", "3.00"]
    assert (context["date"], context["total_exact"]) == ("2026-11-03", "82.26")

    assert run_once(GENERATE_PDF, db_url) == [{"jobs": 1, "handed_on": 1}, {"jobs": 1, "completed": 1}]
    done = job(conn, document["id"])
    text = pdf_text(acme.storage, done["result"]["document"])
    assert "Facture A-2026-0101" in text and "Théière en fonte" in text and "82,26" in text
    assert done["result"]["refused_urls"] == []  # its logo, its CSS and the shipped fonts: all served
    deliver(db_url, smtp)
    message = mails(smtp)["camille@example.com"]
    [attachment] = message.iter_attachments()
    assert attachment.get_filename() == "invoice-A-2026-0101.pdf"
    assert attachment.get_payload(decode=True).startswith(b"%PDF")


def test_the_monthly_report_sums_sql_into_a_pdf_for_finance(acme, conn, db_url, smtp):
    monthly_report = acme.task("reports").monthly_report
    # As the crontab line's tick of 1 December enqueues it: the month before.
    tick = {"ts": "2026-12-01T07:00:00+00:00", "backfilled": False}
    assert run_once(monthly_report, db_url, worker="monthly_report/scheduled__1", cron=tick) == [
        {"jobs": 1, "completed": 1}
    ]
    [report] = [each for each in all_jobs(conn) if each["identifier"] == "monthly_report"]
    assert report["result"]["month"] == "2026-11" and report["result"]["days"] == 3
    assert Decimal(report["result"]["total"]) == Decimal("206.65")
    run_once(GENERATE_PDF, db_url)
    [document] = [each for each in all_jobs(conn) if each["identifier"] == "generate_pdf"]
    text = pdf_text(acme.storage, job(conn, document["id"])["result"]["document"])
    assert "Ventes de 2026-11" in text and "206,65" in text and "2026-11-14" in text
    deliver(db_url, smtp)
    assert mails(smtp)["finance@example.com"]["Subject"] is not None


def test_the_nightly_cleanup_removes_what_expired(acme, conn, db_url):
    nightly_cleanup = acme.task("cleanup").nightly_cleanup
    assert nightly_cleanup.options.timezone == "Europe/Paris" and nightly_cleanup.options.schedule
    tick = {"ts": "2026-12-05T02:00:00+00:00", "backfilled": False}
    run_once(nightly_cleanup, db_url, worker="nightly_cleanup/scheduled__1", cron=tick)
    [done] = all_jobs(conn)
    assert done["result"] == {"tick": tick, "expired_tokens": 1, "old_carts": 1}
    assert rows(conn, "select count(*) as carts from acme.carts") == [{"carts": 1}]


@pytest.fixture
def partner(monkeypatch) -> Iterator[str]:
    Partner.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Partner)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("ACME_PARTNER_URL", url)
    yield url
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_partner_call_retries_what_the_partner_could_not_take(acme, conn, db_url, partner):
    sync_partner = acme.task("partner").sync_partner
    ids = {order: add(conn, "sync_partner", {"order_id": order})["id"] for order in (1, 2, 4)}
    assert run_once(sync_partner, db_url) == [{"jobs": 3, "retry": 2, "failed": 1, "failed_in_run": 1}]
    assert job(conn, ids[4])["last_error"] == (
        'the partner refused order A-2026-0104: 422 {"error": "unknown address"}'
    )
    busy = job(conn, ids[1])
    assert (busy["status"], busy["max_attempts"]) == ("scheduled", 5)  # the job type's cap, in the row
    assert "HTTPStatusError: Server error '503 Service Unavailable'" in busy["last_error"]
    conn.execute("update worker._jobs set run_at = now() where state = 'waiting'")
    assert run_once(sync_partner, db_url) == [{"jobs": 2, "completed": 2}]
    assert rows(conn, "select order_id, partner_ref from acme.partner_orders order by 1") == [
        {"order_id": 1, "partner_ref": "P-A-2026-0101"},
        {"order_id": 2, "partner_ref": "P-A-2026-0102"},
    ]
    assert sorted(Partner.calls) == sorted(["A-2026-0101"] * 2 + ["A-2026-0102"] * 2 + ["A-2026-0104"])


def test_every_job_type_of_the_project_is_a_dag_of_its_own(acme):
    found = {
        name: getattr(acme.task(name), attribute).dag.dag_id
        for name, attribute in [
            ("signup", "signup"), ("password_reset", "password_reset"), ("invoices", "send_invoice"),
            ("reports", "monthly_report"), ("cleanup", "nightly_cleanup"), ("partner", "sync_partner"),
        ]
    }  # fmt: skip
    assert sorted(found.values()) == sorted(
        ["signup", "password_reset", "send_invoice", "monthly_report", "nightly_cleanup", "sync_partner"]
    )
    # The project imports nothing of the product but its public API (`from jobqueue import ...`).
    for path in (PROJECT / "tasks").glob("*.py"):
        imported = [
            line
            for line in path.read_text().splitlines()
            if line.startswith(("from jobqueue", "import jobqueue"))
        ]
        assert all(line.startswith("from jobqueue import ") for line in imported), (path, imported)
