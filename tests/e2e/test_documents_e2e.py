"""Through the real stack: 200 invoices added by SQL at once end as e-mails carrying a valid PDF."""

from __future__ import annotations

import copy
import io
import json
import time

import psycopg
import pypdf
import pytest
from psycopg.types.json import Jsonb

from jobqueue import paths
from tests.e2e.conftest import RunningStack
from tests.smtp import SmtpServer

pytestmark = pytest.mark.e2e
EXAMPLE = json.loads((paths.INCLUDE_DIR / "examples" / "generate_pdf.json").read_text())
COUNT = 200


def invoice(n: int) -> dict:
    payload = copy.deepcopy(EXAMPLE)
    payload["context"]["number"] = f"2026-{n:04d}"
    payload["filename"] = f"facture-2026-{n:04d}.pdf"
    payload["email"]["to"] = f"client{n}@example.com"
    return payload


def test_invoices_become_emails_with_their_pdf(stack_env):
    smtp = SmtpServer()
    smtp.start()
    stack_env["AIRFLOW_CONN_SMTP_DEFAULT"] = smtp.airflow_uri
    database = f"postgresql://postgres@127.0.0.1:{stack_env['WORKER_PG_PORT']}/worker"
    stack = RunningStack(stack_env)
    try:
        with psycopg.connect(database, autocommit=True) as conn:
            specs = [{"identifier": "generate_pdf", "payload": invoice(n)} for n in range(COUNT)]
            conn.execute("select worker.add_jobs(%s)", [Jsonb(specs)])
            deadline = time.monotonic() + 300
            while len(smtp.messages) < COUNT and time.monotonic() < deadline:
                time.sleep(1)
            states: dict[str, int] = dict(
                conn.execute("select status, count(*) from worker.jobs group by 1").fetchall()
            )
    finally:
        stack.stop_with("sigint")
        smtp.stop()
    assert states == {"completed": 2 * COUNT}, states
    assert len(smtp.messages) == COUNT
    for recipients, message in smtp.messages:
        [attachment] = list(message.iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
        number = (attachment.get_filename() or "").removeprefix("facture-").removesuffix(".pdf")
        assert recipients == [f"client{int(number.split('-')[1])}@example.com"]
        page = pypdf.PdfReader(io.BytesIO(attachment.get_content())).pages[0].extract_text()
        assert f"Facture {number}" in page and "1 536,22 €" in page
