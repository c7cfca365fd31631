"""Faults played on purpose on a running stack under steady load, and what must hold after each:
every job ends `completed`, none is lost, and no message reaches the SMTP server twice (counted by
Message-ID). Used by tests/e2e/test_faults.py (`make test`, one round per fault) and by `make soak`
(many rounds, faults drawn at random).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import random
import re
import signal
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
from psycopg.types.json import Jsonb

from devtools.localpg import LocalCluster
from jobqueue import paths
from tests.e2e.conftest import MailStack
from tests.helpers import invoice

SMTP_OUTAGE_SECONDS = 20  # past two retries of a job (e^1 + e^2 s of backoff): the outage is felt
PAUSE_SECONDS = 15
SETTLE_TIMEOUT = 420
OUTCOMES: list[Outcome] = []  # every round played in this test run
# The rounds' summary, for the end of the run: written by each process that plays them (a pytest-xdist
# worker, under `make test`), shown by the one that reports (tests/conftest.py).
SUMMARY_DIR = paths.PROJECT_ROOT / "test-results"
SUMMARY_FILE = SUMMARY_DIR / f"faults-{os.getpid()}.txt"


def email(n: int) -> dict:
    return {"to": f"load{n}@example.com", "template": "welcome", "context": {"name": f"L{n}"}}


class Load(threading.Thread):
    """Adds an e-mail job every `interval` seconds and an invoice every `document_every` of them,
    until stopped; bursts on demand. Keeps every id it added, with when."""

    def __init__(self, database: str, interval: float = 0.1, document_every: int = 20) -> None:
        super().__init__(name="load", daemon=True)
        self.database = database
        self.interval = interval
        self.document_every = document_every
        self.added: dict[int, float] = {}  # job id -> monotonic time it was added
        self.documents: list[int] = []
        self.errors: list[str] = []
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.count = 0

    def _add(self, conn: psycopg.Connection, specs: list[dict]) -> None:
        # The database may be restarting (a fault): the application retries, as a real one would.
        rows = conn.execute("select id, identifier from worker.add_jobs(%s)", [Jsonb(specs)]).fetchall()
        now = time.monotonic()
        with self.lock:
            for job_id, identifier in rows:
                self.added[job_id] = now
                if identifier == "generate_pdf":
                    self.documents.append(job_id)

    def specs(self, count: int) -> list[dict]:
        specs = []
        for _ in range(count):
            self.count += 1
            if self.count % self.document_every == 0:
                payload = invoice(self.count, f"client{self.count}@example.com")
                specs.append({"identifier": "generate_pdf", "payload": payload})
            else:
                specs.append({"identifier": "send_email", "payload": email(self.count)})
        return specs

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        pending: list[dict] = []
        while not self.halt.wait(self.interval):
            if not pending:
                with self.lock:
                    pending = self.specs(1)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database, autocommit=True, connect_timeout=5)
                self._add(conn, pending)
                pending = []
            except psycopg.OperationalError as exc:
                self.errors.append(str(exc))
                conn = None
                time.sleep(0.5)
        if conn is not None:
            conn.close()

    def burst(self, count: int) -> None:
        with self.lock:
            specs = self.specs(count)
        self.add_now(specs)

    def add_now(self, specs: list[dict]) -> None:
        with psycopg.connect(self.database, autocommit=True) as conn:
            self._add(conn, specs)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


@dataclasses.dataclass
class Outcome:
    fault: str
    jobs: int
    median_s: float  # median add -> accepted of the round's e-mails
    back_s: float  # from the fault (or the end of the outage) to the first job enqueued after it done
    worst_s: float  # the longest add -> accepted of any e-mail added in the round
    drained_s: float  # from the fault to every job of the round completed
    duplicates: dict[str, int]


def component(root: int, name: str) -> psutil.Process:
    """The process of a component `make run` started (`python -m jobqueue.component <name>`)."""
    return _descendant(root, f"jobqueue.component {name}")


def render_server(root: int) -> psutil.Process:
    """The render server a component of `make run` started (`python -m jobqueue.documents.server`)."""
    return _descendant(root, "jobqueue.documents.server")


def _descendant(root: int, command: str) -> psutil.Process:
    for process in psutil.Process(root).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone, or a zombie (a killed process not yet reaped)
            if command in " ".join(process.cmdline()):
                return process
    raise LookupError(f"no live `{command}` under process {root}")


def invoices(load: Load, count: int) -> None:
    """`count` invoices at once, each with its e-mail, counted in the load's round."""
    with load.lock:
        first, load.count = load.count + 1, load.count + count
    numbers = range(first, first + count)
    load.add_now(
        [{"identifier": "generate_pdf", "payload": invoice(n, f"b{n}@example.com")} for n in numbers]
    )


