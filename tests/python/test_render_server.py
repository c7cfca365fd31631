"""The host's render server (jobqueue/documents/server.py): its workers outlive a run, a run
renders with workers of its own when the server is killed mid-batch (nothing lost), a render past
its limit does not take the server with it, and the server ends with the component that started it.
Real processes throughout: the server, its WeasyPrint workers, kill -9."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from jobqueue import paths, settings
from jobqueue.documents import model, pool, rendering, server
from jobqueue.outcomes import Failed

EXAMPLE = json.loads((paths.INCLUDE_DIR / "examples" / "generate_pdf.json").read_text())
HTML = rendering.render_html(model.parse_payload(EXAMPLE))


def eventually(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.05)


def answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def workers_of(process: psutil.Process) -> list[int]:
    """The pids of the PDF worker processes a process started itself."""
    found = []
    for child in process.children():
        with contextlib.suppress(psutil.Error):
            if "jobqueue.documents.worker" in " ".join(child.cmdline()):
                found.append(child.pid)
    return found


@contextlib.contextmanager
def render_server(path: Path, workers: int = 1, idle_seconds: float = 300) -> Iterator[subprocess.Popen]:
    process = server.start(path, workers, idle_seconds)
    try:
        eventually(lambda: answers(path), "the render server answers")
        yield process
    finally:
        with contextlib.suppress(psutil.Error):
            left = psutil.Process(process.pid).children()
        process.kill()
        process.wait()
        for child in left:
            with contextlib.suppress(psutil.Error):
                child.kill()


@pytest.fixture
def socket_file(tmp_path: Path) -> Path:
    path = server.socket_path(tmp_path)
    assert path is not None
    return path


def renderer(tmp_path: Path, socket_file: Path, workers: int = 1, **kwargs) -> pool.PdfRenderer:
    slots = pool.RenderSlots(tmp_path / "slots", workers)
    return pool.PdfRenderer(workers=workers, slots=slots, server=socket_file, **kwargs)


def test_the_servers_worker_renders_batch_after_batch_and_the_run_starts_none(tmp_path, socket_file):
    with render_server(socket_file) as process:
        first = dict(renderer(tmp_path, socket_file).render_each({1: HTML, 2: HTML}))
        [worker] = workers_of(psutil.Process(process.pid))
        second = dict(renderer(tmp_path, socket_file).render_each({3: HTML}))
        assert workers_of(psutil.Process(process.pid)) == [worker]  # the same process, kept
    assert workers_of(psutil.Process()) == []  # the run started no worker of its own
    for rendered in [*first.values(), *second.values()]:
        assert isinstance(rendered, rendering.RenderedPdf) and rendered.content.startswith(b"%PDF")


def test_a_run_whose_server_is_killed_mid_batch_renders_every_document_itself(tmp_path, socket_file):
    with render_server(socket_file) as process:
        renders = renderer(tmp_path, socket_file).render_each({n: HTML for n in range(5)})
        results = dict([next(renders)])
        [worker] = workers_of(psutil.Process(process.pid))
        process.send_signal(signal.SIGKILL)
        results.update(renders)
        # The server's worker saw the end of its input and ended: nothing left behind.
        eventually(lambda: not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie",
                   "the killed server's worker ends")  # fmt: skip
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert all(isinstance(r, rendering.RenderedPdf) for r in results.values()), results


def test_a_render_past_its_limit_fails_and_the_server_renders_the_next_with_another_worker(
    tmp_path, socket_file
):
    huge = copy.deepcopy(EXAMPLE)
    huge["context"]["lines"] = huge["context"]["lines"] * 2000
    limits = settings.PdfLimits(timeout_seconds=2, max_bytes=20_000_000, max_html_bytes=50_000_000)
    with render_server(socket_file) as process:
        slow = dict(
            renderer(tmp_path, socket_file, limits=limits).render_each(
                {1: rendering.render_html(model.parse_payload(huge))}
            )
        )
        assert workers_of(psutil.Process(process.pid)) == []  # killed at the limit
        after = dict(renderer(tmp_path, socket_file, limits=limits).render_each({2: HTML}))
        assert process.poll() is None
    assert isinstance(slow[1], Failed) and "longer than the limit of 2 s" in slow[1].error
    assert isinstance(after[2], rendering.RenderedPdf)


def test_a_worker_idle_past_its_time_retires(tmp_path, socket_file):
    with render_server(socket_file, idle_seconds=1) as process:
        dict(renderer(tmp_path, socket_file).render_each({1: HTML}))
        eventually(lambda: workers_of(psutil.Process(process.pid)) == [], "the idle worker retires")
        after = dict(renderer(tmp_path, socket_file).render_each({2: HTML}))  # and one starts again
    assert isinstance(after[2], rendering.RenderedPdf)


COMPONENT = """
import sys, time
from pathlib import Path
from jobqueue.documents import server
server.keep_running(Path(sys.argv[1]), workers=1, idle_seconds=300)
time.sleep(600)
"""


def test_the_server_ends_with_its_component_and_another_components_takes_the_socket_over(
    tmp_path, socket_file
):
    """Two components on one host (two schedulers, or a scheduler and a Celery worker): one server
    serves, the other waits; kill -9 of the first component ends its server, and the second's serves."""
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins")}
    components = [
        subprocess.Popen([sys.executable, "-c", COMPONENT, str(socket_file)], env=env) for _ in range(2)
    ]
    try:
        eventually(lambda: answers(socket_file), "a render server answers")
        servers = {c.pid: psutil.Process(c.pid).children() for c in components}
        assert all(len(children) == 1 for children in servers.values()), servers
        dict(renderer(tmp_path, socket_file).render_each({1: HTML}))
        serving = next(c for c in components if workers_of(servers[c.pid][0]))
        waiting = next(c for c in components if c is not serving)
        [its_server] = servers[serving.pid]
        serving.kill()
        eventually(lambda: not its_server.is_running() or its_server.status() == "zombie",
                   "the killed component's server ends")  # fmt: skip
        eventually(lambda: answers(socket_file), "the other component's server answers")
        results = dict(renderer(tmp_path, socket_file).render_each({2: HTML}))
        assert isinstance(results[2], rendering.RenderedPdf)
        [other] = servers[waiting.pid]
        eventually(lambda: workers_of(other) != [], "the other component's server renders")
        assert workers_of(psutil.Process()) == []
    finally:
        for component in components:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(component.pid).children(recursive=True):
                    child.kill()
            component.kill()
            component.wait()


def test_a_deep_data_folder_gets_a_socket_path_a_unix_socket_can_have(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = server.socket_path(deep)
    assert path is not None and len(str(path)) <= 107 and path != server.socket_path(tmp_path / "other")
    assert (path.parent.stat().st_mode & 0o777) == 0o700
