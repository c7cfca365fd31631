"""A real SMTP server for tests (aiosmtpd), keeping what it receives in memory; it can be stopped
and started again on the same port to play an outage."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port


class RecordingHandler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.accepted_at: list[float] = []  # time.monotonic() of each message's acceptance
        self.peers: set[Any] = set()  # (host, port) of each client session that sent a message
        self.delay = 0.0  # seconds to wait before accepting each message (a slow server)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        parsed = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), parsed))
            self.accepted_at.append(time.monotonic())
            self.peers.add(session.peer)
        return "250 OK"


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
        with self.handler.lock:
            return list(self.handler.messages)

    def accepted(self) -> list[tuple[str, float]]:
        """(Message-ID, time.monotonic() it was accepted) of each message, in order."""
        with self.handler.lock:
            return [
                (str(message["Message-ID"]), at)
                for (_, message), at in zip(self.handler.messages, self.handler.accepted_at, strict=True)
            ]

    def message_ids(self) -> list[str]:
        return [str(message["Message-ID"]) for _, message in self.messages]

    @property
    def airflow_uri(self) -> str:
        user = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"smtp://{user}127.0.0.1:{self.port}?disable_ssl=true&disable_tls=true&timeout=10"