class Faults:
    """The faults, each played on the stack of a MailStack: each returns the moment recovery is
    measured from (the fault itself, or the end of an outage)."""

    def __init__(self, running: MailStack) -> None:
        self.running = running
        self.env = running.stack.env
        self.airflow_db = self.running.database.rpartition("/")[0] + "/airflow"

    def kill_component(self, name: str) -> float:
        os.kill(component(self.running.stack.process.pid, name).pid, signal.SIGKILL)
        return time.monotonic()

    def running_task(self, dag_id: str, task_id: str, timeout: float = 120) -> psutil.Process:
        """The process running a task instance of `dag_id.task_id` (Airflow titles it
        `airflow worker -- <task instance id>`)."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.airflow_db, autocommit=True) as conn:
            while time.monotonic() < deadline:
                ids = [
                    str(row[0])
                    for row in conn.execute(
                        "select id from task_instance where dag_id = %s and task_id = %s "
                        "and state = 'running'",
                        [dag_id, task_id],
                    )
                ]
                for process in psutil.process_iter(["cmdline"]):
                    title = " ".join(process.info["cmdline"] or []).strip()
                    if any(title == f"airflow worker -- {ti}" for ti in ids):
                        return process
                time.sleep(0.05)
        raise AssertionError(f"no task instance of {dag_id}.{task_id} ran within {timeout} s")

    def kill_running(
        self, dag_id: str, task_id: str, within: tuple[float, float], more: Callable[[], None]
    ) -> float:
        """kill -9 of a process running `dag_id.task_id`, a random moment into it; if that task
        ended first, `more` work is added and the next one is taken."""
        for _ in range(5):
            more()
            process = self.running_task(dag_id, task_id)
            time.sleep(random.uniform(*within))
            try:
                process.kill()
                return time.monotonic()
            except psutil.NoSuchProcess:
                continue
        raise AssertionError(f"every {dag_id}.{task_id} ended before it could be killed")

    def kill_task(self, load: Load) -> float:
        """kill -9 of the process running `send` of send_email while it sends a batch."""
        return self.kill_running("send_email", "send", (0.05, 0.5), lambda: load.burst(400))

    def kill_render_task(self, load: Load) -> float:
        """kill -9 of the process running `render_pdf` while its PDF workers render a batch."""
        return self.kill_running("generate_pdf", "render_pdf", (0.3, 1.5), lambda: invoices(load, 40))

    def kill_render_server(self, load: Load) -> float:
        """kill -9 of the host's render server (documents/server.py) while a `render_pdf` task
        renders a batch with it: the task renders the rest with workers of its own, and the
        scheduler starts another server."""
        for _ in range(5):
            invoices(load, 40)
            self.running_task("generate_pdf", "render_pdf")
            time.sleep(random.uniform(0.3, 1.0))
            with contextlib.suppress(LookupError):
                render_server(self.running.stack.process.pid).kill()
                return time.monotonic()
        raise AssertionError("no render server was found while render_pdf ran")

    def while_sending(self, load: Load) -> None:
        """Returns once a send task runs, on a burst of 200 e-mails."""
        load.burst(200)
        self.running_task("send_email", "send")

    def kill_scheduler(self, load: Load) -> float:
        self.while_sending(load)
        return self.kill_component("scheduler")

    def kill_triggerer(self, load: Load) -> float:
        return self.kill_component("triggerer")

    def kill_dag_processor(self, load: Load) -> float:
        return self.kill_component("dag-processor")

    def restart_postgresql(self, load: Load) -> float:
        self.while_sending(load)
        cluster = LocalCluster(Path(self.env["WORKER_DATA_DIR"]) / "pg", int(self.env["WORKER_PG_PORT"]))
        cluster.stop()
        cluster.start()
        return time.monotonic()

    def smtp_outage(self, load: Load) -> float:
        self.running.smtp.stop()
        time.sleep(SMTP_OUTAGE_SECONDS)
        self.running.smtp.start()
        return time.monotonic()

    def nothing(self, load: Load) -> float:
        return time.monotonic()

    def pause_send_email(self, load: Load) -> float:
        """An operator pauses send_email while it sends, for PAUSE_SECONDS of load: none of the
        e-mails added meanwhile is claimed; then resumes it."""
        self.while_sending(load)
        with psycopg.connect(self.running.database, autocommit=True) as conn:
            conn.execute("select worker.pause_identifier('send_email', 'fault suite')")
            [before] = conn.execute("select max(id) from worker.jobs").fetchone()  # type: ignore[misc]
            time.sleep(PAUSE_SECONDS)
            taken = conn.execute(
                "select count(*) filter (where status <> 'queued'), count(*) from worker.jobs "
                "where identifier = 'send_email' and id > %s",
                [before],
            ).fetchone()
            assert taken is not None and taken[0] == 0 and taken[1] > 0, f"claimed while paused: {taken}"
            conn.execute("select worker.resume_identifier('send_email')")
        return time.monotonic()

    def rate_limit_send_email(self, load: Load) -> float:
        """An operator limits send_email to 20/s at run time, on a burst of 120 e-mails over the
        load: they take at least 5 s (120 less a bucket of 20, at 20 a second), then it is lifted.
        (That a limit delivers its rate, and never more, test_controls_e2e and `make bench` show.)"""
        with psycopg.connect(self.running.database, autocommit=True) as conn:
            conn.execute("select worker.set_rate_limit('send_email', '20/s')")
            [before] = conn.execute("select max(id) from worker.jobs").fetchone()  # type: ignore[misc]
            load.burst(120)
            burst = (
                "select count(*) filter (where status = 'completed'), "
                "count(*) filter (where status in ('queued', 'scheduled')), count(*) from worker.jobs "
                "where identifier = 'send_email' and id > %s and id <= %s"
            )
            [last] = conn.execute("select max(id) from worker.jobs").fetchone()  # type: ignore[misc]
            deadline = time.monotonic() + 120
            first_claim = all_claimed = None
            while True:
                completed, waiting, count = conn.execute(burst, [before, last]).fetchone() or (0, 0, 0)
                now = time.monotonic()
                if first_claim is None and waiting < count:
                    first_claim = now
                if all_claimed is None and waiting == 0:
                    all_claimed = now
                if completed == count:
                    break
                assert now < deadline, f"the limited burst did not drain: {completed}/{count}"
                time.sleep(0.2)
            # The claims, not the completions (which lag each run's claim by its own time, unevenly):
            # the bucket holds a second of the rate (20), the rest is claimed at 20 a second, so at
            # least (count - 20) / 20 s from the first claim seen to the last, less our polling's 1 s.
            assert first_claim is not None and all_claimed is not None
            seconds, least = all_claimed - first_claim, (count - 20) / 20 - 1
            assert seconds >= least, f"{count} e-mails at 20/s all claimed in {seconds:.1f} s (< {least:.1f})"
            conn.execute("select worker.set_rate_limit('send_email', 'none')")
        return time.monotonic()

    def all(self) -> dict[str, Callable[[Load], float]]:
        return {
            "none (the same load, no fault)": self.nothing,
            "kill -9 task (send, mid-batch)": self.kill_task,
            "kill -9 task (render_pdf, mid-batch)": self.kill_render_task,
            "kill -9 render server (mid-batch)": self.kill_render_server,
            "kill -9 scheduler": self.kill_scheduler,
            "kill -9 triggerer": self.kill_triggerer,
            "kill -9 dag-processor": self.kill_dag_processor,
            "PostgreSQL fast restart": self.restart_postgresql,
            f"SMTP server down {SMTP_OUTAGE_SECONDS} s": self.smtp_outage,
            f"send_email paused {PAUSE_SECONDS} s, then resumed": self.pause_send_email,
            "send_email rate-limited to 20/s on a burst": self.rate_limit_send_email,
        }


# The rounds of `make test` (test_faults.py), in this order on one stack; `make soak` draws from all.
KILLS = [
    "none (the same load, no fault)",
    "kill -9 task (send, mid-batch)",
    "kill -9 task (render_pdf, mid-batch)",
    "kill -9 render server (mid-batch)",
    "kill -9 scheduler",
    "kill -9 triggerer",
    "kill -9 dag-processor",
]
OUTAGES = [
    "PostgreSQL fast restart",
    f"SMTP server down {SMTP_OUTAGE_SECONDS} s",
    # An operator's controls, under the same guarantees.
    f"send_email paused {PAUSE_SECONDS} s, then resumed",
    "send_email rate-limited to 20/s on a burst",
]
ALL = KILLS + OUTAGES


def play(running: MailStack, fault: str, before_s: float | None = None, after_s: float = 6) -> Outcome:
    """One round: steady load (for 3 to 5 s unless `before_s` says), the fault, more load, then
    wait until every job of the round is done."""
    faults = Faults(running)
    load = Load(running.database)
    load.start()
    time.sleep(random.uniform(3, 5) if before_s is None else before_s)
    fault_at = faults.all()[fault](load)
    time.sleep(after_s)
    load.stop()
    with load.lock:
        added = dict(load.added)
        documents = list(load.documents)
    drained_at = settle(running, added, documents)
    emails = {job_id: at for job_id, at in added.items() if job_id not in documents}
    accepted = {job_id: at for job_id, at in first_acceptances(running).items() if job_id in emails}
    latency = [at - emails[job_id] for job_id, at in accepted.items()]
    after = [at for job_id, at in accepted.items() if emails[job_id] >= fault_at]
    outcome = Outcome(
        fault=fault,
        jobs=len(added),
        median_s=statistics.median(latency) if latency else float("nan"),
        back_s=min(after) - fault_at if after else float("nan"),
        worst_s=max(latency, default=float("nan")),
        drained_s=drained_at - fault_at,
        duplicates=duplicates(running),
    )
    OUTCOMES.append(outcome)
    SUMMARY_DIR.mkdir(parents=True, exist_ok=True)
    SUMMARY_FILE.write_text("\n".join(summary()[1:]) + "\n")
    return outcome


def summary() -> list[str]:
    """One line per round, in seconds: the median and the worst latency of the round, the first job
    enqueued after the fault done, every job done; and duplicates."""
    lines = ["fault | jobs | median latency | worst latency | first new job done | all done | duplicates"]
    for o in OUTCOMES:
        figures = [o.median_s, o.worst_s, o.back_s, o.drained_s]
        shown = " | ".join("-" if math.isnan(value) else f"{value:.1f}" for value in figures)
        lines.append(f"{o.fault} | {o.jobs} | {shown} | {len(o.duplicates)}")
    return lines


def settle(running: MailStack, added: dict[int, float], documents: list[int]) -> float:
    """Waits until every job added, and the e-mail job of every document, is completed; returns when."""
    keys = [f"document:{job_id}" for job_id in documents]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    states: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(running.database, autocommit=True) as conn:
                states = dict(
                    conn.execute(
                        "select status, count(*) from worker.jobs "
                        "where id = any(%s) or job_key = any(%s) group by 1",
                        [list(added), keys],
                    ).fetchall()
                )
                if states == {"completed": len(added) + len(documents)}:
                    return time.monotonic()
                errors = conn.execute(
                    "select id, status, last_error from worker.jobs where (id = any(%s) or "
                    "job_key = any(%s)) and status = 'failed'",
                    [list(added), keys],
                ).fetchall()
                if errors:
                    raise AssertionError(f"jobs failed for good: {errors[:5]}")
        except psycopg.OperationalError:
            pass
        time.sleep(0.25)  # "all done" is measured by this poll: a second's step lost half a second a round
    raise AssertionError(
        f"not every job completed within {SETTLE_TIMEOUT} s: {states}, wanted "
        f"{len(added) + len(documents)} completed"
    )


def first_acceptances(running: MailStack) -> dict[int, float]:
    """job id -> when the SMTP server first accepted its message (Message-ID `<job-ID@...>`)."""
    accepted: dict[int, float] = {}
    for mid, at in running.smtp.accepted():
        if match := re.fullmatch(r"<job-(\d+)@.*>", mid):
            accepted.setdefault(int(match.group(1)), at)
    return accepted


def duplicates(running: MailStack) -> dict[str, int]:
    counts = collections.Counter(mid for mid, _ in running.smtp.accepted())
    return {mid: n for mid, n in counts.items() if n > 1}
