"""Fixtures of the Python tests: a real SMTP server, and a document storage of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.smtp import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def document_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WORKER_STORAGE_URL", f"file://{tmp_path}")
    monkeypatch.setenv("WORKER_PDF_WORKERS", "2")
    return tmp_path
