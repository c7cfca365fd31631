"""A stand-in for Acme's logistics partner: a real HTTP API on loopback, for the acceptance project's
sync_partner job type (tests/python/test_acme_worker.py, tests/e2e/test_acme_worker_e2e.py)."""

from __future__ import annotations

import http.server
import json
from typing import Any


class Partner(http.server.BaseHTTPRequestHandler):
    """The logistics partner's API: busy (503) at each order's first call, then takes it; refuses
    the order A-2026-0104 (422)."""

    calls: list[str] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reference = body["reference"]
        first = reference not in self.calls
        self.calls.append(reference)
        status, answer = (
            (422, {"error": "unknown address"}) if reference == "A-2026-0104"
            else (503, {"error": "busy"}) if first
            else (201, {"id": f"P-{reference}"})
        )  # fmt: skip
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass
