"""The messages mime.py writes directly read back, through Python's `email` package, as the message
that package builds itself from the same job: same headers, same parts, same attachments."""

from __future__ import annotations

import email.policy
import email.utils
import mimetypes
import re
from email import message_from_bytes
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobqueue.emails import mime, model
from jobqueue.emails.rendering import RenderedEmail

HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Message-ID", "MIME-Version")
FILES = {"invoices/f-42.pdf": b"%PDF-1.7 \x00\xff" * 300, "a.txt": b"plain\r\n.dot line\n", "e.bin": b""}


def reference(job_id: int, payload: model.EmailPayload, rendered: RenderedEmail, sender: str) -> EmailMessage:
    """The same message built with the `email` package, as mime.py did before it wrote bytes."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = ", ".join(payload.recipients)
    if payload.cc:
        message["Cc"] = ", ".join(payload.cc)
    if payload.reply_to:
        message["Reply-To"] = payload.reply_to
    message["Subject"] = rendered.subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = mime.message_id(job_id, email.utils.parseaddr(sender)[1].rpartition("@")[2])
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    for attachment in payload.attachments:
        kind = mimetypes.guess_type(attachment.filename)[0] or "application/octet-stream"
        maintype, subtype = kind.split("/", 1)
        message.add_attachment(
            FILES[attachment.url], maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message


def read_back(data: bytes) -> EmailMessage:
    parsed = message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects, parsed.defects
    return parsed


def assert_same(ours: EmailMessage, theirs: EmailMessage) -> None:
    for name in HEADERS:
        assert str(ours[name]) == str(theirs[name]) if theirs[name] is not None else ours[name] is None, name
    assert ours["Date"] is not None and ours["Date"].datetime is not None
    assert [part.get_content_type() for part in ours.walk()] == [p.get_content_type() for p in theirs.walk()]
    for subtype in ("plain", "html"):
        body, expected = ours.get_body((subtype,)), theirs.get_body((subtype,))
        assert body is not None and expected is not None
        assert body.get_content_charset() == "utf-8"
        assert body.get_content() == expected.get_content()
    # Decoded bytes, not get_content(): the email package has no content manager for every type a
    # filename's extension may give (`.b`: chemical/x-molconn-z).
    attachments = [
        (a.get_filename(), a.get_content_type(), a.get_payload(decode=True)) for a in ours.iter_attachments()
    ]
    expected_attachments = [
        (a.get_filename(), a.get_content_type(), a.get_payload(decode=True))
        for a in theirs.iter_attachments()
    ]
    assert attachments == expected_attachments


def built(payload: dict, rendered: RenderedEmail, sender: str = "jobs@example.org", job_id: int = 7):
    parsed = model.parse_payload({"template": "welcome", **payload})
    ours = mime.build_message(job_id, mime.Envelope.of(parsed), rendered, sender, FILES.__getitem__)
    theirs = reference(job_id, parsed, rendered, sender)
    return ours, read_back(ours.data), read_back(bytes(theirs))


def every_line_fits(data: bytes) -> bool:
    return all(len(line) <= 998 and line.isascii() for line in data.split(b"\r\n"))


CASES: dict[str, tuple[dict, RenderedEmail]] = {
    "ascii": ({"to": "ana@example.com"}, RenderedEmail("Welcome", "Hello Ana,\n", "<p>Hello Ana,</p>\n")),
    "non-ascii names and text": (
        {"to": ["zoe@exämple.fr", "li@例え.jp"], "cc": ["bob@bücher.de"], "reply_to": "r@exämple.fr"},
        RenderedEmail("Bienvenue, Zoé Lefèvre — 東京 🎉", "Bonjour Zoé,\nÇa va ?\n", "<p>Zoé «ok»</p>"),
    ),
    "attachments with non-ASCII and quoted filenames": (
        {
            "to": "ana@example.com",
            "attachments": [
                {"url": "invoices/f-42.pdf", "filename": "facture été n°42.pdf"},
                {"url": "a.txt", "filename": 'say "hi" there.txt'},
                {"url": "e.bin", "filename": "empty"},
            ],
        },
        RenderedEmail("Your invoice", "See attached.\n", "<p>See attached.</p>"),
    ),
    "long lines, dots and odd line ends": (
        {"to": [f"user{n}@example.com" for n in range(30)]},
        RenderedEmail(
            " ".join(["word"] * 150) + " " + "x" * 500,
            ".\n.leading dot\r\nlone cr\rend " + "y" * 1200 + "\ttab \x0c form feed \u2028 sep",
            "<p>" + "z" * 2000 + "</p>\n\n",
        ),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_reads_back_as_the_email_packages_own_message(case):
    payload, rendered = CASES[case]
    ours, parsed, expected = built(payload, rendered)
    assert_same(parsed, expected)
    assert every_line_fits(ours.data)
    parsed_payload = model.parse_payload({"template": "welcome", **payload})
    assert ours.recipients == [*parsed_payload.recipients, *parsed_payload.cc, *parsed_payload.bcc]


@pytest.mark.parametrize(
    "sender",
    [
        "jobs@example.org",
        "Jobs <jobs@example.org>",
        "Équipe Jobs <jobs@example.org>",
        '"Jobs, Inc." <j@x.org>',
    ],
)
def test_sender_with_a_display_name(sender):
    ours, parsed, expected = built(CASES["ascii"][0], CASES["ascii"][1], sender=sender)
    assert_same(parsed, expected)
    assert ours.sender == email.utils.parseaddr(sender)[1]


def test_bcc_is_only_in_the_envelope():
    ours, parsed, _ = built({"to": "a@example.com", "bcc": ["hidden@example.com"]}, CASES["ascii"][1])
    assert ours.recipients == ["a@example.com", "hidden@example.com"]
    assert b"hidden" not in ours.data and parsed["Bcc"] is None


HEADER_TEXT = (
    st.text(
        st.characters(
            exclude_categories=["Cs"], exclude_characters="\x00\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
        ),
        min_size=1,
        max_size=300,
    )
    .map(str.strip)
    .filter(lambda text: text and model.NO_NEWLINES.match(text))
)
FILENAME = re.compile(r"^[^/\\\x00-\x1f\x7f\x85\u2028\u2029]{1,255}$")  # as the payload model
BODY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=2000)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=HEADER_TEXT, text=BODY_TEXT, html=BODY_TEXT, filename=HEADER_TEXT.filter(FILENAME.match))
def test_any_subject_body_and_filename_reads_back_the_same(subject, text, html, filename):
    payload = {"to": "ana@example.com", "attachments": [{"url": "a.txt", "filename": filename}]}
    ours, parsed, expected = built(payload, RenderedEmail(subject, text, html))
    assert str(parsed["Subject"]) == subject
    assert_same(parsed, expected)
    assert every_line_fits(ours.data)


def test_a_long_filename_outside_ascii_is_split_into_lines_that_fit():
    filename = "é" * 250 + ".pdf"  # 255 characters, 2,000 octets percent-encoded
    payload = {"to": "ana@example.com", "attachments": [{"url": "a.txt", "filename": filename}]}
    ours, parsed, expected = built(payload, RenderedEmail("s", "t", "h"))
    assert every_line_fits(ours.data) and max(len(line) for line in ours.data.split(b"\r\n")) < 100
    assert_same(parsed, expected)
    assert [part.get_filename() for part in parsed.iter_attachments()] == [filename]


def test_a_header_with_a_line_break_is_refused():
    from jobqueue.exceptions import PermanentJobError

    parsed = model.parse_payload({"template": "welcome", "to": "a@example.com"})
    with pytest.raises(PermanentJobError, match="invalid header: Subject contains a line break"):
        rendered = RenderedEmail("a\r\nBcc: x@y.z", "", "")
        mime.build_message(1, mime.Envelope.of(parsed), rendered, "j@x.org", FILES.__getitem__)
