"""The e-mail job: its payload, its rendering with Jinja2, and its sending over one SMTP session.

payload = {"to": "a@example.com" or [...], "template": "welcome", "context": {...}, "locale": "fr",
           "cc": [...], "bcc": [...], "reply_to": "...",
           "attachments": [{"url": "invoices/f-42.pdf", "filename": "f-42.pdf"}]}
"""

from __future__ import annotations

import dataclasses
import email.policy
import email.utils
import mimetypes
import queue
import re
import smtplib
import threading
from collections.abc import Callable, Iterable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import pydantic

from jobqueue import paths
from jobqueue.exceptions import PermanentJobError
from jobqueue.payloads import describe_validation_error

TEMPLATES_DIR = paths.INCLUDE_DIR / "templates" / "email"
# A header value holds no line break, as Python's email package counts them (str.splitlines: CR, LF,
# and also VT, FF, FS, GS, RS, NEL, U+2028, U+2029) and no other control character but tab.
_NO_NEWLINES = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]*$")


SafeText = Annotated[str, pydantic.StringConstraints(pattern=_NO_NEWLINES, min_length=1, max_length=998)]


def _ascii_address(value: str) -> str:
    """An address as a header and the SMTP envelope can carry it without SMTPUTF8: its domain in
    ASCII (IDNA) form. Python's email package would put a Unicode domain in the To header as an
    RFC 2047 encoded word, folded mid-address: a broken header. A local part outside ASCII would
    need SMTPUTF8, which not every server speaks: refused."""
    import email_validator

    try:
        checked = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from exc
    if checked.ascii_email is None:
        raise ValueError("value is not a valid email address: the part before the @ must be ASCII")
    return str(checked.ascii_email)


Address = Annotated[str, pydantic.AfterValidator(_ascii_address)]


class Attachment(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, pydantic.StringConstraints(min_length=1)]
    filename: Annotated[
        SafeText,
        pydantic.StringConstraints(pattern=r"^[^/\\\x00-\x1f\x7f\x85\u2028\u2029]+$", max_length=255),
    ]


class EmailPayload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    to: Address | list[Address]
    template: Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)]
    context: dict[str, Any] = {}
    locale: Literal["en", "fr"] = "en"
    cc: list[Address] = []
    bcc: list[Address] = []
    reply_to: Address | None = None
    attachments: list[Attachment] = []

    @property
    def recipients(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)

    @pydantic.field_validator("to")
    @classmethod
    def _at_least_one(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one recipient")
        return value


def parse_payload(payload: Any) -> EmailPayload:
    try:
        return EmailPayload.model_validate(payload)
    except pydantic.ValidationError as exc:
        raise PermanentJobError(describe_validation_error(exc)) from exc


@dataclasses.dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class EmailRenderer:
    """Templates under include/templates/email/<name>/<locale>/{subject.txt,body.txt,body.html}."""

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )

    def render(self, payload: EmailPayload) -> RenderedEmail:
        base = f"{payload.template}/{payload.locale}"
        try:
            subject = self.environment.get_template(f"{base}/subject.txt").render(payload.context).strip()
            text = self.environment.get_template(f"{base}/body.txt").render(payload.context)
            html = self.environment.get_template(f"{base}/body.html").render(payload.context)
        except jinja2.TemplateNotFound as exc:
            raise PermanentJobError(
                f"no template {exc.name!r} (template {payload.template!r}, locale {payload.locale!r})"
            ) from exc
        except jinja2.UndefinedError as exc:
            raise PermanentJobError(
                f"template {payload.template!r} ({payload.locale}): {exc.message}"
            ) from exc
        except jinja2.TemplateError as exc:
            raise PermanentJobError(
                f"template {payload.template!r} ({payload.locale}) failed: {exc}"
            ) from exc
        if not _NO_NEWLINES.match(subject):
            raise PermanentJobError("the subject contains a line break (header injection refused)")
        return RenderedEmail(subject=subject, text=text, html=html)


def message_id(job_id: int, domain: str) -> str:
    """The same for every attempt of a job, so a duplicate delivery is visible and can be dropped."""
    return f"<job-{job_id}@{domain}>"


