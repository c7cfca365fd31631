"""A stack of its own, started the way `make run` starts it: what the end-to-end tests and the
benchmarks share."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from jobqueue import paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_path() -> str:
    """The job package and the development tooling, for a process this harness starts."""
    return os.pathsep.join([str(paths.PROJECT_ROOT / "plugins"), str(paths.PROJECT_ROOT)])


STARTUP_TIMEOUT = 300


class RunningStack:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.stack", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self.password = self._wait_for_banner()
        self.pids = {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)}

    def _wait_for_banner(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                break
            self.output.append(line)
            if match := re.match(r"\s+Password:\s+(\S+)", line):
                password = match.group(1)
            if line.startswith("Ctrl-C or `make stop`"):
                return password
        raise AssertionError("the stack did not come up:\n" + "".join(self.output))

    def stop_with(self, how: str) -> None:
        if self.process.returncode is not None:
            return
        if how == "sigint":
            self.process.send_signal(signal.SIGINT)
        else:
            if how == "kill -9, then make stop":  # the supervisor dies; its components do not
                self.process.kill()
                self.process.wait()
            else:
                assert how == "make stop", how
            subprocess.run(
                [sys.executable, "-m", "devtools.stack", "stop"], env=self.env, check=True, timeout=120
            )
        rest, _ = self.process.communicate(timeout=120)
        self.output.append(rest)


# A data folder prepared once (`python -m devtools.stack prepare`: PostgreSQL initialised, both
# databases migrated), which every stack of a test run copies instead of preparing its own: about
# 8 s of CPU less per stack. tests/conftest.py names it, and builds it while the test processes
# start; otherwise the first process to need it does.
PREPARED_DATA = "WORKER_TEST_PREPARED_DATA"


def stack_environment(prefix: str, *, fresh: bool = False) -> dict[str, str]:
    """The environment of a stack of its own: a data dir of its own (a copy of PREPARED_DATA if
    set, unless `fresh`), free ports, no outside settings."""
    data = Path(tempfile.mkdtemp(prefix=prefix))
    data.chmod(0o755)  # PostgreSQL may run as another user
    prepared = os.environ.get(PREPARED_DATA)
    if prepared and not fresh:
        try:
            # -a: the cluster's files keep their owner (PostgreSQL may run as another user).
            subprocess.run(["cp", "-a", f"{prepared_data(Path(prepared))}/.", str(data)], check=True)
        except BaseException:
            subprocess.run(["rm", "-rf", str(data)], check=False)
            raise
    return _environment(data)


def _environment(data: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WORKER_"))},
        "PYTHONPATH": python_path(),
        "WORKER_DATA_DIR": str(data),
        "WORKER_PG_PORT": str(free_port()),
        "WORKER_SMTP_PORT": str(free_port()),
        "AIRFLOW_API_PORT": str(free_port()),
    }


def prepared_data(folder: Path) -> Path:
    """`folder`, prepared by `devtools.stack prepare` if no process did yet; a process that finds
    another preparing it waits (a file lock)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    done = folder / "prepared"
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            subprocess.run(["rm", "-rf", str(folder)], check=True)
            folder.mkdir(mode=0o755)
            result = subprocess.run(
                [sys.executable, "-m", "devtools.stack", "prepare"],
                env=_environment(folder), capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"preparing {folder} failed:\n{result.stdout}{result.stderr}")
            done.touch()
    return folder


@contextmanager
def own_stack_environment(prefix: str, *, fresh: bool = False) -> Iterator[dict[str, str]]:
    """stack_environment(prefix), and afterwards whatever was started in it stopped and its data gone.
    Its PostgreSQL does not sync to disk (WORKER_PG_DURABLE): the data is gone after the test, and
    no test crashes the machine (a fast restart loses nothing either way). The bench keeps `make
    run`'s durable cluster."""
    env = stack_environment(prefix, fresh=fresh) | {"WORKER_PG_DURABLE": "false"}
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-m", "devtools.stack", "stop"], env=env, timeout=120)
        subprocess.run(["rm", "-rf", env["WORKER_DATA_DIR"]], check=False)
