"""The three steps of the `send_email` DAG: prepare >> render >> send.

Each step takes and returns plain dicts (what XCom carries) and records each job's outcome in the job
table as soon as it is known: a bad payload or template fails the job for good, an SMTP outage fails
it for a retry, an accepted message completes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import smtplib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from jobqueue import detach, forms, mail, payloads, runs, settings, storage
from jobqueue.exceptions import PermanentJobError
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
        except PermanentJobError as exc:
            jobs.fail_job(item["job_id"], worker, str(exc), retry=False)
            log.warning("job %d failed for good: %s", item["job_id"], exc)
            continue
        except Exception as exc:  # a bug shown by one job's data fails that job, not the batch
            log.exception("job %d: rendering failed", item["job_id"])
            jobs.fail_job(
                item["job_id"], worker, payloads.unexpected(exc, "rendering the e-mail"), retry=False
            )
            continue
        rendered.append({**item, "subject": email.subject, "text": email.text, "html": email.html})
    return rendered


Reconnect = Callable[[], contextlib.AbstractContextManager[JobManager]]


def send(
    jobs: JobManager,
    worker: str,
    rendered: list[dict[str, Any]],
    clients: Sequence[smtplib.SMTP],
    reconnect: Reconnect | None = None,
) -> mail.SendResult:
    """Sends the batch over the given SMTP sessions. Jobs no longer held (done by an earlier attempt
    of this task, or released) are skipped, so a retried task never sends a job's message twice."""
    held = {job.id for job in jobs.held_jobs(worker)}
    sender = settings.mail_from()

    def builder(job_id: int, item: dict[str, Any]) -> mail.BuildMessage:
        def build() -> tuple[mail.EmailMessage, list[str]]:
            payload = mail.EmailPayload.model_validate(item["payload"])
            email = mail.RenderedEmail(item["subject"], item["text"], item["html"])
            try:
                message = mail.build_message(job_id, payload, email, sender, storage.read_document)
            except storage.StorageError as exc:
                raise PermanentJobError(str(exc)) from exc
            return message, mail.envelope_recipients(payload)

        return build

    messages = [
        (item["job_id"], builder(item["job_id"], item)) for item in rendered if item["job_id"] in held
    ]
    with contextlib.ExitStack() as connections:
        with Completions(jobs, reconnect, connections) as completions:
            result = mail.send_messages(
                clients,
                messages,
                on_sent=lambda job_id, message: completions.add(job_id, str(message["Message-ID"])),
            )
        record_failures(completions.jobs, worker, result)
    return result


def _connection_lost(exc: BaseException) -> bool:
    import psycopg
    import psycopg2

    lost = (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        psycopg2.OperationalError,
        psycopg2.InterfaceError,
    )
    return isinstance(exc, lost)


class Completions:
    """Marks jobs completed as their messages are accepted, from a thread of its own: the sessions
    never wait for a commit, and when messages come faster than commits, one statement completes all
    that have arrived meanwhile. A job stays un-completed for at most that one statement after its
    message was accepted (the window in which a crash can make it be sent again).

    If the job database goes away meanwhile (a restart), the completions wait for it, on a new
    connection, for up to RETRY_SECONDS: failing the task instead would make its retry send those
    messages again."""

    RETRY_SECONDS = 120.0

    def __init__(
        self,
        jobs: JobManager,
        reconnect: Reconnect | None = None,
        connections: contextlib.ExitStack | None = None,
    ) -> None:
        self.jobs = jobs
        self.reconnect = reconnect
        self.connections = connections or contextlib.ExitStack()
        self.queue: queue.SimpleQueue[tuple[int, str] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="completions")

    def __enter__(self) -> Completions:
        self.thread.start()
        return self

    def add(self, job_id: int, message_id: str) -> None:
        self.queue.put((job_id, message_id))

    def __exit__(self, *exc_info: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        done = False
        while not done:
            item = self.queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            done = item is None
            if batch and self.error is None:
                try:
                    self._complete({job_id: {"message_id": mid} for job_id, mid in batch})
                except BaseException as exc:
                    self.error = exc

    def _complete(self, results: dict[int, Any]) -> None:
        deadline, backoff = time.monotonic() + self.RETRY_SECONDS, 0.5
        while True:
            try:
                self.jobs.complete_each(results)
                return
            except BaseException as exc:
                if self.reconnect is None or not _connection_lost(exc) or time.monotonic() > deadline:
                    raise
                log.warning("completing %d job(s): %s; retrying on a new connection", len(results), exc)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            with contextlib.suppress(Exception):
                self.jobs = self.connections.enter_context(self.reconnect())


@contextlib.contextmanager
def smtp_session(conn_id: str = "smtp_default", connection: Any = None) -> Iterator[smtplib.SMTP]:
    """One logged-in SMTP session through the SMTP provider's connection; the messages are ours.
    `connection`: the Airflow connection, already resolved (what a detached process needs)."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    hook = SmtpHook(smtp_conn_id=conn_id)
    if connection is not None:
        hook.get_connection = lambda _conn_id: connection  # type: ignore[method-assign,assignment]
    with hook:
        client = hook._smtp_client
        assert isinstance(client, smtplib.SMTP)
        yield client


# Messages per extra SMTP session: a small batch is sent over one session.
MESSAGES_PER_SESSION = 25


def send_batch(
    jobs: JobManager,
    worker: str,
    rendered: list[dict[str, Any]],
    connect: Callable[[], contextlib.AbstractContextManager[smtplib.SMTP]] = smtp_session,
    reconnect: Reconnect | None = runs.job_database,
) -> mail.SendResult:
    """send() over up to WORKER_SMTP_SESSIONS sessions, or, when no SMTP session can be opened,
    every job of the batch failed for a retry."""
    wanted = max(1, min(settings.smtp_sessions(), len(rendered) // MESSAGES_PER_SESSION))
    with contextlib.ExitStack() as stack:
        clients: list[smtplib.SMTP] = []
        for _ in range(wanted):
            try:
                clients.append(stack.enter_context(connect()))
            except Exception as exc:  # refused, timed out, TLS or login failure: all worth a retry
                if not clients:
                    return fail_all_for_retry(jobs, worker, rendered, f"SMTP server unreachable: {exc}")
                log.warning("opened %d of %d SMTP sessions: %s", len(clients), wanted, exc)
                break
        return send(jobs, worker, rendered, clients, reconnect)


def send_detached(worker: str, rendered: list[dict[str, Any]]) -> mail.SendResult:
    """send_batch in a sender process that outlives this task process (detach.py): a task killed
    mid-batch leaves the sender to finish the batch and record it, and the task's retry waits for
    that sender (an advisory lock on the DAG run) before it looks at what its run still holds."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    # Resolved here, through the task's supervisor: the sender must not use that channel.
    database = PostgresHook(postgres_conn_id=runs.JOB_DB_CONN_ID)
    assert database.connection is not None
    smtp = SmtpHook.get_connection("smtp_default")

    def job_database() -> contextlib.AbstractContextManager[JobManager]:
        return runs.job_database(hook=database)

    def work() -> dict[str, Any]:
        with job_database() as jobs:
            jobs.lock_sends(worker)
            result = send_batch(
                jobs, worker, rendered, connect=lambda: smtp_session(connection=smtp), reconnect=job_database
            )
        return dataclasses.asdict(result)

    outcome = detach.run_detached(work)
    return mail.SendResult(
        sent=list(outcome["sent"]),
        failed={int(job_id): error for job_id, error in outcome["failed"].items()},
        retry={int(job_id): error for job_id, error in outcome["retry"].items()},
    )


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
