"""The three steps of the `send_email` DAG: prepare >> render >> send.

Each step takes and returns plain dicts (what XCom carries) and records each job's outcome in the job
table as soon as it is known: a bad payload or template fails the job for good, an SMTP outage fails
it for a retry, an accepted message completes it.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from collections.abc import Callable, Iterator
from typing import Any

from jobqueue import forms, mail, runs, settings, storage
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)
IDENTIFIER = "send_email"


def prepare(jobs: JobManager, worker: str, conf: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Claims a batch and keeps the jobs whose payload is valid; the others fail for good. A manual
    run's payload (its conf) becomes a job of the batch first."""
    runs.adopt_manual_job(
        jobs, IDENTIFIER, worker, conf, mail.parse_payload, forms.defaults(forms.EMAIL_FIELDS)
    )
    return runs.claim_valid(jobs, IDENTIFIER, worker, mail.parse_payload)


def render(jobs: JobManager, worker: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    renderer = mail.EmailRenderer()
    rendered = []
    for item in batch:
        payload = mail.EmailPayload.model_validate(item["payload"])
        try:
            email = renderer.render(payload)
        except mail.PermanentJobError as exc:
            jobs.fail_job(item["job_id"], worker, str(exc), retry=False)
            log.warning("job %d failed for good: %s", item["job_id"], exc)
            continue
        rendered.append({**item, "subject": email.subject, "text": email.text, "html": email.html})
    return rendered


def send(jobs: JobManager, worker: str, rendered: list[dict[str, Any]], smtp_client: Any) -> mail.SendResult:
    """Sends the batch over one SMTP session. Jobs no longer held (done by an earlier attempt of this
    task, or released) are skipped, so a retried task never sends a job's message twice."""
    held = {job.id for job in jobs.held_jobs(worker)}
    sender = settings.mail_from()
    messages = []
    result = mail.SendResult()
    for item in rendered:
        job_id = item["job_id"]
        if job_id not in held:
            continue
        payload = mail.EmailPayload.model_validate(item["payload"])
        email = mail.RenderedEmail(item["subject"], item["text"], item["html"])
        try:
            message = mail.build_message(job_id, payload, email, sender, storage.read_document)
        except (mail.PermanentJobError, storage.StorageError) as exc:
            result.failed[job_id] = str(exc)
            continue
        messages.append((job_id, message, mail.envelope_recipients(payload)))

    def record_sent(job_id: int, message: mail.EmailMessage) -> None:
        jobs.complete_jobs([job_id], {"message_id": str(message["Message-ID"])})

    sent = mail.send_messages(smtp_client, messages, on_sent=record_sent)
    result.sent += sent.sent
    result.failed |= sent.failed
    result.retry |= sent.retry
    record_failures(jobs, worker, result)
    return result


@contextlib.contextmanager
def smtp_session(conn_id: str = "smtp_default") -> Iterator[smtplib.SMTP]:
    """One logged-in SMTP session through the SMTP provider's connection; the messages are ours."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=conn_id) as hook:
        client = hook._smtp_client
        assert isinstance(client, smtplib.SMTP)
        yield client


def send_batch(
    jobs: JobManager,
    worker: str,
    rendered: list[dict[str, Any]],
    connect: Callable[[], contextlib.AbstractContextManager[smtplib.SMTP]] = smtp_session,
) -> mail.SendResult:
    """send(), or, when no SMTP session can be opened, every job of the batch failed for a retry."""
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(connect())
        except Exception as exc:  # refused, timed out, TLS or login failure: all worth a retry
            return fail_all_for_retry(jobs, worker, rendered, f"SMTP server unreachable: {exc}")
        return send(jobs, worker, rendered, client)


def fail_all_for_retry(
    jobs: JobManager, worker: str, rendered: list[dict[str, Any]], error: str
) -> mail.SendResult:
    result = mail.SendResult(retry={item["job_id"]: error for item in rendered})
    record_failures(jobs, worker, result)
    return result


def summary(result: mail.SendResult) -> dict[str, int]:
    return {"sent": len(result.sent), "failed": len(result.failed), "retry": len(result.retry)}


def record_failures(jobs: JobManager, worker: str, result: mail.SendResult) -> None:
    for job_id, error in result.failed.items():
        jobs.fail_job(job_id, worker, error, retry=False)
    for job_id, error in result.retry.items():
        jobs.fail_job(job_id, worker, error)
    log.info(
        "sent %d, failed for good %d, to retry %d; sent job ids: %s",
        len(result.sent), len(result.failed), len(result.retry), result.sent,
    )  # fmt: skip
