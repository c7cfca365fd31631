"""Documents: what the PDF says (read back with pypdf), how it breaks across pages, and what it may
never fetch. Each threat test is named after the threat it stops."""

from __future__ import annotations

import copy
import http.server
import io
import json
import os
import subprocess
import sys
import threading
from typing import Any

import pypdf
import pytest

from jobqueue import paths, settings
from jobqueue.documents import model, pool, rendering
from jobqueue.exceptions import PermanentJobError
from jobqueue.outcomes import Failed

EXAMPLE = json.loads((paths.INCLUDE_DIR / "examples" / "generate_pdf.json").read_text())
LIMITS = settings.PdfLimits(timeout_seconds=60, max_bytes=20_000_000, max_html_bytes=5_000_000)
ROOTS = [paths.INCLUDE_DIR / "templates" / "pdf"]


def render(
    payload: dict, limits: settings.PdfLimits = LIMITS
) -> tuple[pypdf.PdfReader, rendering.RenderedPdf]:
    parsed = model.parse_payload(payload)
    rendered = rendering.render_pdf(rendering.render_html(parsed), limits, ROOTS)
    return pypdf.PdfReader(io.BytesIO(rendered.content)), rendered


def text(reader: pypdf.PdfReader) -> str:
    return "\n".join(page.extract_text() for page in reader.pages)


def raw_html(body: str) -> rendering.RenderedPdf:
    html = f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><p>visible</p>{body}</body></html>"
    return rendering.render_pdf(rendering.DocumentHtml(html, ROOTS[0] / "invoice"), LIMITS, ROOTS)


def fonts(reader: pypdf.PdfReader) -> set[str]:
    found = set()
    for page in reader.pages:
        resources: Any = page["/Resources"]
        for font in resources["/Font"].values():
            found.add(str(font.get_object()["/BaseFont"]).split("+", 1)[-1])
    return found


def test_invoice_totals_and_footer():
    reader, rendered = render(EXAMPLE)
    content = text(reader)
    assert len(reader.pages) == 1
    for expected in ["Facture 2026-0042", "Total HT", "1 285,98 €", "TVA 5,5 % sur 48,00 €", "2,64 €",
                     "TVA 20 % sur 1 237,98 €", "247,60 €", "Total TTC", "1 536,22 €", "Page 1 / 1",
                     "Exemple SAS · Facture 2026-0042"]:  # fmt: skip
        assert expected in content, expected
    assert rendered.refused_urls == []


def test_fonts_are_the_shipped_ones():
    reader, _ = render(EXAMPLE)
    assert fonts(reader) == {"Doc-Sans", "Doc-Sans-Bold"}


def test_table_breaks_across_pages_with_its_header_and_footer_on_each():
    payload = copy.deepcopy(EXAMPLE)
    payload["context"]["lines"] = payload["context"]["lines"] * 15
    reader, _ = render(payload)
    pages = len(reader.pages)
    assert pages >= 3
    for number, page in enumerate(reader.pages, start=1):
        page_text = page.extract_text()
        assert "Désignation" in page_text
        assert f"Page {number} / {pages}" in page_text
    assert "Total TTC" in reader.pages[-1].extract_text()


def test_letter_is_one_page():
    letter = {
        "template": "letter",
        "filename": "courrier.pdf",
        "context": {
            "sender": {"name": "Exemple SAS", "address": ["12 rue des Lilas", "75011 Paris"]},
            "recipient": {"name": "Ana Martin", "address": ["3 place du Marché", "69002 Lyon"]},
            "place": "Paris",
            "date": "28 novembre 2026",
            "subject": "Votre abonnement",
            "paragraphs": ["Madame,", "Nous vous confirmons le renouvellement de votre abonnement."],
            "signature": "Le service client",
        },
    }
    reader, _ = render(letter)
    assert len(reader.pages) == 1
    assert "Objet : Votre abonnement" in text(reader)


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ({"lines": []}, "payload.context.number: Field required"),
        ({**EXAMPLE["context"], "lines": []}, "payload.context.lines: List should have at least 1 item"),
        (
            {**EXAMPLE["context"], "lines": [{"description": "x", "quantity": "-1", "unit_price": "1"}]},
            "payload.context.lines.0.quantity: Input should be greater than 0",
        ),
    ],
    ids=["no-number", "no-lines", "negative-quantity"],
)
def test_bad_invoice_context_names_the_field(context, problem):
    with pytest.raises(PermanentJobError, match=problem):
        render({**EXAMPLE, "context": context})


def test_context_html_is_escaped_so_it_cannot_add_tags():
    payload = copy.deepcopy(EXAMPLE)
    payload["context"]["notes"] = '<img src="file:///etc/passwd">'
    reader, rendered = render(payload)
    assert '<img src="file:///etc/passwd">' in text(reader)  # shown as text, not fetched
    assert rendered.refused_urls == []


def test_pdf_cannot_read_local_files():
    rendered = raw_html('<img src="file:///etc/passwd"><img src="file:///etc/hostname">')
    assert rendered.refused_urls == ["file:///etc/passwd", "file:///etc/hostname"]


def test_pdf_cannot_escape_the_template_folder():
    sneaky = (paths.INCLUDE_DIR / "templates" / "pdf").as_uri() + "/../../../../etc/passwd"
    rendered = raw_html(f'<img src="{sneaky}">')
    assert rendered.refused_urls == [sneaky]


