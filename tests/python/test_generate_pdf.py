"""The generate_pdf job type (render_pdf >> enqueue_email) against a real PostgreSQL, real WeasyPrint
and the document storage."""

from __future__ import annotations

import copy
import io
import json

import pypdf

from jobqueue import paths
from tests.helpers import add, job, load_dag_file, rows, run_steps

EXAMPLE = json.loads((paths.INCLUDE_DIR / "examples" / "generate_pdf.json").read_text())
WORKER = "generate_pdf/manual__test"
GENERATE_PDF = load_dag_file("generate_pdf").generate_pdf


def run_chain(db_url: str, steps: range | None = None) -> list[dict]:
    return run_steps(GENERATE_PDF, db_url, WORKER, steps=steps)


def test_invoice_is_stored_and_mailed_through_send_email(conn, db_url, document_storage):
    document = add(conn, "generate_pdf", EXAMPLE)["id"]
    stored_only = add(conn, "generate_pdf", {k: v for k, v in EXAMPLE.items() if k != "email"})["id"]
    assert run_chain(db_url) == [{"jobs": 2, "handed_on": 2}, {"jobs": 2, "completed": 2}]

    done = job(conn, document)
    assert done["status"] == "completed"
    assert done["result"]["document"] == f"{document}/facture-2026-0042.pdf"
    pdf_bytes = (document_storage / done["result"]["document"]).read_bytes()
    assert "1 536,22 €" in pypdf.PdfReader(io.BytesIO(pdf_bytes)).pages[0].extract_text()

    email = job(conn, done["result"]["email_job"])
    assert (email["identifier"], email["status"], email["job_key"]) == (
        "send_email",
        "queued",
        f"document:{document}",
    )
    assert email["payload"]["attachments"] == [
        {"url": done["result"]["document"], "filename": "facture-2026-0042.pdf"}
    ]
    assert (email["payload"]["template"], email["payload"]["locale"]) == ("document_ready", "fr")

    alone = job(conn, stored_only)
    assert alone["status"] == "completed" and "email_job" not in alone["result"]
    assert rows(conn, "select * from worker._job_steps") == []


def test_bad_documents_fail_for_good_naming_the_problem(conn, db_url, document_storage):
    no_filename = add(conn, "generate_pdf", {k: v for k, v in EXAMPLE.items() if k != "filename"})["id"]
    broken = copy.deepcopy(EXAMPLE)
    del broken["context"]["lines"]
    no_lines = add(conn, "generate_pdf", broken)["id"]
    good = add(conn, "generate_pdf", EXAMPLE)["id"]
    run_chain(db_url)
    assert "payload.filename: Field required" in job(conn, no_filename)["last_error"]
    assert "payload.context.lines: Field required" in job(conn, no_lines)["last_error"]
    assert {job(conn, i)["status"] for i in (no_filename, no_lines)} == {"failed"}
    assert job(conn, good)["status"] == "completed"


def test_a_retried_step_renders_nothing_twice_and_enqueues_no_second_email(conn, db_url, document_storage):
    add(conn, "generate_pdf", EXAMPLE)
    assert run_chain(db_url, range(1)) == [{"jobs": 1, "handed_on": 1}]
    assert run_chain(db_url, range(1)) == [{"jobs": 0}]
    assert run_chain(db_url, range(1, 2)) == [{"jobs": 1, "completed": 1}]
    assert run_chain(db_url, range(1, 2)) == [{"jobs": 0}]
    assert conn.execute("select count(*) from worker.jobs where identifier = 'send_email'").fetchone() == (1,)


def test_each_document_is_handed_on_as_it_is_ready_and_a_storage_failure_retries_only_its_own(
    conn, db_url, document_storage, monkeypatch
):
    """One render process, so the documents come back in order: the first is stored and handed on
    before the second fails to be stored (a file where its folder goes), and then mailed."""
    monkeypatch.setenv("WORKER_PDF_WORKERS", "1")
    first = add(conn, "generate_pdf", EXAMPLE)["id"]
    second = add(conn, "generate_pdf", EXAMPLE)["id"]
    (document_storage / str(second)).write_text("in the way")
    assert run_chain(db_url) == [{"jobs": 2, "handed_on": 1, "retry": 1}, {"jobs": 1, "completed": 1}]
    done = job(conn, first)
    assert done["status"] == "completed" and job(conn, done["result"]["email_job"])["status"] == "queued"
    retried = job(conn, second)
    assert retried["status"] == "scheduled" and retried["attempts"] == 1
    assert "storing the document failed" in retried["last_error"]
    assert conn.execute("select count(*) from worker.jobs where identifier = 'send_email'").fetchone() == (1,)
