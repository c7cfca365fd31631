"""Many documents rendered on all cores: render processes of our own, each with a time limit, and
no more renders at once on a host than WORKER_PDF_WORKERS (its cores), however many runs render."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from jobqueue import paths, settings
from jobqueue.documents.rendering import DocumentHtml, RenderedPdf
from jobqueue.outcomes import Failed, Retry

NotRendered = Failed | Retry  # why a document has no PDF: for good, or for now


class PdfRenderer:
    """Renders many documents on all cores: worker processes of our own (`python -m
    jobqueue.documents.worker`, a fresh interpreter, not a fork of the task process with its threads and
    log sockets), one render at a time each, with the time limit; a worker past its limit is killed
    and replaced."""

    def __init__(
        self,
        workers: int | None = None,
        limits: settings.PdfLimits | None = None,
        slots: RenderSlots | None = None,
        roots: list[Path] | None = None,
    ) -> None:
        self.workers = workers or settings.pdf_workers()
        self.limits = limits or settings.pdf_limits()
        # What a document may fetch (besides the fonts): the template folders, the project's and ours.
        self.roots = roots or settings.template_dirs("pdf")
        self.slots = slots or RenderSlots(settings.data_dir() / "pdf-render-slots", self.workers)
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
        worker: _Worker | None = None
        try:
            while True:
                try:
                    job_id, document = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    worker = worker or _Worker(self.limits, self.roots)
                    with self.slots.hold(slot):
                        outcome = worker.render(job_id, document, scratch)
                except Exception as exc:  # no worker process (fork refused), no slot file: try again later
                    outcome = Retry(f"could not render: {type(exc).__name__}: {exc}")
                finished.put((job_id, outcome))  # each job gets an answer: render_each waits for all
                if worker and not worker.alive:
                    worker = None
        finally:
            if worker:
                worker.close()


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


class _Worker:
    """One `python -m jobqueue.documents.worker` process: a JSON line in, a JSON line out per render.
    It says when it is ready: its start-up never counts against a document's time limit."""

    STARTUP_TIMEOUT = 120.0

    def __init__(self, limits: settings.PdfLimits, roots: list[Path]) -> None:
        self.limits = limits
        self.roots = roots
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(paths.PROJECT_ROOT / "plugins"), os.environ.get("PYTHONPATH")])
            ),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.documents.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        self.ready = False

    def _wait_ready(self) -> Retry | None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], self.STARTUP_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line or not json.loads(line).get("ready"):
            self._kill()
            return Retry(f"the PDF worker process did not start in {self.STARTUP_TIMEOUT:g} s")
        self.ready = True
        return None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def render(self, job_id: int, document: DocumentHtml, scratch: Path) -> RenderedPdf | NotRendered:
        if not self.ready and (error := self._wait_ready()) is not None:
            return error
        output = scratch / f"{job_id}.pdf"
        request = {
            "html": document.html,
            "folder": str(document.folder),
            "roots": [str(root) for root in self.roots],
            "output": str(output),
            "limits": dataclasses.asdict(self.limits),
        }
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return Retry("the PDF worker process died")
        ready, _, _ = select.select([self.process.stdout], [], [], self.limits.timeout_seconds)
        if not ready:
            self._kill()
            # The same data would take as long again: failed for good.
            return Failed(f"rendering took longer than the limit of {self.limits.timeout_seconds:g} s")
        line = self.process.stdout.readline()
        if not line:
            self._kill()
            return Retry(f"the PDF worker process died (exit code {self.process.returncode})")
        answer = json.loads(line)
        if "error" in answer:
            return (Failed if answer["permanent"] else Retry)(answer["error"])
        return RenderedPdf(output.read_bytes(), answer["refused_urls"])

    def close(self) -> None:
        """Lets the worker finish (end of its input), or kills it after 10 s."""
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._kill()

    def _kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(BrokenPipeError):
                pipe.close()  # type: ignore[union-attr]