def test_pdf_cannot_import_local_css():
    rendered = raw_html('<style>@import url("file:///etc/ssl/openssl.cnf");</style>')
    assert rendered.refused_urls == ["file:///etc/ssl/openssl.cnf"]


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        Recorder.requests.append(self.path)
        self.send_response(302)
        self.send_header("Location", "file:///etc/passwd")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    Recorder.requests = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pdf_cannot_reach_the_network_or_cloud_metadata(http_server):
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    rendered = raw_html(f'<link rel="stylesheet" href="{metadata}"><img src="{http_server}/logo.png">')
    assert rendered.refused_urls == [metadata, f"{http_server}/logo.png"]
    assert Recorder.requests == []  # nothing left the process


def test_pdf_does_not_follow_redirects(http_server):
    rendered = raw_html(f'<img src="{http_server}/redirect-to-passwd">')
    assert rendered.refused_urls == [f"{http_server}/redirect-to-passwd"]
    assert Recorder.requests == []


def test_data_urls_are_allowed():
    pixel = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
    assert raw_html(f'<img src="{pixel}">').refused_urls == []


def test_huge_document_hits_the_time_limit():
    payload = copy.deepcopy(EXAMPLE)
    payload["context"]["lines"] = payload["context"]["lines"] * 2000
    parsed = model.parse_payload(payload)
    limits = settings.PdfLimits(timeout_seconds=2, max_bytes=20_000_000, max_html_bytes=50_000_000)
    small = model.parse_payload(EXAMPLE)
    results = dict(
        pool.PdfRenderer(workers=2, limits=limits).render_each(
            {1: rendering.render_html(parsed), 2: rendering.render_html(small)}
        )
    )
    assert isinstance(results[1], Failed)  # the same data would take as long again
    assert "longer than the limit of 2 s" in results[1].error
    assert isinstance(results[2], rendering.RenderedPdf)  # the rest of the batch is unharmed


def test_huge_html_hits_the_input_limit():
    payload = copy.deepcopy(EXAMPLE)
    payload["context"]["lines"] = payload["context"]["lines"] * 2000
    limits = settings.PdfLimits(timeout_seconds=60, max_bytes=20_000_000, max_html_bytes=100_000)
    with pytest.raises(PermanentJobError, match="HTML is over the size limit of 100000 bytes"):
        render(payload, limits)


def test_big_pdf_hits_the_size_limit():
    limits = settings.PdfLimits(timeout_seconds=60, max_bytes=5_000, max_html_bytes=5_000_000)
    with pytest.raises(PermanentJobError, match="PDF is over the size limit of 5000 bytes"):
        render(EXAMPLE, limits)


def test_renderer_renders_a_batch_in_parallel():
    html = rendering.render_html(model.parse_payload(EXAMPLE))
    results = dict(pool.PdfRenderer(workers=2).render_each({n: html for n in range(4)}))
    assert sorted(results) == [0, 1, 2, 3]
    assert all(
        isinstance(r, rendering.RenderedPdf) and r.content.startswith(b"%PDF") for r in results.values()
    )


def test_a_batch_scratches_in_the_data_folder_and_leaves_nothing_there(monkeypatch, tmp_path):
    """Not in the system's /tmp: a task killed mid-render (the fault suite's kill -9) left a folder
    there at each run of the suite."""
    monkeypatch.setenv("WORKER_DATA_DIR", str(tmp_path))
    html = rendering.render_html(model.parse_payload(EXAMPLE))
    renders = pool.PdfRenderer(workers=1).render_each({1: html, 2: html})
    next(renders)
    assert [p.name[:6] for p in (tmp_path / "pdf-scratch").iterdir()] == ["batch-"]  # mid-batch
    assert [job_id for job_id, _ in renders] == [2]
    assert list((tmp_path / "pdf-scratch").iterdir()) == []


def test_a_workers_start_up_does_not_count_against_the_first_documents_limit(monkeypatch, tmp_path):
    """A machine busy enough that starting a worker (interpreter, WeasyPrint, fonts) takes longer
    than the limit must not fail a small document for good."""
    (tmp_path / "sitecustomize.py").write_text("import time; time.sleep(3)")  # a slow start
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    limits = settings.PdfLimits(timeout_seconds=2, max_bytes=20_000_000, max_html_bytes=5_000_000)
    small = model.parse_payload(EXAMPLE)
    results = dict(pool.PdfRenderer(workers=1, limits=limits).render_each({1: rendering.render_html(small)}))
    assert isinstance(results[1], rendering.RenderedPdf), results[1]


def test_a_render_slot_is_held_across_processes_and_freed_when_its_holder_is_killed(tmp_path):
    """Two runs rendering on one host share its slots: a render waits while another process holds
    its slot, and a holder killed by kill -9 does not keep it."""
    acquired = threading.Event()

    def render() -> None:
        with pool.RenderSlots(tmp_path, count=1).hold(2):  # slot 2 of one is slot 0
            acquired.set()

    command = [sys.executable, "-c", HOLD_SLOT, str(tmp_path / "slot-0")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            thread = threading.Thread(target=render, daemon=True)
            thread.start()
            assert not acquired.wait(1.0), "rendered while another process held the host's only slot"
        finally:
            holder.kill()
    assert acquired.wait(10.0), "the slot of a killed process stayed taken"
    thread.join()


HOLD_SLOT = """
import fcntl, sys, time
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""
