"""The host's render server: PDF worker processes kept alive across runs.

A worker costs 0.75 CPU-s to start (an interpreter, WeasyPrint, the fonts) and a render 0.1 s: a run
that started its own paid that for each batch. The component that runs a host's tasks (the
scheduler with the LocalExecutor, a Celery worker: jobqueue/component.py) starts this server beside
it (`python -m jobqueue.documents.server`); a run's renderer (pool.py) asks it over a Unix socket in
the data folder, one JSON request per line, the worker protocol (worker.py), and starts workers of
its own when no server answers (a KubernetesExecutor pod, `dag.test()`, a server just killed).

The server starts a worker when a render needs one, keeps at most `workers`, kills one past a
render's time limit (and starts another for the next render), and retires one idle for
`idle_seconds`. It serves only its own user (SO_PEERCRED): a request names files to read and write.
It ends with its component (it watches the parent's pid); with two components on a host, the
second's server waits on the data folder's lock and takes the socket over when the first's ends.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from jobqueue.documents.worker import Answer, WorkerProcess, child_environment, error

log = logging.getLogger(__name__)

# A Unix socket's path is at most 107 bytes on Linux: a deeper data folder gets one in a private
# folder of the system's temporary one, named after the data folder.
_MAX_SOCKET_PATH = 100


def socket_path(data_dir: Path) -> Path | None:
    """Where the host's render server listens; None when there is no safe place (the runs then
    render with workers of their own)."""
    path = data_dir / "pdf-render.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    private = Path(tempfile.gettempdir()) / f"jobqueue-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    if private.is_symlink() or private.stat().st_uid != os.getuid():  # made by someone else first
        log.warning("%s is not this user's own folder: no render server (a shorter WORKER_DATA_DIR)", private)
        return None
    return private / f"pdf-render-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]}.sock"


class Connection:
    """A run's connection to the host's render server; `open` is None when none answers."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.settimeout(timeout)
        self.sock = sock
        self.stream = sock.makefile("rw", encoding="utf-8")

    @classmethod
    def open(cls, path: Path | None, timeout: float) -> Connection | None:
        if path is None:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
        except OSError:  # no server (yet, or any more): the caller renders with workers of its own
            sock.close()
            return None
        return cls(sock, timeout)

    def ask(self, request: dict[str, Any]) -> Answer | None:
        """The server's answer, or None when it went away (killed, restarted) or did not answer in
        time: the caller asks a worker of its own, as rendering twice writes the same file."""
        try:
            self.stream.write(json.dumps(request) + "\n")
            self.stream.flush()
            line = self.stream.readline()
        except OSError:
            return None
        return json.loads(line) if line else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        self.sock.close()


class _Kept:
    """A worker slot of the server: its process, if started, and when it last rendered."""

    def __init__(self) -> None:
        self.worker: WorkerProcess | None = None
        self.used_at = time.monotonic()


class WorkerPool:
    """At most `count` workers, started on demand and kept; the most recently used is lent first,
    so that in quiet hours the others go idle and retire."""

    def __init__(self, count: int, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self.free = queue.LifoQueue[_Kept]()
        for _ in range(count):
            self.free.put(_Kept())

    def ask(self, request: dict[str, Any]) -> Answer:
        kept = self.free.get()
        try:
            kept.worker = kept.worker or WorkerProcess()
            answer = kept.worker.ask(request)
        except Exception as exc:  # no process (fork refused), a malformed request: the next one starts afresh
            log.exception("a render request failed")
            answer = error(f"could not render: {type(exc).__name__}: {exc}")
            if kept.worker is not None:
                kept.worker.close()
                kept.worker = None
        finally:
            if kept.worker is not None and not kept.worker.alive:  # killed past its time limit
                kept.worker = None
            kept.used_at = time.monotonic()
            self.free.put(kept)
        return answer

    def retire_idle(self) -> None:
        now = time.monotonic()
        lent_back: list[_Kept] = []
        with contextlib.suppress(queue.Empty):
            while True:
                lent_back.append(self.free.get_nowait())
        for kept in lent_back:
            if kept.worker is not None and now - kept.used_at > self.idle_seconds:
                kept.worker.close()
                kept.worker = None
        for kept in reversed(lent_back):  # the same order: the most recently used on top
            self.free.put(kept)

    def close(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                kept = self.free.get_nowait()
                if kept.worker is not None:
                    kept.worker.kill()


class RenderServer:
    def __init__(self, path: Path, pool: WorkerPool, parent: int) -> None:
        self.path = path
        self.pool = pool
        self.parent = parent

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent

    def serve(self) -> None:
        """Waits for the host's socket (another component's server may hold it), then serves
        until the component that started it ends."""
        with open(self.path.with_suffix(".lock"), "a") as lock:
            while not _try_lock(lock):
                if not self.parent_alive():
                    return
                time.sleep(0.5)
            self.path.unlink(missing_ok=True)  # a server killed by kill -9 leaves its socket file
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(self.path))
            os.chmod(self.path, 0o600)
            listener.listen(64)
            listener.settimeout(1.0)
            log.info("render server %d serving on %s", os.getpid(), self.path)
            try:
                self._accept(listener)
            finally:
                listener.close()
                self.path.unlink(missing_ok=True)
                self.pool.close()

    def _accept(self, listener: socket.socket) -> None:
        looked = time.monotonic()
        while self.parent_alive():
            if time.monotonic() - looked >= 1.0:  # about once a second, busy or not
                looked = time.monotonic()
                self.pool.retire_idle()
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if _peer_uid(conn) != os.getuid():
                conn.close()
                continue
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rw", encoding="utf-8") as stream:
            try:
                for line in stream:
                    stream.write(json.dumps(self.pool.ask(json.loads(line))) + "\n")
                    stream.flush()
            except (OSError, ValueError):  # the run went away (killed mid-render), or sent nonsense
                return


def _try_lock(lock: Any) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return int(uid)


def start(path: Path, workers: int, idle_seconds: float) -> subprocess.Popen[bytes]:
    """A render server, child of this process, on `path`."""
    command = [
        sys.executable, "-m", "jobqueue.documents.server", "--socket", str(path),
        "--workers", str(workers), "--idle-seconds", str(idle_seconds), "--parent", str(os.getpid()),
    ]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, env=child_environment())


def keep_running(path: Path, workers: int, idle_seconds: float) -> threading.Thread:
    """A render server beside this process for as long as it lives, started again when it ends:
    without one the host's runs start workers of their own (correct, but 0.75 CPU-s each)."""

    def supervise() -> None:
        delay = 1.0
        while True:
            started = time.monotonic()
            code = start(path, workers, idle_seconds).wait()
            # One that keeps dying at once (a broken install) is started less and less often.
            delay = 1.0 if time.monotonic() - started > 60 else min(60.0, delay * 2)
            log.warning("the render server exited with code %s; starting another in %g s", code, delay)
            time.sleep(delay)

    thread = threading.Thread(target=supervise, name="jobqueue-render-server", daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--idle-seconds", type=float, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the `finally`s close the socket and workers
    pool = WorkerPool(args.workers, args.idle_seconds)
    RenderServer(args.socket, pool, args.parent).serve()


if __name__ == "__main__":
    main()