ReadAttachment = Callable[[str], bytes]


def build_message(
    job_id: int,
    payload: EmailPayload,
    rendered: RenderedEmail,
    sender: str,
    read_attachment: ReadAttachment,
) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    try:
        message["From"] = sender
        message["To"] = ", ".join(payload.recipients)
        if payload.cc:
            message["Cc"] = ", ".join(payload.cc)
        if payload.reply_to:
            message["Reply-To"] = payload.reply_to
        message["Subject"] = rendered.subject
    except ValueError as exc:  # the policy refuses line breaks in headers
        raise PermanentJobError(f"invalid header: {exc}") from exc
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = message_id(job_id, sender.rpartition("@")[2] or "localhost")
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    for attachment in payload.attachments:
        content = read_attachment(attachment.url)
        mime = mimetypes.guess_type(attachment.filename)[0] or "application/octet-stream"
        maintype, subtype = mime.split("/", 1)
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message


def envelope_recipients(payload: EmailPayload) -> list[str]:
    return [*payload.recipients, *payload.cc, *payload.bcc]


@dataclasses.dataclass
class SendResult:
    sent: list[int] = dataclasses.field(default_factory=list)
    failed: dict[int, str] = dataclasses.field(default_factory=dict)  # permanently
    retry: dict[int, str] = dataclasses.field(default_factory=dict)


BuildMessage = Callable[[], tuple[EmailMessage, list[str]]]


def send_messages(
    clients: Sequence[smtplib.SMTP],
    messages: Iterable[tuple[int, BuildMessage]],
    on_sent: Callable[[int, EmailMessage], object],
) -> SendResult:
    """Sends over the given sessions, one thread each, every session taking the next message when
    it is free (so one slow answer holds up one session, not the batch). `on_sent` records a job as
    done the moment its message is accepted; it is called from the sessions' threads.

    A message that cannot be built or whose recipients are all refused fails that job; a 4xx answer
    fails it for a retry; a session that loses its connection leaves the rest to the others, and
    what no session could send is failed for a retry.
    """
    work: queue.SimpleQueue[tuple[int, BuildMessage]] = queue.SimpleQueue()
    for item in messages:
        work.put(item)
    result = SendResult()
    lock = threading.Lock()
    lost: list[str] = []

    def session(client: smtplib.SMTP) -> None:
        while True:
            try:
                job_id, build = work.get_nowait()
            except queue.Empty:
                return
            try:
                message, recipients = build()
            except PermanentJobError as exc:
                with lock:
                    result.failed[job_id] = str(exc)
                continue
            outcome = _send_one(client, message, recipients)
            if outcome is None:
                on_sent(job_id, message)
                with lock:
                    result.sent.append(job_id)
                continue
            kind, error = outcome
            with lock:
                if kind == "lost":
                    result.retry[job_id] = error
                    lost.append(error)
                    return
                (result.failed if kind == "failed" else result.retry)[job_id] = error

    if len(clients) == 1:
        session(clients[0])
    else:
        threads = [threading.Thread(target=session, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    while True:  # every session lost its connection: the rest waits for a retry
        try:
            job_id, _ = work.get_nowait()
        except queue.Empty:
            break
        result.retry[job_id] = lost[-1] if lost else "not sent"
    return result


def _send_one(client: smtplib.SMTP, message: EmailMessage, recipients: list[str]) -> tuple[str, str] | None:
    """None when the server accepted the message, else ("failed" | "retry" | "lost", why)."""
    try:
        client.send_message(message, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(
            f"{addr} ({code} {reason.decode(errors='replace')})"
            for addr, (code, reason) in exc.recipients.items()
        )
        return "failed", f"every recipient was refused: {refused}"
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        return ("failed" if 500 <= exc.smtp_code < 600 else "retry"), (
            f"SMTP server answered {exc.smtp_code}: {text}"
        )
    except (smtplib.SMTPException, OSError) as exc:
        return "lost", f"SMTP connection lost: {exc}"
    return None
