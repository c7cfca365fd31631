"""make bench: our stack and the systems it replaces side by side, in one run, on this machine.

One stack (`make run`'s supervisor, a throwaway PostgreSQL, stock settings) sending to the
graphile-worker harness's own SMTP sink (bench/graphile-worker/smtp-sink.mjs), so both systems' mail
lands on the same receiver. On that stack, in order:
  4. footprint: CPU and PSS of the whole idle stack (PostgreSQL included) over 60 s;
  2. trickle latency: 100 send_email jobs, one every 2 s, add_job -> accepted by the sink;
  1. burst: 10,000 send_email jobs in one statement, until all are accepted and completed
     (BENCH_REPEATS times, median), with the footprint under that load;
  7. rate limit: 300 send_email jobs at once with send_email limited to 10/s: the rate delivered;
  3. documents: 1,000 invoice jobs until every PDF is rendered and its e-mail accepted, between two
     measures of raw WeasyPrint on our invoice on all cores (the reference).
Then 6: a second stack on the CeleryExecutor (a Redis of its own on loopback, one Celery worker),
the burst of case 1 again.
Then graphile-worker 0.18 through its harness, bench/graphile-worker (all its modes, best kept, same
N; its send_email task, and its noop task, the queue's own cost, beside case 8's one-type burst of a
job type that returns its payload), the PDF engines' harness,
bench/pdf-render (puppeteer-core driving Debian's Chromium, and WeasyPrint, on its own invoice), and
case 5 (bench/table_scale.py). Each harness installs what it runs from the registries by its locks
(npm ci, pip) into a scratch folder.

BENCH_QUICK=1: a small version in a few minutes. BENCH_N, BENCH_REPEATS, BENCH_CASES (e.g. "1,5"),
BENCH_TRICKLE_JOBS, BENCH_RATE_JOBS, BENCH_DOCUMENTS, BENCH_IDLE_SECONDS, BENCH_CALM_SECONDS (no DAG
run for that long before a case: 5), BENCH_TABLE_SCALE (table_scale.py's arguments),
BENCH_GRAPHILE_MODES, BENCH_LATENCY_SAMPLES (graphile-worker's) and BENCH_RAW_PDFS override;
tests/test_bench_smoke.py makes them smaller still, to see every case run.
Writes <time>.json and <time>.md under bench/results/ (or BENCH_RESULTS).
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.types.json import Jsonb

from bench import many_types, trickle
from bench.waiting import log, until_done, wait_until_idle
from devtools.harness import RunningStack, free_port, stack_environment
from jobqueue import paths, settings

QUICK = os.environ.get("BENCH_QUICK") == "1"
N = int(os.environ.get("BENCH_N") or (300 if QUICK else 10_000))
REPEATS = int(os.environ.get("BENCH_REPEATS") or (1 if QUICK else 3))
TRICKLE_JOBS = int(os.environ.get("BENCH_TRICKLE_JOBS") or (10 if QUICK else 100))
DOCUMENTS = int(os.environ.get("BENCH_DOCUMENTS") or (20 if QUICK else 1_000))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS") or (15 if QUICK else 60))
RATE_JOBS = int(os.environ.get("BENCH_RATE_JOBS") or (100 if QUICK else 300))
CASES = {c.strip() for c in (os.environ.get("BENCH_CASES") or "1,2,3,4,5,6,7,8").split(",")}
TYPES = int(os.environ.get("BENCH_TYPES") or 40)
TYPE_JOBS = int(os.environ.get("BENCH_TYPE_JOBS") or (400 if QUICK else 4_000))
HARNESSES = paths.PROJECT_ROOT / "bench"
GRAPHILE = HARNESSES / "graphile-worker"
PDF_ENGINES = HARNESSES / "pdf-render"
RESULTS = Path(os.environ.get("BENCH_RESULTS") or paths.PROJECT_ROOT / "bench" / "results")
INVOICE = json.loads((paths.INCLUDE_DIR / "examples" / "generate_pdf.json").read_text())


def wait_until_up(probe: Callable[[], object], what: str, seconds: float = 20) -> None:
    """Until `probe` answers without an OSError (a server we started is listening)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


