"""Bad input after enqueue: e-mail and document payloads, template contexts and REST bodies.

Every bad payload ends its job `failed` for good with a `last_error` naming the problem, and the good
jobs of the same batch are done all the same: no bad job crashes a step for the others. Every bad
REST body gets a 4xx naming the field, and writes nothing. Two sources: the corpus kept in
tests/corpus/payloads.json (every case, every run) and hypothesis mutating a valid payload.
"""

from __future__ import annotations

import copy
import io
import json
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import psycopg
import pypdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from jobqueue import storage
from jobqueue.documents import model as documents
from jobqueue.documents import rendering as document_rendering
from jobqueue.emails import mime, model, rendering
from jobqueue.exceptions import PermanentJobError
from tests.helpers import INVOICE, job, load_dag_file, run_steps, serve_as
from tests.python.test_send_email import SEND_EMAIL, sending

GENERATE_PDF = load_dag_file("generate_pdf").generate_pdf

CORPUS = json.loads((Path(__file__).parent.parent / "corpus" / "payloads.json").read_text())
WORKER = "send_email/manual__corpus"
DOC_WORKER = "generate_pdf/manual__corpus"
GOOD = {"to": "ana@example.com", "template": "welcome", "context": {"name": "Ana"}}


def test_the_corpus_is_big_enough():
    assert len(CORPUS["email"]) + len(CORPUS["documents"]) + len(CORPUS["rest"]) >= 150


def enqueue(conn: psycopg.Connection, identifier: str, cases: list[dict]) -> dict[int, dict]:
    """Adds each case's payload as a job; the few refused at enqueue (a payload that is not an object
    or array, a NUL character) must be refused with a named error, and count as handled."""
    added = {}
    for case in cases:
        try:
            row = conn.execute(
                "select id from worker.add_job(%s, %s)", [identifier, Jsonb(case["payload"])]
            ).fetchone()
        except psycopg.Error as exc:
            # Ours (WK...), or PostgreSQL's own refusal of a NUL character in jsonb, which names it.
            named = (exc.sqlstate or "").startswith("WK") and "payload" in str(exc)
            nul = exc.sqlstate == "22P05" and "\\u0000 cannot be converted" in str(exc)
            assert named or nul, (case["name"], str(exc))
            continue
        assert row is not None
        added[row[0]] = case
    return added


def check_outcomes(conn: psycopg.Connection, added: dict[int, dict]) -> list[str]:
    problems = []
    for job_id, case in added.items():
        row = job(conn, job_id)
        if case["error"] is None:
            if row["status"] != "completed":
                problems.append(f"{case['name']}: {row['status']} ({row['last_error']})")
        elif row["status"] != "failed":
            problems.append(f"{case['name']}: not failed for good: {row['status']}, {row['last_error']}")
        elif case["error"] not in (row["last_error"] or ""):
            problems.append(f"{case['name']}: error {row['last_error']!r} does not name {case['error']!r}")
    return problems


def test_email_corpus_in_one_batch(conn, db_url, smtp, document_storage):
    good = enqueue(
        conn, "send_email", [{"name": f"good {n}", "payload": GOOD, "error": None} for n in range(3)]
    )
    added = enqueue(conn, "send_email", CORPUS["email"])
    run_steps(SEND_EMAIL, db_url, WORKER, prepared=sending(smtp))
    assert check_outcomes(conn, {**good, **added}) == []
    html = {str(m["Message-ID"]): m.get_body(("html",)).get_content() for _, m in smtp.messages}
    for job_id, case in added.items():
        if case.get("html_contains"):
            assert case["html_contains"] in html[f"<job-{job_id}@localhost>"], case["name"]


def test_document_corpus_in_one_batch(conn, db_url, document_storage):
    good = {"name": "good", "payload": INVOICE, "error": None}
    added = enqueue(conn, "generate_pdf", [good, *CORPUS["documents"]])
    run_steps(GENERATE_PDF, db_url, DOC_WORKER)
    assert check_outcomes(conn, added) == []
    for job_id, case in added.items():
        if case.get("pdf_contains"):
            path = storage.resolve(job(conn, job_id)["result"]["document"])
            pages = pypdf.PdfReader(io.BytesIO(path.read_bytes())).pages
            text = "".join(page.extract_text() for page in pages).replace("\x00", "")
            assert case["pdf_contains"] in text, case["name"]


