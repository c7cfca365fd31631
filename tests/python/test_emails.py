"""The e-mail job's payload, templates and message, without a server."""

from __future__ import annotations

import json
from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobqueue import paths
from jobqueue.emails import mime, model, rendering
from jobqueue.exceptions import PermanentJobError

VALID = {"to": "ana@example.com", "template": "welcome", "context": {"name": "Ana"}}


def render(payload: dict) -> rendering.RenderedEmail:
    return rendering.EmailRenderer().render(model.parse_payload(payload))


def build(payload: dict, job_id: int = 7, read=lambda url: b"") -> bytes:
    parsed = model.parse_payload(payload)
    rendered = rendering.EmailRenderer().render(parsed)
    return bytes(mime.build_message(job_id, mime.Envelope.of(parsed), rendered, "jobs@example.org", read))


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"template": "welcome"}, "payload.to: Field required"),
        ({"to": "ana@example.com"}, "payload.template: Field required"),
        ({"to": "not-an-address", "template": "welcome"}, "payload.to"),
        ({"to": [], "template": "welcome"}, "payload.to: Value error, must name at least one recipient"),
        (
            {"to": "a@example.com", "template": "../etc/passwd"},
            "payload.template: String should match pattern",
        ),
        (
            {"to": "a@example.com", "template": "welcome", "locale": "de"},
            "payload.locale: Input should be 'en' or 'fr'",
        ),
        ({"to": "a@example.com", "template": "welcome", "cc": ["x"]}, "payload.cc.0"),
        (
            {"to": "a@example.com", "template": "welcome", "sender": "x"},
            "payload.sender: Extra inputs are not permitted",
        ),
        (
            {"to": "a@example.com", "template": "welcome", "context": []},
            "payload.context: Input should be a valid dictionary",
        ),
        (
            {"to": "a@example.com", "template": "welcome", "attachments": [{"url": "a.pdf"}]},
            "payload.attachments.0.filename: Field required",
        ),
        ("just text", "payload: Input should be a valid dictionary"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_payload_names_the_field(payload, problem):
    with pytest.raises(PermanentJobError) as error:
        model.parse_payload(payload)
    assert str(error.value).startswith("invalid payload: ")
    assert problem in str(error.value)


@pytest.mark.parametrize(
    "payload",
    [
        {"to": "ana@example.com\r\nBcc: victim@example.com", "template": "welcome"},
        {"to": "ana@example.com", "template": "welcome", "reply_to": "a@example.com\nX: y"},
        {
            "to": "a@example.com",
            "template": "welcome",
            "attachments": [{"url": "a", "filename": "a.pdf\r\nX: y"}],
        },
    ],
    ids=["recipient", "reply-to", "attachment-filename"],
)
def test_header_injection_is_refused(payload):
    with pytest.raises(PermanentJobError, match="invalid payload"):
        model.parse_payload(payload)


def test_subject_injection_from_context_is_refused():
    with pytest.raises(PermanentJobError, match="line break"):
        render({**VALID, "context": {"name": "Ana\r\nBcc: victim@example.com"}})


def test_html_from_context_is_escaped():
    rendered = render({**VALID, "context": {"name": "<script>alert(1)</script>"}})
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<script>alert(1)</script>" in rendered.text  # plain text is not HTML


def test_missing_variable_is_named():
    with pytest.raises(PermanentJobError, match="'reset_url' is undefined"):
        render({"to": "a@example.com", "template": "password_reset", "context": {"name": "Ana"}})


def test_unknown_template_is_named():
    with pytest.raises(PermanentJobError, match=r"no template 'invoice_reminder/en/subject\.txt'"):
        render({"to": "a@example.com", "template": "invoice_reminder"})


@pytest.mark.parametrize("template", ["welcome", "password_reset", "document_ready"])
@pytest.mark.parametrize("locale", ["en", "fr"])
def test_every_shipped_template_renders(template, locale):
    context = {"name": "Ana", "reset_url": "https://example.com/r/1", "document_name": "facture-42.pdf"}
    rendered = render({"to": "a@example.com", "template": template, "locale": locale, "context": context})
    assert rendered.subject and "Ana" in rendered.text and "Ana" in rendered.html


def test_french_is_french():
    assert render({**VALID, "locale": "fr"}).subject == "Bienvenue, Ana"


def test_example_payload_renders():
    example = json.loads((paths.INCLUDE_DIR / "examples" / "send_email.json").read_text())
    parsed = message_from_bytes(build(example), policy=policy.default)
    assert parsed["To"] == "ana@example.com"
    assert parsed["Cc"] == "team@example.com"
    assert parsed["Reply-To"] == "support@example.com"


def test_message_has_both_parts_and_a_stable_message_id():
    parsed = message_from_bytes(build(VALID, job_id=42), policy=policy.default)
    assert parsed["Message-ID"] == "<job-42@example.org>"
    assert parsed["From"] == "jobs@example.org"
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().startswith("Hello Ana")
    assert "<p>Hello Ana,</p>" in html.get_content()


def test_bcc_is_in_the_envelope_not_the_headers():
    payload = model.parse_payload({**VALID, "cc": ["c@example.com"], "bcc": ["hidden@example.com"]})
    assert mime.Envelope.of(payload).recipients == ["ana@example.com", "c@example.com", "hidden@example.com"]
    assert b"hidden@example.com" not in build({**VALID, "bcc": ["hidden@example.com"]})


def test_pdf_attachment_is_application_pdf_under_its_filename():
    payload = {**VALID, "attachments": [{"url": "invoices/f-42.pdf", "filename": "facture-42.pdf"}]}
    parsed = message_from_bytes(build(payload, read=lambda url: b"%PDF-1.7 fake"), policy=policy.default)
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "facture-42.pdf"
    assert attachment.get_content() == b"%PDF-1.7 fake"


ADDRESS_PARTS = st.sampled_from(
    ["a", "Z", "0", "_", "+", "-", ".", "..", "xn--", "--", "é", "!", "test", "local"]
)
ADDRESSES = st.builds(
    lambda local, labels, tld: f"{''.join(local)}@{'.'.join(''.join(label) for label in labels)}.{tld}",
    st.lists(ADDRESS_PARTS, min_size=1, max_size=6),
    st.lists(st.lists(ADDRESS_PARTS, min_size=1, max_size=4), min_size=1, max_size=3),
    st.sampled_from(["com", "FR", "test", "local", "c0m", "x", "io", "arpa", "123"]),
)


@settings(max_examples=1000, deadline=None)
@given(ADDRESSES)
def test_the_plain_address_shortcut_agrees_with_email_validator(address):
    import email_validator

    shortcut = model._plain_address(address)
    if shortcut is None:
        return
    checked = email_validator.validate_email(address, check_deliverability=False)
    assert checked.ascii_email == shortcut


def test_a_project_s_template_replaces_ours_whole_never_locale_by_locale(tmp_path):
    """A team's `welcome` (English only) is found before ours; a French welcome then fails naming
    the missing file instead of mixing the product's French with the team's English."""
    theirs = tmp_path / "email" / "welcome" / "en"
    theirs.mkdir(parents=True)
    (theirs / "subject.txt").write_text("Hi from the team, {{ name }}\n")
    (theirs / "body.txt").write_text("Team text\n")
    (theirs / "body.html").write_text("<p>Team html</p>\n")
    renderer = rendering.EmailRenderer([tmp_path / "email", paths.INCLUDE_DIR / "templates" / "email"])
    assert renderer.render(model.parse_payload(VALID)).subject == "Hi from the team, Ana"
    with pytest.raises(PermanentJobError, match=r"no template 'welcome/fr/subject.txt'"):
        renderer.render(model.parse_payload({**VALID, "locale": "fr"}))
    # A template the team does not have is still ours.
    reset = {**VALID, "template": "password_reset", "context": {"name": "Ana", "reset_url": "https://x/r"}}
    assert "password" in renderer.render(model.parse_payload(reset)).subject.lower()
