"""The dag-processor parses a DAG file again as soon as a file it reads changes, not only its own.

Airflow parses a DAG file again when the file itself changes (its mtime) or after
`min_file_process_interval` (600 s here, to keep an idle stack cheap). Some of our DAG files read
other files when parsed: dags/crontab.py makes a DAG per line of the crontab file, and the trigger
forms of send_email and generate_pdf offer the template folders found. An edit of those alone would
take up to ten minutes to show. So a thread in the dag-processor looks at them every few seconds
and, when one changed, asks Airflow to parse the DAG file that reads it: a row in
`dag_priority_parsing_request`, what the UI's "Reparse DAG file" button writes, which the
dag-processor takes up at its next loop, at once (parsing_idle.wake ends its idle wait).
`python -m jobqueue.component dag-processor` starts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path

from jobqueue import parsing_idle, project, settings

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
Fingerprint = Callable[[], Hashable]


def _file(path: Path) -> Fingerprint:
    def fingerprint() -> Hashable:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    return fingerprint


def _templates(kind: str) -> Fingerprint:
    return lambda: tuple(project.template_names(settings.template_dirs(kind)))


def watched() -> dict[str, Fingerprint]:
    """{a DAG file of the product's dags/ folder: what else it reads when parsed}."""
    crontab, _ = settings.crontab()
    return {
        "crontab.py": _file(crontab),
        "send_email.py": _templates("email"),
        "generate_pdf.py": _templates("pdf"),
    }


def request_parse(relative_fileloc: str, bundle: str = project.PRODUCT_BUNDLE) -> None:
    """Asks the dag-processor to parse a file of a bundle at its next loop (once: a request already
    waiting for it stands)."""
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        waiting = session.scalar(
            select(DagPriorityParsingRequest.id).where(
                DagPriorityParsingRequest.bundle_name == bundle,
                DagPriorityParsingRequest.relative_fileloc == relative_fileloc,
            )
        )
        if waiting is None:
            session.add(DagPriorityParsingRequest(bundle_name=bundle, relative_fileloc=relative_fileloc))


class Watcher:
    def __init__(self, files: dict[str, Fingerprint], poll_seconds: float = POLL_SECONDS) -> None:
        self.files = files
        self.poll_seconds = poll_seconds
        self.seen = {name: fingerprint() for name, fingerprint in files.items()}

    def check(self) -> list[str]:
        """The DAG files whose inputs changed since the last look; each is asked to be parsed."""
        changed = []
        for name, fingerprint in self.files.items():
            now = fingerprint()
            if now != self.seen[name]:
                request_parse(name)  # before remembering it: a failed request is made again
                self.seen[name] = now
                changed.append(name)
                log.info("%s reads a file that changed: asked the dag-processor to parse it again", name)
        if changed:
            parsing_idle.wake()  # its loop may be in a long idle wait
        return changed

    def run(self) -> None:
        while True:
            time.sleep(self.poll_seconds)
            try:
                self.check()
            except Exception:  # the metadata database away for a moment: look again next time
                log.exception("looking for changed inputs of DAG files failed; trying again")


def install() -> None:
    """Starts the watcher in a daemon thread of this process (the dag-processor's)."""
    watcher = Watcher(watched())
    threading.Thread(target=watcher.run, name="jobqueue-reparse", daemon=True).start()
    log.info("watching what %s read, every %g s", ", ".join(watcher.files), watcher.poll_seconds)
