"""Through the real stack: 200 invoices added by SQL at once end as e-mails carrying a valid PDF."""

from __future__ import annotations

import io

import psycopg
import pypdf
import pytest
from psycopg.types.json import Jsonb

from tests.e2e.conftest import wait_for
from tests.helpers import invoice

pytestmark = pytest.mark.e2e
COUNT = 200


def invoices_sent(smtp) -> list:
    return [(to, message) for to, message in smtp.messages if to[0].startswith("client")]


def test_invoices_become_emails_with_their_pdf(shared_stack):
    """On the shared stack, where only this test makes documents."""
    smtp = shared_stack.smtp
    with psycopg.connect(shared_stack.database, autocommit=True) as conn:
        specs = [
            {"identifier": "generate_pdf", "payload": invoice(n, f"client{n}@example.com")}
            for n in range(COUNT)
        ]
        conn.execute("select worker.add_jobs(%s)", [Jsonb(specs)])
        # The document jobs and the e-mail jobs they enqueued (other DAGs, such as the digest,
        # may send mail of their own meanwhile). A mail reaches the server before its job's
        # outcome is written: wait for both.
        documents = (
            "select status, count(*) from worker.jobs "
            "where identifier = 'generate_pdf' or job_key like 'document:%' group by 1"
        )
        rows = wait_for(
            conn, documents, None,
            lambda rows: dict(rows) == {"completed": 2 * COUNT} and len(invoices_sent(smtp)) >= COUNT,
            300, "every document and its e-mail completed, every mail received",
        )  # fmt: skip
        states = dict(rows)
    assert states == {"completed": 2 * COUNT}, states
    assert len(invoices_sent(smtp)) == COUNT
    for recipients, message in invoices_sent(smtp):
        [attachment] = list(message.iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
        number = (attachment.get_filename() or "").removeprefix("facture-").removesuffix(".pdf")
        n = int(number.split("-")[1])
        assert recipients == [f"client{n}@example.com"]
        # Each mail carries its own invoice (the title the template gives the PDF); the text of
        # one in ten is read too (84 ms of CPU each, the test process's largest share).
        pdf = pypdf.PdfReader(io.BytesIO(attachment.get_content()))
        assert pdf.metadata is not None and pdf.metadata.title == f"Facture {number}"
        if n % 10 == 0:
            page = pdf.pages[0].extract_text()
            assert f"Facture {number}" in page and "1 536,22 €" in page
