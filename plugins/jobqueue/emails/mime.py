"""The message an e-mail job sends: headers, text and HTML parts, attachments."""

from __future__ import annotations

import email.policy
import email.utils
import mimetypes
from collections.abc import Callable
from email.message import EmailMessage

from jobqueue.emails.model import EmailPayload
from jobqueue.emails.rendering import RenderedEmail
from jobqueue.exceptions import PermanentJobError


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
