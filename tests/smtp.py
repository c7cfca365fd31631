"""A real SMTP server for tests (aiosmtpd), keeping what it receives in memory; it can be stopped
and started again on the same port to play an outage."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port


class RecordingHandler:
    """Keeps each message as received: its recipients, its bytes and its Message-ID. The fault suite
    reads only the Message-IDs of thousands of messages; parsing each as it came took most of the
    test process's CPU (py-spy of a make test): a message is parsed when a test first reads it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[list[str], bytes, str]] = []  # (recipients, bytes, Message-ID)
        self.parsed: list[EmailMessage] = []  # the first len(parsed) of received, parsed
        self.accepted_at: list[float] = []  # time.monotonic() of each message's acceptance
        self.peers: set[Any] = set()  # (host, port) of each client session that sent a message
        self.delay = 0.0  # seconds to wait before accepting each message (a slow server)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        content = envelope.original_content or envelope.content
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), content, message_id(content)))
            self.accepted_at.append(time.monotonic())
            self.peers.add(session.peer)
        return "250 OK"


def message_id(content: bytes) -> str:
    """The Message-ID header's value, as str(message["Message-ID"]) gives it ("None" without one)."""
    headers = re.split(rb"\r?\n\r?\n", content, maxsplit=1)[0]
    found = re.search(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", headers, re.IGNORECASE | re.MULTILINE)
    return " ".join(found.group(1).decode().split()) if found else "None"


class SmtpServer:
    def __init__(self, login: tuple[str, str] | None = None) -> None:
        """`login`: (user, password) the server then requires (AUTH PLAIN/LOGIN, without TLS)."""
        self.port = free_port()
        self.handler = RecordingHandler()
        self.controller: Controller | None = None
        self.login = login

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(data, LoginPassword)
            and self.login is not None
            and (data.login.decode(), data.password.decode()) == self.login
        )
        return AuthResult(success=ok)

    def start(self) -> None:
        options: dict[str, Any] = {}
        if self.login:
            options = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        handler = self.handler
        with handler.lock:
            received = list(handler.received)
            for _, content, _ in received[len(handler.parsed) :]:
                handler.parsed.append(email.message_from_bytes(content, policy=email.policy.default))
            parsed = list(handler.parsed)
        return [(recipients, message) for (recipients, _, _), message in zip(received, parsed, strict=False)]

    def accepted(self) -> list[tuple[str, float]]:
        """(Message-ID, time.monotonic() it was accepted) of each message, in order."""
        with self.handler.lock:
            return [
                (mid, at)
                for (_, _, mid), at in zip(self.handler.received, self.handler.accepted_at, strict=True)
            ]

    def message_ids(self) -> list[str]:
        with self.handler.lock:
            return [mid for _, _, mid in self.handler.received]

    @property
    def airflow_uri(self) -> str:
        user = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"smtp://{user}127.0.0.1:{self.port}?disable_ssl=true&disable_tls=true&timeout=10"
