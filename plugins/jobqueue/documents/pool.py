"""Many documents rendered on all cores: render processes, each with a time limit, and no more
renders at once on a host than WORKER_PDF_WORKERS (its cores), however many runs render."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import queue
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobqueue import settings
from jobqueue.documents import server as renderserver
from jobqueue.documents.rendering import DocumentHtml, RenderedPdf
from jobqueue.documents.worker import Answer, WorkerProcess
from jobqueue.outcomes import Failed, Retry

NotRendered = Failed | Retry  # why a document has no PDF: for good, or for now


class PdfRenderer:
    """Renders many documents on all cores, one render at a time per worker process, each with the
    time limit: the host's render server's workers (server.py), kept across runs, or, when none
    answers, worker processes of this run's own (worker.py)."""

    def __init__(
        self,
        workers: int | None = None,
        limits: settings.PdfLimits | None = None,
        slots: RenderSlots | None = None,
        roots: list[Path] | None = None,
        server: Path | None = None,
    ) -> None:
        self.workers = workers or settings.pdf_workers()
        self.limits = limits or settings.pdf_limits()
        # What a document may fetch (besides the fonts): the template folders, the project's and ours.
        self.roots = roots or settings.template_dirs("pdf")
        self.slots = slots or RenderSlots(settings.data_dir() / "pdf-render-slots", self.workers)
        self.server = server or renderserver.socket_path(settings.data_dir())
        # Each batch's scratch folder: in the data folder, not the system's temporary one, so that
        # a task killed mid-render (kill -9 leaves its folder behind) leaves it where the stack's
        # own files are, and `make clean-data` (or a test's throwaway data folder) takes it.
        self.scratch = settings.data_dir() / "pdf-scratch"

    def render_each(self, jobs: dict[int, DocumentHtml]) -> Iterator[tuple[int, RenderedPdf | NotRendered]]:
        """(job_id, the PDF or its job's outcome) for each of {job_id: its HTML}, as each is
        ready: the caller records a document while the next ones render, and a task killed half-way
        keeps what it recorded. Stopping early (closing the iterator) starts no further render."""
        pending = queue.SimpleQueue[tuple[int, DocumentHtml]]()
        for job_id, document in jobs.items():
            pending.put((job_id, document))
        finished = queue.SimpleQueue[tuple[int, RenderedPdf | NotRendered]]()
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="batch-", dir=self.scratch) as scratch:
            threads = [
                threading.Thread(
                    target=self._drain, args=(pending, finished, Path(scratch), slot), daemon=True
                )
                for slot in range(min(self.workers, len(jobs)))
            ]
            for thread in threads:
                thread.start()
            try:
                for _ in jobs:
                    yield finished.get()
            finally:
                _empty(pending)
                for thread in threads:
                    thread.join()

    def _drain(
        self,
        pending: queue.SimpleQueue[tuple[int, DocumentHtml]],
        finished: queue.SimpleQueue[tuple[int, RenderedPdf | NotRendered]],
        scratch: Path,
        slot: int,
    ) -> None:
        renderer = _Renderer(self.server, self.limits)
        try:
            while True:
                try:
                    job_id, document = pending.get_nowait()
                except queue.Empty:
                    return
                output = scratch / f"{job_id}.pdf"
                request = {
                    "html": document.html,
                    "folder": str(document.folder),
                    "roots": [str(root) for root in self.roots],
                    "output": str(output),
                    "limits": dataclasses.asdict(self.limits),
                }
                try:
                    with self.slots.hold(slot):
                        outcome = _outcome(renderer.ask(request), output)
                except Exception as exc:  # no worker process (fork refused), no slot file: try again later
                    outcome = Retry(f"could not render: {type(exc).__name__}: {exc}")
                finished.put((job_id, outcome))  # each job gets an answer: render_each waits for all
        finally:
            renderer.close()


class _Renderer:
    """One render at a time: by the host's render server while it answers, else by a worker
    process of this run's own, started when first needed and replaced when it dies."""

    def __init__(self, server: Path | None, limits: settings.PdfLimits) -> None:
        # The server's own wait for a worker's start-up, and the render's limit, and a margin.
        timeout = WorkerProcess.STARTUP_TIMEOUT + limits.timeout_seconds + 10
        self.connection = renderserver.Connection.open(server, timeout)
        self.worker: WorkerProcess | None = None

    def ask(self, request: dict[str, Any]) -> Answer:
        if self.connection is not None:
            answer = self.connection.ask(request)
            if answer is not None:
                return answer
            self.connection.close()  # gone: this batch goes on with workers of its own
            self.connection = None
        self.worker = self.worker if self.worker is not None and self.worker.alive else WorkerProcess()
        return self.worker.ask(request)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        if self.worker is not None:
            self.worker.close()


def _outcome(answer: Answer, output: Path) -> RenderedPdf | NotRendered:
    if "error" in answer:
        return (Failed if answer["permanent"] else Retry)(answer["error"])
    return RenderedPdf(output.read_bytes(), answer["refused_urls"])


def _empty(pending: queue.SimpleQueue[tuple[int, DocumentHtml]]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            pending.get_nowait()


class RenderSlots:
    """At most `count` renders at once on this host, across runs and task processes: two runs of
    two render processes each on two cores made 26-38 % fewer PDFs per second than two processes.
    A slot is a lock file; the kernel frees it when its holder dies, even by kill -9. The wait for a
    slot does not count against a document's time limit."""

    def __init__(self, directory: Path, count: int) -> None:
        self.directory = directory
        self.count = count
        directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def hold(self, index: int) -> Iterator[None]:
        with open(self.directory / f"slot-{index % self.count}", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
