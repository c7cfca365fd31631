"""A local SMTP server that keeps every message it accepts as one .eml file.

Usage: python -m devtools.mailsink DIRECTORY [PORT]. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # Write then rename, so a reader never sees half a message.
        name = f"{uuid.uuid4().hex}.eml"
        partial = self.directory / f".{name}.tmp"
        partial.write_bytes(envelope.original_content or envelope.content)
        os.replace(partial, self.directory / name)
        return "250 Message accepted for delivery"


def serve(directory: Path, port: int) -> None:
    controller = Controller(MaildirHandler(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"mail sink listening on 127.0.0.1:{port}, writing to {directory}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8025)
