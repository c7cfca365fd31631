"""The message an e-mail job sends: headers, text and HTML parts, attachments, as the bytes SMTP carries.

Written directly rather than through Python's `email` package: building an `EmailMessage` and
flattening it costs about 1 ms per message (its header registry parses every header it is given),
which in a burst is more than the rest of the job together. What is written here is plain RFC 5322
and MIME, every header ASCII (non-ASCII text in RFC 2047 words, filenames in RFC 2231 form), every
body part 7-bit or quoted-printable (base64 for attachments), so any server takes it without
SMTPUTF8 or 8BITMIME; tests parse it back with `email.policy.default` and compare it with what the
`email` package itself builds.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.utils
import functools
import mimetypes
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable

from jobqueue.emails.model import NO_NEWLINES, EmailPayload
from jobqueue.emails.rendering import RenderedEmail
from jobqueue.exceptions import PermanentJobError

CRLF = "\r\n"
LINE = 78  # RFC 5322's recommended line length; headers are folded to it where they can be
MOST_LINE = 998  # RFC 5322's limit: a longer body line is sent quoted-printable
FILENAME_PIECE = 60  # characters of a percent-encoded filename per header line (RFC 2231 continuations)
LINE_BREAK = re.compile(r"\r\n|\r|\n")
NOT_7BIT = re.compile(r"[^\t\x20-\x7e]")  # what a 7-bit body line cannot carry as is
ATOMS = re.compile(r"^[A-Za-z0-9!#$%&'*+/^_`{|}~ -]+$")  # a display name that needs no quotes


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """A message ready for SMTP: its envelope and its bytes (CRLF line ends, not yet dot-stuffed)."""

    message_id: str
    sender: str  # the envelope's MAIL FROM
    recipients: list[str]  # the envelope's RCPT TO: To, Cc and Bcc
    data: bytes

    def __bytes__(self) -> bytes:
        return self.data


@dataclasses.dataclass(frozen=True)
class Envelope:
    """Who a message goes to and what it carries beside its text, from the payload as validated
    (addresses in ASCII form): what `render` hands to `send` with the text, so that `send` builds
    the message without validating the payload a second time."""

    to: list[str]
    cc: list[str] = dataclasses.field(default_factory=list)
    bcc: list[str] = dataclasses.field(default_factory=list)
    reply_to: str | None = None
    attachments: list[dict[str, str]] = dataclasses.field(default_factory=list)  # {"url", "filename"}

    @classmethod
    def of(cls, payload: EmailPayload) -> Envelope:
        attachments = [{"url": a.url, "filename": a.filename} for a in payload.attachments]
        return cls(payload.recipients, list(payload.cc), list(payload.bcc), payload.reply_to, attachments)

    @property
    def recipients(self) -> list[str]:
        """The envelope's RCPT TO: To, Cc and Bcc."""
        return [*self.to, *self.cc, *self.bcc]


def message_id(job_id: int, domain: str) -> str:
    """The same for every attempt of a job, so a duplicate delivery is visible and can be dropped."""
    return f"<job-{job_id}@{domain}>"


ReadAttachment = Callable[[str], bytes]


def build_message(
    job_id: int,
    envelope: Envelope,
    rendered: RenderedEmail,
    sender: str,
    read_attachment: ReadAttachment,
) -> Outgoing:
    envelope_sender, from_header = _sender(sender)
    mid = message_id(job_id, envelope_sender.rpartition("@")[2] or "localhost")
    headers = [
        ("From", from_header),
        ("To", _address_list(envelope.to)),
        *([("Cc", _address_list(envelope.cc))] if envelope.cc else []),
        *([("Reply-To", envelope.reply_to)] if envelope.reply_to else []),
        ("Subject", _unstructured(_header_text(rendered.subject, "Subject"))),
        ("Date", email.utils.formatdate(localtime=False)),
        ("Message-ID", mid),
        ("MIME-Version", "1.0"),
    ]
    body = _alternative(rendered.text, rendered.html)
    if envelope.attachments:
        parts = [body]
        for attachment in envelope.attachments:
            parts.append(_attachment(attachment["filename"], read_attachment(attachment["url"])))
        body = _multipart("mixed", parts)
    head = "".join(f"{name}: {value}{CRLF}" for name, value in headers)
    return Outgoing(mid, envelope_sender, envelope.recipients, head.encode("ascii") + body)


# -- headers


def _header_text(value: str, name: str) -> str:
    if not NO_NEWLINES.match(value):
        raise PermanentJobError(f"invalid header: {name} contains a line break")
    return value


@functools.lru_cache(maxsize=16)
def _sender(sender: str) -> tuple[str, str]:
    """(envelope address, From header) of WORKER_MAIL_FROM, `jobs@x` or `Jobs Team <jobs@x>`."""
    name, address = email.utils.parseaddr(_header_text(sender, "From"))
    if not address or "@" not in address or not address.isascii():
        raise PermanentJobError(f"invalid header: the sender {sender!r} is not an ASCII address")
    if not name:
        return address, address
    if ATOMS.match(name):
        return address, f"{name} <{address}>"
    if name.isascii():
        return address, f'"{email.utils.quote(name)}" <{address}>'
    return address, f"{_encoded_words(name)} <{address}>"


def _address_list(addresses: Iterable[str]) -> str:
    """Addresses (ASCII, checked by the payload model), folded between addresses."""
    lines, line = [], ""
    for address in addresses:
        if line and len(line) + len(address) + 2 > LINE - len("Reply-To: "):
            lines.append(line + ",")
            line = address
        else:
            line = f"{line}, {address}" if line else address
    return (CRLF + " ").join([*lines, line])


def _unstructured(text: str) -> str:
    """A free-text header value: as is when it is short ASCII, else folded or in RFC 2047 words."""
    if text.isascii() and not NOT_7BIT.search(text):
        if len(text) <= LINE - len("Subject: "):
            return text
        if max(len(word) for word in text.split(" ")) < LINE - 1:
            return _fold_words(text)
    return _encoded_words(text)  # which cut anywhere: a word too long for a line, or not ASCII


def _fold_words(text: str) -> str:
    """Long ASCII text folded at spaces (a fold is a line break before white space, which
    unfolding removes: the value reads the same)."""
    out, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > LINE - 1:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    out.append(line)
    return (CRLF + " ").join(out)


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 words of UTF-8, each at most 75 characters and cut between characters;
    a reader joins adjacent words without the folding white space between them."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode())
        if size + width > 45:  # 45 bytes make 60 base64 characters: 72 with =?utf-8?b? and ?=
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    words.append("".join(chunk))
    return (CRLF + " ").join(f"=?utf-8?b?{base64.b64encode(word.encode()).decode()}?=" for word in words)


# -- body parts


def _boundary(contents: Iterable[bytes]) -> str:
    """A boundary found in none of the parts. "=_" cannot appear in quoted-printable or base64
    text, so only a 7-bit part could hold it; it is checked all the same."""
    while True:
        boundary = f"=_{secrets.token_hex(12)}"
        marker = boundary.encode()
        if not any(marker in content for content in contents):
            return boundary


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    boundary = _boundary(parts)
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"{CRLF}{CRLF}'.encode()
    between = f"{CRLF}--{boundary}{CRLF}".encode()
    first, last = f"--{boundary}{CRLF}".encode(), f"{CRLF}--{boundary}--{CRLF}".encode()
    return head + first + between.join(parts) + last


def _alternative(text: str, html: str) -> bytes:
    return _multipart("alternative", [_text_part(text, "plain"), _text_part(html, "html")])


def _text_part(text: str, subtype: str) -> bytes:
    """A text part in UTF-8: 7-bit when it is ASCII in short lines, else quoted-printable."""
    lines = LINE_BREAK.split(text)
    if lines[-1] == "":
        lines.pop()  # the text ends with a line break; every part does (as the email package's)
    body = CRLF.join(lines) + CRLF
    if not NOT_7BIT.search(body.replace(CRLF, "")) and all(len(line) <= MOST_LINE for line in lines):
        encoding, data = "7bit", body.encode("ascii")
    else:
        encoding, data = "quoted-printable", binascii.b2a_qp(body.encode(), istext=True)
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: {encoding}{CRLF}{CRLF}"
    )
    return head.encode() + data


def _attachment(filename: str, content: bytes) -> bytes:
    mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    name = _filename_parameter(_header_text(filename, "filename"))
    head = (
        f"Content-Type: {mime}{CRLF}Content-Disposition: attachment;{CRLF} {name}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}"
    )
    return head.encode() + base64.encodebytes(content).replace(b"\n", b"\r\n")


def _filename_parameter(filename: str) -> str:
    """`filename="a.pdf"`, or RFC 2231's `filename*=utf-8''...` for what a quoted string cannot hold,
    in continuations (`filename*0*=utf-8''...; filename*1*=...`) of short lines when it is long:
    255 characters of a script outside ASCII are over 2,000 octets percent-encoded, past the
    998-octet line that RFC 5322 allows."""
    if filename.isascii() and '"' not in filename and "\\" not in filename:
        return f'filename="{filename}"'
    encoded = urllib.parse.quote(filename, safe="")
    if len(encoded) <= FILENAME_PIECE:
        return "filename*=utf-8''" + encoded
    # Whole %XX triplets in each piece; a character's bytes may span two (decoded once joined).
    pieces = re.findall(rf"(?:%[0-9A-F]{{2}}|[^%]){{1,{FILENAME_PIECE // 3}}}", encoded)
    charset = "utf-8''"
    return (";" + CRLF + " ").join(
        f"filename*{index}*={charset if index == 0 else ''}{piece}" for index, piece in enumerate(pieces)
    )
