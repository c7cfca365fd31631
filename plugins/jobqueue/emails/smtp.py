"""SMTP sessions: opened through the SMTP provider's Airflow connection, and a batch of messages
sent over several of them at once."""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import smtplib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from jobqueue.emails.mime import Outgoing
from jobqueue.exceptions import PermanentJobError
from jobqueue.outcomes import Failed, Retry

NotSent = Failed | Retry  # a message's job's outcome when the server did not accept it


@dataclasses.dataclass(frozen=True)
class SessionLost(Retry):
    """The session's connection went: this message waits for a retry, and the session ends."""


BuildMessage = Callable[[], Outgoing]


def send_messages(
    clients: Sequence[smtplib.SMTP],
    messages: Iterable[tuple[int, BuildMessage]],
    on_sent: Callable[[int, Outgoing], object],
) -> dict[int, NotSent]:
    """Sends over the given sessions, one thread each, every session taking the next message when
    it is free (so one slow answer holds up one session, not the batch). `on_sent` records a job as
    done the moment its message is accepted; it is called from the sessions' threads.

    A message that cannot be built or whose recipients are all refused fails that job; a 4xx answer
    fails it for a retry; a session that loses its connection leaves the rest to the others, and
    what no session could send is failed for a retry. If `on_sent` raises (the outcome could not be
    recorded), every session stops and the error is raised: nothing more is sent unrecorded.
    Returns the outcome of each message not sent.
    """
    work: queue.SimpleQueue[tuple[int, BuildMessage]] = queue.SimpleQueue()
    for item in messages:
        work.put(item)
    unsent: dict[int, NotSent] = {}
    lock = threading.Lock()
    lost: list[str] = []
    unrecorded: list[BaseException] = []

    def session(client: smtplib.SMTP) -> None:
        while not unrecorded:
            try:
                job_id, build = work.get_nowait()
            except queue.Empty:
                return
            try:
                message = build()
            except PermanentJobError as exc:
                with lock:
                    unsent[job_id] = Failed(str(exc))
                continue
            outcome = _send_one(client, message)
            if outcome is None:
                try:
                    on_sent(job_id, message)
                except BaseException as exc:
                    unrecorded.append(exc)
                    return
                continue
            with lock:
                unsent[job_id] = outcome
                if isinstance(outcome, SessionLost):
                    lost.append(outcome.error)
                    return

    if len(clients) == 1:
        session(clients[0])
    else:
        threads = [threading.Thread(target=session, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if unrecorded:
        raise unrecorded[0]
    while True:  # every session lost its connection: the rest waits for a retry
        try:
            job_id, _ = work.get_nowait()
        except queue.Empty:
            break
        unsent[job_id] = Retry(lost[-1] if lost else "not sent")
    return unsent


def _send_one(client: smtplib.SMTP, message: Outgoing) -> NotSent | None:
    """None when the server accepted the message, else its job's outcome."""
    try:
        client.sendmail(message.sender, message.recipients, message.data)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(
            f"{addr} ({code} {reason.decode(errors='replace')})"
            for addr, (code, reason) in exc.recipients.items()
        )
        return Failed(f"every recipient was refused: {refused}")
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        answered = f"SMTP server answered {exc.smtp_code}: {text}"
        return Failed(answered) if 500 <= exc.smtp_code < 600 else Retry(answered)
    except (smtplib.SMTPException, OSError) as exc:
        return SessionLost(f"SMTP connection lost: {exc}")
    return None


@contextlib.contextmanager
def smtp_session(connection: Any) -> Iterator[smtplib.SMTP]:
    """One logged-in SMTP session through the SMTP provider's hook, on an Airflow connection
    already resolved (what a detached process needs); the messages are ours."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    hook = SmtpHook(smtp_conn_id=connection.conn_id)
    hook.get_connection = lambda _conn_id: connection  # type: ignore[method-assign,assignment]
    with hook:
        client = hook._smtp_client
        assert isinstance(client, smtplib.SMTP)
        yield client


Connect = Callable[[], contextlib.AbstractContextManager[smtplib.SMTP]]
# Messages per extra SMTP session: a small batch is sent over one session.
MESSAGES_PER_SESSION = 25


@contextlib.contextmanager
def open_sessions(connect: Connect, most: int, messages: int) -> Iterator[list[smtplib.SMTP]]:
    """Up to `most` sessions (one per MESSAGES_PER_SESSION messages), as many as open; raises the
    first session's error when none does."""
    wanted = max(1, min(most, messages // MESSAGES_PER_SESSION))
    with contextlib.ExitStack() as stack:
        clients: list[smtplib.SMTP] = []
        for _ in range(wanted):
            try:
                clients.append(stack.enter_context(connect()))
            except Exception:
                if not clients:
                    raise
                break
        yield clients
