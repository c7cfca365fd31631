"""The steps of the `send_email` job type: render >> send.

`render` runs per job and hands the rendered subject and bodies, with the envelope from the payload
it validated, to `send` (kept beside the job, not in XCom): `send` reads no payload. `send` takes
the batch at once, over up to WORKER_SMTP_SESSIONS SMTP sessions, in a process that outlives the
task (a detached step), and records each job as its message is accepted.
"""

from __future__ import annotations

import dataclasses
import smtplib

from jobqueue import settings, storage
from jobqueue.context import BatchItem, JobContext, StepContext
from jobqueue.emails import mime, smtp
from jobqueue.emails.model import EmailPayload
from jobqueue.emails.rendering import RenderedEmail, renderer
from jobqueue.exceptions import PermanentJobError, StorageError
from jobqueue.outcomes import Failed


@dataclasses.dataclass(frozen=True)
class ReadyEmail:
    """What `render` hands to `send`."""

    rendered: RenderedEmail
    envelope: mime.Envelope


def render(payload: EmailPayload, ctx: JobContext) -> ReadyEmail:
    return ReadyEmail(renderer().render(payload), mime.Envelope.of(payload))


def _ready(item: BatchItem) -> ReadyEmail:
    value = item.value
    if "envelope" not in value:  # rendered by a version that handed on the text alone
        return ReadyEmail(RenderedEmail(**value), mime.Envelope.of(item.ctx.payload))
    return ReadyEmail(RenderedEmail(**value["rendered"]), mime.Envelope(**value["envelope"]))


@dataclasses.dataclass(frozen=True)
class Sending:
    """What `send` needs from outside, resolved in the task process before the step detaches."""

    connect: smtp.Connect
    sessions: int
    sender: str


def prepare_send(conn_id: str = "smtp_default") -> Sending:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    connection = SmtpHook.get_connection(conn_id)
    return Sending(lambda: smtp.smtp_session(connection), settings.smtp_sessions(), settings.mail_from())


def send(items: list[BatchItem], ctx: StepContext) -> None:
    sending: Sending = ctx.prepared
    by_id = {item.job.id: item for item in items}

    def sent(job_id: int, message: mime.Outgoing) -> None:
        by_id[job_id].done({"message_id": message.message_id})

    try:
        with smtp.open_sessions(sending.connect, sending.sessions, len(items)) as clients:
            unsent = smtp.send_messages(
                clients,
                [(item.job.id, _builder(item, sending.sender)) for item in items],
                on_sent=sent,
            )
    except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, TLS or login failure
        for item in items:
            item.retry(f"SMTP server unreachable: {exc}")
        return
    for job_id, outcome in unsent.items():
        by_id[job_id].report(outcome)
    failed = sum(isinstance(outcome, Failed) for outcome in unsent.values())
    ctx.log.info(
        "sent %d, failed for good %d, to retry %d", len(items) - len(unsent), failed, len(unsent) - failed
    )


def _builder(item: BatchItem, sender: str) -> smtp.BuildMessage:
    def build() -> mime.Outgoing:
        ready = _ready(item)
        try:
            return mime.build_message(
                item.job.id, ready.envelope, ready.rendered, sender, storage.read_document
            )
        except StorageError as exc:
            raise PermanentJobError(str(exc)) from exc

    return build