class Sink:
    """The graphile-worker harness's counting SMTP sink (Node.js), with its XCOUNT/XRESET commands."""

    def __init__(self) -> None:
        script = GRAPHILE / "smtp-sink.mjs"
        if not script.exists():
            raise SystemExit(f"no SMTP sink at {script}")
        self.port = free_port()
        self.process = subprocess.Popen(
            ["node", str(script), str(self.port), "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._control: tuple[socket.socket, Any] | None = None
        wait_until_up(lambda: self.command("XRESET"), "the SMTP sink")

    def command(self, verb: str) -> str:
        """On one control connection, kept: case 2 asks every 5 ms while it waits for a message,
        and a connection per question (a socket, the greeting, a TIME_WAIT left behind) was load
        on the two cores it measured: with one, case 2's p50 went 0.41-0.50 -> 0.34-0.38 s, and
        case 1's burst right after it 980 -> 1,150-1,255 jobs/s (2,171 on a stack that ran no
        trickle first: the rest of that gap is the planner's statistics of the job tables, taken
        while they were nearly empty; README, Performance)."""
        if self._control is None:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            stream = sock.makefile("rb")
            stream.readline()  # the greeting
            self._control = (sock, stream)
        sock, stream = self._control
        sock.sendall(f"{verb}\r\n".encode())
        return stream.readline().decode().strip()

    def count(self) -> tuple[int, float]:
        """(messages accepted, when the last one was, epoch seconds)."""
        _, count, _first, last = self.command("XCOUNT").split()
        return int(count), float(last) / 1000

    @property
    def airflow_uri(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?disable_ssl=true&disable_tls=true&timeout=10"

    def stop(self) -> None:
        if self._control is not None:
            sock, stream = self._control
            stream.close()
            sock.close()
        self.process.terminate()
        self.process.wait(timeout=10)


class Footprint:
    """CPU (all processes of the stack, PostgreSQL included, children reaped meanwhile too) and PSS."""

    def __init__(self, stack: RunningStack, data_dir: str) -> None:
        self.stack = stack
        self.data_dir = data_dir

    def processes(self) -> list[psutil.Process]:
        found = {}
        roots = [psutil.Process(self.stack.process.pid)]
        for process in psutil.process_iter(["cmdline"]):
            if self.data_dir in " ".join(process.info["cmdline"] or []):
                roots.append(process)  # the postmaster (pg_ctl detached it from the supervisor)
        for root in roots:
            try:
                for process in [root, *root.children(recursive=True)]:
                    found[process.pid] = process
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes():
            try:
                t = process.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
        return total

    def pss_mib(self) -> float:
        total = 0
        for process in self.processes():
            try:
                total += process.memory_full_info().pss
            except psutil.Error:
                continue
        return total / 2**20

    def measure(self, seconds: float | None = None, until: Callable[[], bool] | None = None) -> dict:
        """CPU in % of one core over the window, PSS median and max of samples every second."""
        start_cpu, start = self.cpu_seconds(), time.monotonic()
        samples = []
        while True:
            samples.append(self.pss_mib())
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            if until is not None and until():
                break
            time.sleep(1)
        elapsed = time.monotonic() - start
        return {
            "seconds": round(elapsed, 1),
            "cpu_percent_of_one_core": round(100 * (self.cpu_seconds() - start_cpu) / elapsed, 1),
            "pss_mib_median": round(statistics.median(samples)),
            "pss_mib_max": round(max(samples)),
        }


def send_email_specs(n: int, prefix: str) -> list[dict]:
    return [
        {"identifier": "send_email",
         "payload": {"to": f"{prefix}{i}@example.com", "template": "welcome", "context": {"name": f"U{i}"}}}
        for i in range(n)
    ]  # fmt: skip


def burst(conn: psycopg.Connection, sink: Sink, footprint: Footprint, run: int) -> dict:
    specs = send_email_specs(N, f"b{run}-")
    before = sink.count()[0]
    start = time.monotonic()
    ids = [row[0] for row in conn.execute("select id from worker.add_jobs(%s)", [Jsonb(specs)])]
    enqueue_s = time.monotonic() - start
    done = threading.Event()
    load: dict = {}
    sampler = threading.Thread(target=lambda: load.update(footprint.measure(until=done.is_set)))
    sampler.start()
    until_done(conn, ids, 1800, sink, before + N)
    total_s = time.monotonic() - start
    done.set()
    sampler.join()
    not_completed = conn.execute(
        "select count(*) from worker.jobs where id = any(%s) and status <> 'completed'", [ids]
    ).fetchone()[0]  # type: ignore[index]
    return {
        "n": N, "enqueue_s": round(enqueue_s, 3), "total_s": round(total_s, 2),
        "jobs_per_s": round(N / total_s, 1), "not_completed": not_completed,
        "mails": sink.count()[0] - before, "footprint": load,
    }  # fmt: skip


def rate_limited(conn: psycopg.Connection, sink: Sink) -> dict:
    """RATE_JOBS e-mails at once, send_email limited to RATE_LIMIT a second by an operator: the rate
    delivered from enqueue to the last mail accepted (the bucket's first second's worth included),
    and over how many DAG runs."""
    conn.execute("select worker.set_rate_limit('send_email', %s)", [f"{RATE_LIMIT:g}/s"])
    try:
        before = sink.count()[0]
        start = time.monotonic()
        ids = [
            row[0]
            for row in conn.execute(
                "select id from worker.add_jobs(%s)", [Jsonb(send_email_specs(RATE_JOBS, "r"))]
            )
        ]
        until_done(conn, ids, 600, sink, before + RATE_JOBS)
        total_s = time.monotonic() - start
    finally:
        conn.execute("select worker.set_rate_limit('send_email', null)")
    runs = conn.execute(
        "select count(distinct last_worker) from worker.jobs where id = any(%s)", [ids]
    ).fetchone()
    return {
        "jobs": RATE_JOBS, "limit_per_s": RATE_LIMIT, "total_s": round(total_s, 2),
        "jobs_per_s": round(RATE_JOBS / total_s, 2), "runs": runs[0] if runs else None,
        # Never above: the bucket lets its second's worth go at once, then the rate.
        "least_s": round((RATE_JOBS - RATE_LIMIT) / RATE_LIMIT, 2),
    }  # fmt: skip


def trickle_latency(conn: psycopg.Connection, sink: Sink, metadata_db: str) -> dict:
    """One job every 2 s; the sink's own acceptance time of each new message (one at a time)."""
    sent: list[tuple[int, float]] = []
    accepted: list[float] = []
    for n in range(TRICKLE_JOBS):
        count, _ = sink.count()
        payload = {"to": f"t{n}@example.com", "template": "welcome", "context": {"name": f"T{n}"}}
        added = time.time()
        row = conn.execute("select id from worker.add_job('send_email', %s)", [Jsonb(payload)]).fetchone()
        sent.append((row[0], added))  # type: ignore[index]
        deadline = added + 30
        while time.time() < deadline:
            now_count, last = sink.count()
            if now_count > count:
                accepted.append(last)
                break
            time.sleep(0.005)
        time.sleep(max(0.0, added + 2.0 - time.time()))
    latencies = [at - added for (_, added), at in zip(sent, accepted, strict=False)]
    records = conn.execute(
        "select id, created_at, last_worker as worker from worker.jobs where id = any(%s)",
        [[job_id for job_id, _ in sent]],
    ).fetchall()
    with psycopg.connect(metadata_db) as meta:
        stages = meta.execute(
            trickle.STAGES,
            [Jsonb([{"id": r[0], "created_at": r[1].isoformat(), "worker": r[2]} for r in records])],
        ).fetchall()
    return {
        "jobs": TRICKLE_JOBS, "gap_s": 2.0, "delivered": len(accepted),
        "latency": trickle.summary(latencies) if latencies else None,
        "breakdown": trickle.breakdown(stages, dict(sent)),
    }  # fmt: skip


def documents(conn: psycopg.Connection) -> dict:
    specs = [
        {"identifier": "generate_pdf",
         "payload": {**INVOICE, "context": {**INVOICE["context"], "number": f"B-{i}"}}}
        for i in range(DOCUMENTS)
    ]  # fmt: skip
    start = time.monotonic()
    ids = [row[0] for row in conn.execute("select id from worker.add_jobs(%s)", [Jsonb(specs)])]
    until_done(conn, ids, 3600)
    rendered_s = time.monotonic() - start
    mails = (
        conn.execute(
            "select array_agg(id) from worker._jobs where identifier = 'send_email' and created_at >="
            " (select min(created_at) from worker._jobs where id = any(%s))",
            [ids],
        ).fetchone()[0]
        or []
    )  # type: ignore[index]
    until_done(conn, mails, 1800)
    total_s = time.monotonic() - start
    failed = conn.execute(
        "select count(*) from worker.jobs where id = any(%s) and status <> 'completed'", [ids]
    ).fetchone()[0]  # type: ignore[index]
    return {
        "documents": DOCUMENTS, "pdfs_rendered_s": round(rendered_s, 2),
        "pdfs_per_s": round(DOCUMENTS / rendered_s, 2), "with_mail_s": round(total_s, 2),
        "not_completed": failed,
    }  # fmt: skip


class Redis:
    """A Redis of the bench's own on loopback (the Celery broker of case 6), keeping nothing."""

    def __init__(self) -> None:
        server = shutil.which("redis-server")
        if not server:
            raise SystemExit("case 6 needs redis-server (apt-get install redis-server)")
        self.port = free_port()
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_until_up(
            lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close(), "redis-server"
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def celery_burst() -> dict:
    """Case 1's burst on the CeleryExecutor: the same DAGs, tasks queued through Redis."""
    redis = Redis()
    try:
        extra = {"WORKER_EXECUTOR": "CeleryExecutor", "WORKER_CELERY_BROKER_URL": redis.url}
        return dict(our_stack(extra, cases={"1"}).get("burst", {}))
    finally:
        redis.stop()


def our_stack(extra_env: dict[str, str] | None = None, cases: set[str] = CASES) -> dict:
    sink = Sink()
    env = stack_environment("worker-bench-") | (extra_env or {})
    env["AIRFLOW_CONN_SMTP_DEFAULT"] = sink.airflow_uri
    stack = RunningStack(env)
    port = env["WORKER_PG_PORT"]
    database = f"postgresql://postgres@127.0.0.1:{port}/worker"
    metadata_db = f"postgresql://postgres@127.0.0.1:{port}/airflow"
    footprint = Footprint(stack, env["WORKER_DATA_DIR"])
    report: dict[str, Any] = {}
    try:
        # Idle: the first-sight runs over. (The scheduler's sleep is Airflow's as soon as no task
        # runs, wakeup.py: no window to wait out, as there was when every job made it short.)
        wait_until_idle(metadata_db)
        with psycopg.connect(database, autocommit=True) as conn:
            if "4" in cases:
                log(f"case 4: idle stack for {IDLE_SECONDS} s")
                report["idle"] = footprint.measure(seconds=IDLE_SECONDS)
                log(f"case 4, idle: {report['idle']}")
            if "2" in cases:
                log(f"case 2: {TRICKLE_JOBS} jobs, one every 2 s")
                report["trickle"] = trickle_latency(conn, sink, metadata_db)
                log(f"case 2: {report['trickle']['latency']}")
            if "1" in cases:
                runs = []
                for run in range(REPEATS):
                    wait_until_idle(metadata_db)
                    log(f"case 1, ours: {N} send_email jobs in one statement (run {run + 1}/{REPEATS})")
                    runs.append(burst(conn, sink, footprint, run))
                    log(f"case 1, ours: {runs[-1]}")
                report["burst"] = {
                    "runs": runs,
                    "jobs_per_s": statistics.median(r["jobs_per_s"] for r in runs),
                }
            if "7" in cases:
                wait_until_idle(metadata_db)
                log(f"case 7: {RATE_JOBS} send_email jobs limited to {RATE_LIMIT:g}/s")
                report["rate_limited"] = rate_limited(conn, sink)
                log(f"case 7: {report['rate_limited']}")
            if "3" in cases:
                wait_until_idle(metadata_db)
                # The machine's speed drifts by half within the hour here: the reference is taken
                # just before and just after ours, with the stack idle, and the mean compared.
                before = raw_weasyprint()
                log(f"case 3, ours: {DOCUMENTS} invoices (raw WeasyPrint before: {before['pdfs_per_s']}/s)")
                report["documents"] = documents(conn)
                report["raw_weasyprint"] = bracketed(before, raw_weasyprint())
                log(f"case 3, ours: {report['documents']}; raw WeasyPrint: {report['raw_weasyprint']}")
    finally:
        stack.stop_with("sigint")
        sink.stop()
        subprocess.run(["rm", "-rf", env["WORKER_DATA_DIR"]], check=False)
    return report


def graphile() -> dict:
    script = GRAPHILE / "bench.sh"
    if not script.exists():
        return {"error": f"no graphile-worker harness at {script}"}
    work = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    work.chmod(0o755)
    env = {
        **os.environ,
        "N": str(N),
        "TASKS": "send_email,noop",
        "MODES": os.environ.get("BENCH_GRAPHILE_MODES") or "default,batched,perf",
        "LAT_SAMPLES": os.environ.get("BENCH_LATENCY_SAMPLES") or ("20" if QUICK else "200"),
        "REPEATS": str(REPEATS),
        "PG_PORT": str(free_port()),
        "SMTP_PORT": str(free_port()),
    }
    try:
        result = subprocess.run(
            ["bash", str(script), str(work)], env=env, capture_output=True, text=True, timeout=7200
        )
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    if result.returncode != 0:
        return {"error": result.stderr[-2000:]}
    anchor = json.loads(result.stdout.strip().splitlines()[-1])
    summary = [row for row in anchor["summary"]["throughput"] if row.get("task") == "send_email"]
    best = max(summary, key=lambda row: row["jobs_per_s"])
    noop = max(
        (row for row in anchor["summary"]["throughput"] if row.get("task") == "noop"),
        key=lambda row: row["jobs_per_s"],
    )
    latency = [row for row in anchor["summary"]["latency"] if row.get("task") == "send_email"]
    return {
        "n": N, "best_mode": best.get("mode"), "concurrency": best.get("concurrency"),
        "jobs_per_s": best["jobs_per_s"], "summary": summary, "latency": latency,
        # The queue's own cost, without SMTP: a task that does nothing, its best mode.
        "noop": {"best_mode": noop.get("mode"), "concurrency": noop.get("concurrency"),
                 "jobs_per_s": noop["jobs_per_s"]},
        "versions": anchor.get("versions"),
    }  # fmt: skip


def _warm_render(document: Any) -> float:
    from jobqueue.documents import rendering

    start = time.perf_counter()
    rendering.render_pdf(document, settings.pdf_limits(), settings.template_dirs("pdf"))
    return time.perf_counter() - start


def raw_weasyprint() -> dict:
    """Our invoice's HTML rendered by WeasyPrint alone, one process per core, after a warm-up:
    the most PDFs per second this machine can make of it."""
    from jobqueue.documents import model, rendering

    document = rendering.render_html(model.parse_payload(INVOICE))
    cores = os.cpu_count() or 1
    count = int(os.environ.get("BENCH_RAW_PDFS") or (20 if QUICK else 200))
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(_warm_render, [document] * cores)  # imports, fonts
        start = time.perf_counter()
        pool.map(_warm_render, [document] * count, chunksize=1)
        elapsed = time.perf_counter() - start
    return {"pdfs": count, "processes": cores, "pdfs_per_s": round(count / elapsed, 2)}


def bracketed(before: dict, after: dict) -> dict:
    mean = round((before["pdfs_per_s"] + after["pdfs_per_s"]) / 2, 2)
    return {**before, "pdfs_per_s": mean, "before": before["pdfs_per_s"], "after": after["pdfs_per_s"]}


def pdf_anchor() -> dict:
    script = PDF_ENGINES / "bench.sh"
    if not script.exists():
        return {"error": f"no pdf-render harness at {script}"}
    work = Path(tempfile.mkdtemp(prefix="pdf-bench-"))
    env = {**os.environ, "COLD_RUNS": "1", "WARM_RUNS": "5" if QUICK else "20", "WARM_RUNS_LARGE": "2",
           "PAR_PDFS": "10" if QUICK else "60"}  # fmt: skip
    try:
        result = subprocess.run(
            ["bash", str(script), str(work)], env=env, capture_output=True, text=True, timeout=3600
        )
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    if not result.stdout.strip():
        return {"error": result.stderr[-2000:]}
    anchor = json.loads(result.stdout.strip().splitlines()[-1])
    return {"result": anchor}


def table_scale() -> dict:
    args = ["--waiting", "20000", "--completed", "100000", "--samples", "100"] if QUICK else []
    args = os.environ["BENCH_TABLE_SCALE"].split() if os.environ.get("BENCH_TABLE_SCALE") else args
    result = subprocess.run(
        [sys.executable, str(paths.PROJECT_ROOT / "bench" / "table_scale.py"), *args],
        capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    return dict(json.loads(result.stdout))


def machine() -> dict:
    versions = {name: metadata.version(name) for name in ("apache-airflow", "weasyprint", "psycopg")}
    postgres = subprocess.run(
        [str(Path(_pg_bin()) / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_start": os.getloadavg(),
        "python": platform.python_version(),
        "postgres": postgres,
        "versions": versions,
        "quick": QUICK,
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": {
            name: os.environ.get(name, "default")
            for name in (
                "WORKER_BATCH_SIZE",
                "WORKER_MAX_BATCH_SIZE",
                "WORKER_MAX_ACTIVE_RUNS",
                "WORKER_SMTP_SESSIONS",
            )
        }
        | {"airflow": "devtools.airflow_env (LocalExecutor, parallelism 4, idle sleep 1 s with wakeup)"},
    }


def _pg_bin() -> str:
    from devtools.localpg import find_bin_dir

    return str(find_bin_dir())


def ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}" if ours and theirs else "n/a"


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "no")


# The single-type targets as issue 26 raised them (issue 14's were 1.0 x, 0.35 / 0.8 s, 0.9 x and
# 5 %), each with how it is checked against this run's figures.
BURST_TARGET = 1.5  # x graphile-worker's best mode, same run
TRICKLE_TARGET = (0.25, 0.6)  # p50, p99 seconds
DOCUMENTS_TARGET = 1.0  # x raw WeasyPrint on all cores, same run
IDLE_TARGET = (3.0, 900)  # % of one core, PSS MiB
SCALE_TARGET_MS = 5.0  # p99
# Issue 26's: a limit of RATE_LIMIT a second delivers at least this share of it, never more.
RATE_LIMIT = 10.0
RATE_TARGET = 0.9
# And with TYPES job types: idle connections to the job database, a burst spread over them as a
# share of the same burst into one, the first job of a one-type burst done within (s).
MANY_TYPES_TARGET = (15, 0.5, 1.0)


def markdown(report: dict) -> str:
    m = report["machine"]
    ours = report.get("ours", {})
    gw = report.get("graphile_worker", {})
    lines = [
        f"# Benchmarks ({'quick' if QUICK else 'full'}), {m['at']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; load average at start "
        f"{m['load_average_start'][0]:.2f}, at end {report.get('load_average_end', [0])[0]:.2f}. "
        f"Airflow {m['versions']['apache-airflow']}, {m['postgres']}, Python {m['python']}.",
        "",
        "| case | ours | reference, same run | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    if "burst" in ours:
        best = gw.get("jobs_per_s")
        mine = ours["burst"]["jobs_per_s"]
        each = ", ".join(str(run["jobs_per_s"]) for run in ours["burst"]["runs"])
        lines.append(
            f"| 1. e-mail burst, {N} jobs, jobs/s (median of {REPEATS}: {each}) | {mine} | "
            f"graphile-worker {best or gw.get('error', 'n/a')[:60]} ({gw.get('best_mode', '')}, "
            f"c{gw.get('concurrency', '')}) | {ratio(mine, best)} | >= {BURST_TARGET} x | "
            f"{met(mine / best >= BURST_TARGET if mine and best else None)} |"
        )
    if "trickle" in ours and ours["trickle"]["latency"]:
        lat = ours["trickle"]["latency"]
        ref = next((row for row in gw.get("latency", []) if row.get("mode") == gw.get("best_mode")), None)
        ref_text = "n/a"
        if ref and ref.get("add_to_smtp_accept"):
            acc = ref["add_to_smtp_accept"]
            ref_text = (
                f"graphile-worker ({ref['mode']}) {acc['p50_ms']} / {acc['p95_ms']} / {acc['p99_ms']} ms"
            )
        p50, p99 = TRICKLE_TARGET
        lines.append(
            f"| 2. trickle, add_job -> mail accepted, p50 / p95 / p99 s | {lat['p50_s']} / {lat['p95_s']} / "
            f"{lat['p99_s']} | {ref_text} | | p50 <= {p50}, p99 <= {p99} | "
            f"{met(lat['p50_s'] <= p50 and lat['p99_s'] <= p99)} |"
        )
    if "documents" in ours:
        reference = ours.get("raw_weasyprint", {})
        raw = reference.get("pdfs_per_s")
        mine = ours["documents"]["pdfs_per_s"]
        lines.append(
            f"| 3. documents, {DOCUMENTS} invoices, PDFs/s | {mine} | raw WeasyPrint, all cores: {raw} "
            f"(mean of {reference.get('before')} just before, {reference.get('after')} just after) | "
            f"{ratio(mine, raw)} | >= {DOCUMENTS_TARGET} x | "
            f"{met(mine / raw >= DOCUMENTS_TARGET if mine and raw else None)} |"
        )
        chromium = _chromium_rate(report.get("pdf_anchor", {}))
        if chromium:
            lines.append(
                f"| 3. pdf-render anchor (its own invoice), PDFs/s on {chromium[2]} workers | | "
                f"Chromium {chromium[0]}, WeasyPrint {chromium[1]} | {ratio(chromium[1], chromium[0])} | | |"
            )
    for name in ("idle", "load"):
        figures = (
            ours.get("idle")
            if name == "idle"
            else ours.get("burst", {}).get("runs", [{}])[-1].get("footprint")
        )
        if figures:
            cpu, pss = figures["cpu_percent_of_one_core"], figures["pss_mib_median"]
            target, ok = "", ""
            if name == "idle":
                target = f"< {IDLE_TARGET[0]} %, < {IDLE_TARGET[1]} MiB"
                ok = met(cpu < IDLE_TARGET[0] and pss < IDLE_TARGET[1])
            lines.append(
                f"| 4. footprint, {name} ({figures['seconds']} s): CPU % of one core, PSS MiB median / max | "
                f"{cpu} %, {pss} / {figures['pss_mib_max']} | | | {target} | {ok} |"
            )
    for name, figures in report.get("table_scale", {}).get("results", {}).items():
        lines.append(
            f"| 5. {name}, p50 / p99 ms | {figures['p50_ms']} / {figures['p99_ms']} | | | "
            f"p99 < {SCALE_TARGET_MS} | {met(figures['p99_ms'] < SCALE_TARGET_MS)} |"
        )
    limited = ours.get("rate_limited")
    if limited:
        rate = limited["jobs_per_s"]
        lines.append(
            f"| 7. rate limit {RATE_LIMIT:g}/s, {limited['jobs']} e-mails at once, jobs/s delivered "
            f"({limited['runs']} runs, {limited['total_s']} s) | {rate} | the limit {RATE_LIMIT:g} "
            f"(at least {limited['least_s']} s: its bucket) | {ratio(rate, RATE_LIMIT)} | "
            f">= {RATE_TARGET} x, never above | "
            f"{met(rate >= RATE_TARGET * RATE_LIMIT and limited['total_s'] >= limited['least_s'])} |"
        )
    celery = report.get("celery", {})
    if celery:
        local = ours.get("burst", {}).get("jobs_per_s")
        each = ", ".join(str(run["jobs_per_s"]) for run in celery["runs"])
        lines.append(
            f"| 6. e-mail burst on the CeleryExecutor (Redis), {N} jobs, jobs/s (median of {REPEATS}: "
            f"{each}) | {celery['jobs_per_s']} | ours on the LocalExecutor: {local} | "
            f"{ratio(celery['jobs_per_s'], local)} | measured | yes |"
        )
    lines += _many_types_rows(report.get("many_types"), gw.get("noop"))
    if "trickle" in ours:
        lines += ["", "Case 2, where the time goes (median / max of each step, s):", ""]
        lines += [
            f"- {step}: {v['p50_s']} / {v['max_s']}" for step, v in ours["trickle"]["breakdown"].items()
        ]
    return "\n".join(lines) + "\n"


def _many_types_rows(figures: dict | None, noop: dict | None) -> list[str]:
    if not figures:
        return []
    most, share, within = MANY_TYPES_TARGET
    idle, one, spread = figures["idle"], figures["one_type"], figures["spread"]
    types = figures["types"]
    queue_cost = []
    if noop:  # graphile-worker ran in this run too (cases 1 or 2)
        queue_cost = [
            f"| 8. the queue's own cost: that burst of a job type returning its payload, jobs/s | "
            f"{one['jobs_per_s']} | graphile-worker's noop task, {N} jobs: {noop['jobs_per_s']} "
            f"({noop['best_mode']} mode) | {ratio(one['jobs_per_s'], noop['jobs_per_s'])} | measured | |"
        ]
    return [
        f"| 8. {types} job types, idle: job-database connections (the pickup triggers') | "
        f"{idle['connections']} ({idle['trigger_connections']}) | | | <= {most} | "
        f"{met(idle['connections'] <= most)} |",
        f"| 8. {one['jobs']} jobs into one of them: first done, s; jobs/s ({one['runs']} runs) | "
        f"{one['first_done_s']}; {one['jobs_per_s']} | | | first <= {within} s | "
        f"{met(one['first_done_s'] <= within)} |",
        f"| 8. the same spread over the {types}, jobs/s ({spread['runs']} runs) | {spread['jobs_per_s']} | "
        f"into one type: {one['jobs_per_s']} | {figures['spread_ratio']} | >= {share} x | "
        f"{met(figures['spread_ratio'] >= share)} |",
        *_grouped_row(figures, share),
        *queue_cost,
    ]


def _grouped_row(figures: dict, share: float) -> list[str]:
    grouped = figures.get("grouped")
    if not grouped:
        return []
    one, types = figures["one_type"], figures["types"]
    return [
        f"| 8. the same spread over {types} types of one job group, jobs/s ({grouped['runs']} runs) | "
        f"{grouped['jobs_per_s']} | into one type: {one['jobs_per_s']} | {figures['grouped_ratio']} | "
        f">= {share} x | {met(figures['grouped_ratio'] >= share)} |"
    ]


def _chromium_rate(anchor: dict) -> tuple[float, float, int] | None:
    """(Chromium PDFs/s, WeasyPrint PDFs/s, workers) from the pdf-render anchor's parallel runs."""
    result = anchor.get("result") or {}
    try:
        summary = result["summary"]
        workers = result["chromium"]["parallel"]["workers"]
        return (summary["chromium"]["parallel_pdfs_per_s"], summary["weasyprint"]["parallel_pdfs_per_s"],
                workers)  # fmt: skip
    except (KeyError, TypeError):
        return None


def main() -> None:
    report: dict[str, Any] = {"machine": machine(), "cases": sorted(CASES)}
    if CASES & {"1", "2", "3", "4", "7"}:
        report["ours"] = our_stack()
    if CASES & {"1", "2"}:
        log("cases 1 and 2, graphile-worker anchor")
        report["graphile_worker"] = graphile()
        log(f"graphile-worker: {report['graphile_worker'].get('jobs_per_s')} jobs/s")
    if "3" in CASES and os.environ.get("BENCH_SKIP_PDF_ANCHOR") != "1":
        log("case 3, the pdf-render anchor")
        report["pdf_anchor"] = pdf_anchor()
    if "6" in CASES:
        log("case 6, the burst on the CeleryExecutor")
        report["celery"] = celery_burst()
        log(f"case 6: {report['celery'].get('jobs_per_s')} jobs/s")
    if "8" in CASES:
        log(f"case 8, a stack with {TYPES} job types of a team's own")
        report["many_types"] = many_types.measure(TYPES, TYPE_JOBS)
    if "5" in CASES:
        log("case 5, table scale")
        report["table_scale"] = table_scale()
    report["load_average_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    table = markdown(report)
    (RESULTS / f"{stamp}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