# --- Generated: any value in any field of a valid payload -----------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
NASTY_TEXT = st.sampled_from(["\r\n", "\n", "\r", "\x00", "<", "{{", "../", "@", " "]).flatmap(
    lambda piece: st.text(max_size=20).map(lambda text: text + piece + "Bcc: v@example.org")
)
VALUES = JSON | NASTY_TEXT | st.emails() | st.lists(st.emails(), max_size=3)
ALLOWED_HEADERS = {
    "from",
    "to",
    "cc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
}


def mutated(valid: dict, fields: list[str]) -> st.SearchStrategy[Any]:
    def put(field: str, value: Any) -> dict:
        payload = copy.deepcopy(valid)
        *parents, last = field.split(".")
        target = payload
        for parent in parents:
            target = target[parent]
        target[last] = value
        return payload

    return st.tuples(st.sampled_from(fields), VALUES).map(lambda pair: put(*pair)) | JSON


def refused_named(exc: PermanentJobError) -> None:
    message = str(exc)
    assert message and "\n" not in message
    assert message.startswith(("invalid payload: payload", "template ", "no template", "the subject")), (
        message
    )


def no_attachments(url: str) -> bytes:
    raise PermanentJobError(f"no attachment {url!r} in this test")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(GOOD, ["to", "template", "locale", "context", "context.name", "cc", "bcc", "reply_to",
                      "attachments", "sender"]))  # fmt: skip
def test_any_email_payload_fails_named_or_builds_a_message_with_only_its_own_headers(payload):
    try:
        parsed = model.parse_payload(payload)
        rendered = rendering.EmailRenderer().render(parsed)
        message = mime.build_message(
            1, mime.Envelope.of(parsed), rendered, "jobs@example.org", no_attachments
        )
        sent = message_from_bytes(bytes(message), policy=policy.SMTP)
    except PermanentJobError as exc:
        refused_named(exc)
        return
    assert {name.lower() for name in sent} <= ALLOWED_HEADERS
    # A long subject is folded, a non-ASCII one encoded in words (RFC 2047), and Python's email
    # package may drop a space between two such words: the rendered subject, whitespace aside.
    assert "".join(str(sent["Subject"]).split()) == "".join(rendered.subject.split())
    body = sent.get_body(("html",))
    assert body is not None and "<script" not in body.get_content().lower()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(INVOICE, ["template", "filename", "locale", "context", "email", "email.to", "context.number",
                         "context.date", "context.lines", "context.seller", "context.notes"]))  # fmt: skip
def test_any_document_payload_fails_named_or_renders_escaped_html(payload):
    try:
        parsed = documents.parse_payload(payload)
        html = document_rendering.render_html(parsed).html
    except PermanentJobError as exc:
        message = str(exc)
        assert message.startswith(
            ("invalid payload: payload", "no document template", "document template")
        ), message
        return
    assert "Bcc: v@example.org" not in html or "<script" not in html.lower()


# --- REST bodies -----------------------------------------------------------------------------------


@pytest.fixture
def api(db_url, monkeypatch):
    from fastapi.testclient import TestClient

    from jobqueue import web

    monkeypatch.setenv("AIRFLOW_CONN_WORKER_DB", db_url)
    app = web.create_app()
    serve_as(app, "admin")
    with TestClient(app, headers={"X-Requested-With": "jobs-page"}) as client:
        yield client


# Starlette's TestClient still runs on httpx (what Airflow ships) and says so.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_rest_corpus(api, conn):
    before = conn.execute("select count(*) from worker._jobs").fetchone()
    problems = []
    for case in CORPUS["rest"]:
        response = api.post(case["path"], json=case["body"])
        detail = json.dumps(response.json())
        if not 400 <= response.status_code < 500:
            problems.append(f"{case['name']}: HTTP {response.status_code} {detail[:200]}")
        elif case["names"] not in detail:
            problems.append(f"{case['name']}: {detail[:300]} does not name {case['names']!r}")
    assert problems == []
    assert conn.execute("select count(*) from worker._jobs").fetchone() == before
    assert api.post("/api/jobs", json={"identifier": "send_email", "payload": GOOD}).status_code == 201
