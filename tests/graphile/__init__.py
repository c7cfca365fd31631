"""graphile-worker 0.18.0 for the tests: installed from npm by its lock beside this file, its schema put
into a test database, and the statements its worker runs (claim, complete, fail) as the library builds
them (statements.mjs)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def install(folder: Path) -> Path:
    """`npm ci` of this folder's lock into `folder`; returns its node_modules."""
    npm = shutil.which("npm")
    if not npm:
        raise RuntimeError(
            "npm is needed to install graphile-worker 0.18.0 for these tests (apt-get install npm)"
        )
    for name in ("package.json", "package-lock.json", "statements.mjs"):
        shutil.copy(HERE / name, folder / name)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return folder / "node_modules"


def install_schema(node_modules: Path, database_url: str) -> None:
    """graphile-worker's own migrations, as its CLI applies them."""
    subprocess.run(
        [str(node_modules / ".bin" / "graphile-worker"), "--schema-only", "-c", database_url],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


@dataclass(frozen=True)
class Statement:
    """One statement as node-postgres would send it: `$1` placeholders, every value as text."""

    text: str
    values: tuple[str | None, ...]


class WorkerStatements:
    """graphile-worker's worker-side statements, built by the installed library (statements.mjs)."""

    def __init__(self, node_modules: Path, database_url: str) -> None:
        script = node_modules.parent / "statements.mjs"
        self.process = subprocess.Popen(
            ["node", str(script), str(node_modules), database_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def _ask(self, request: dict[str, Any]) -> list[Statement]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"statements.mjs exited with {self.process.wait()} on {request}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"statements.mjs: {reply['error']}")
        return [Statement(s["text"], tuple(s["values"])) for s in reply["statements"]]

    def get_job(self, worker_id: str, tasks: list[str], forbidden_flags: list[str] | None) -> Statement:
        """The claim of graphile-worker's default worker: one job per call (no local queue)."""
        [statement] = self._ask(
            {
                "op": "get_jobs",
                "worker_id": worker_id,
                "tasks": tasks,
                "flags": forbidden_flags,
                "batch_size": 1,
            }
        )
        return statement

    def complete_jobs(self, worker_id: str, jobs: list[dict[str, int | None]]) -> list[Statement]:
        """What the worker runs when its tasks succeed (`jobs`: id and job_queue_id of each)."""
        return self._ask({"op": "complete_jobs", "worker_id": worker_id, "jobs": jobs})

    def fail_jobs(self, worker_id: str, jobs: list[dict[str, int | None]], message: str) -> list[Statement]:
        """What the worker runs when its tasks throw."""
        return self._ask({"op": "fail_jobs", "worker_id": worker_id, "jobs": jobs, "message": message})

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe:
                pipe.close()
        self.process.wait(timeout=10)
