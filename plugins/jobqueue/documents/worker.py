"""A PDF render worker process, and its handle.

The process (`python -m jobqueue.documents.worker`, `serve`) reads one JSON request per line on
stdin, writes the PDF to the requested path and one JSON answer per line on stdout. Its handle
(`WorkerProcess`) starts one and asks it, with the request's time limit; the host's render server
(server.py) keeps a few alive across runs, and a run with no server starts its own (pool.py).

A request: {"html", "folder", "roots", "output", "limits"}. An answer: {"refused_urls"} when the
PDF is at "output", else {"error", "permanent"}: a permanent error fails the job, another retries it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from jobqueue import paths, settings
from jobqueue.exceptions import PermanentJobError

Answer = dict[str, Any]


def error(message: str, permanent: bool = False) -> Answer:
    return {"error": message, "permanent": permanent}


def serve() -> None:
    # Imported here: the render server imports this module for WorkerProcess, and stays small.
    from jobqueue.documents import rendering

    # stdout carries the protocol: anything else printed goes to stderr.
    protocol, sys.stdout = sys.stdout, sys.stderr
    rendering.warm_up()  # imports and fonts: not counted against the first document's time limit
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        protocol.write(json.dumps(_render(json.loads(line))) + "\n")
        protocol.flush()


def _render(request: dict[str, Any]) -> Answer:
    from jobqueue.documents import rendering

    try:
        document = rendering.DocumentHtml(request["html"], Path(request["folder"]))
        roots = [Path(root) for root in request["roots"]]
        rendered = rendering.render_pdf(document, settings.PdfLimits(**request["limits"]), roots)
        Path(request["output"]).write_bytes(rendered.content)
        return {"refused_urls": rendered.refused_urls}
    except PermanentJobError as exc:
        return error(str(exc), permanent=True)
    except Exception as exc:
        return error(f"{type(exc).__name__}: {exc}")


def child_environment() -> dict[str, str]:
    """This process's environment, with our package importable: for `python -m jobqueue...`."""
    plugins = str(paths.PROJECT_ROOT / "plugins")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")])),
    }


class WorkerProcess:
    """One `python -m jobqueue.documents.worker` process: a fresh interpreter, not a fork of the
    caller with its threads and sockets. It says when it is ready: its start-up never counts against
    a document's time limit. A render past its limit kills it (`alive` turns false)."""

    STARTUP_TIMEOUT = 120.0

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.documents.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_environment(), text=True,
        )  # fmt: skip
        self.ready = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def ask(self, request: dict[str, Any]) -> Answer:
        """The worker's answer to one request; the answer for it when the worker dies or passes
        the request's time limit (killed: the same data would take as long again, failed for good)."""
        if not self.ready and (not_ready := self._wait_ready()) is not None:
            return not_ready
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self.kill()
            return error("the PDF worker process died")
        limit = request["limits"]["timeout_seconds"]
        ready, _, _ = select.select([self.process.stdout], [], [], limit)
        if not ready:
            self.kill()
            return error(f"rendering took longer than the limit of {limit:g} s", permanent=True)
        line = self.process.stdout.readline()
        if not line:
            self.kill()
            return error(f"the PDF worker process died (exit code {self.process.returncode})")
        answer: Answer = json.loads(line)
        return answer

    def _wait_ready(self) -> Answer | None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], self.STARTUP_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line or not json.loads(line).get("ready"):
            self.kill()
            return error(f"the PDF worker process did not start in {self.STARTUP_TIMEOUT:g} s")
        self.ready = True
        return None

    def close(self) -> None:
        """Lets the worker finish (end of its input), or kills it after 10 s."""
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.kill()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(BrokenPipeError):
                pipe.close()  # type: ignore[union-attr]


if __name__ == "__main__":
    serve()
