"""make bench: our stack and graphile-worker 0.18 side by side, in one run, on this machine.

Case 1 (e-mail burst): N send_email jobs added in one statement; time until every job is completed
and every message accepted by the SMTP server. Ours: the real stack (`make run`'s supervisor) on a
throwaway PostgreSQL, sending to an in-process aiosmtpd server. graphile-worker: the anchor harness
in ../shared/anchors/graphile-worker (its own throwaway PostgreSQL with stock settings, as ours, and
its own counting SMTP sink), all its modes, best one kept.
Case 5 (scale of the table): bench/table_scale.py.

BENCH_QUICK=1 runs a small version (N=300, smaller table); BENCH_N sets N. Writes <time>.json and
<time>.md under bench/results/ (or BENCH_RESULTS).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from jobqueue import paths
from tests.conftest import free_port
from tests.e2e.conftest import RunningStack, stack_environment
from tests.smtp import SmtpServer

QUICK = os.environ.get("BENCH_QUICK") == "1"
N = int(os.environ.get("BENCH_N") or (300 if QUICK else 10_000))
# The anchors live in shared/ beside the project (BENCH_ANCHORS_DIR to point elsewhere).
ANCHORS = Path(os.environ.get("BENCH_ANCHORS_DIR") or paths.PROJECT_ROOT.parent / "shared" / "anchors")
ANCHOR = ANCHORS / "graphile-worker" / "bench.sh"
RESULTS = Path(os.environ.get("BENCH_RESULTS") or paths.PROJECT_ROOT / "bench" / "results")
FINISHED = "select count(*) from worker.jobs where id = any(%s) and status in ('completed', 'failed')"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def burst_ours() -> dict:
    smtp = SmtpServer()
    smtp.start()
    env = stack_environment("worker-bench-")
    env["AIRFLOW_CONN_SMTP_DEFAULT"] = smtp.airflow_uri
    env["WORKER_BATCH_SIZE"] = os.environ.get("WORKER_BATCH_SIZE", "1000")
    stack = RunningStack(env)
    database = f"postgresql://postgres@127.0.0.1:{env['WORKER_PG_PORT']}/worker"
    try:
        time.sleep(5)  # let the DAGs be parsed and the triggers start
        specs = [
            {"identifier": "send_email",
             "payload": {"to": f"u{n}@example.com", "template": "welcome", "context": {"name": f"U{n}"}}}
            for n in range(N)
        ]  # fmt: skip
        with psycopg.connect(database, autocommit=True) as conn:
            before = len(smtp.messages)
            start = time.monotonic()
            ids = [row[0] for row in conn.execute("select id from worker.add_jobs(%s)", [Jsonb(specs)])]
            enqueue_s = time.monotonic() - start
            deadline = start + 1800
            while time.monotonic() < deadline:
                done = conn.execute(FINISHED, [ids]).fetchone()[0]  # type: ignore[index]
                if done == N and len(smtp.messages) - before >= N:
                    break
                time.sleep(0.05)
            total_s = time.monotonic() - start
            failed = conn.execute(
                "select count(*) from worker.jobs where id = any(%s) and status <> 'completed'", [ids]
            ).fetchone()[0]  # type: ignore[index]
    finally:
        stack.stop_with("sigint")
        smtp.stop()
        subprocess.run(["rm", "-rf", env["WORKER_DATA_DIR"]], check=False)
    return {"n": N, "enqueue_s": round(enqueue_s, 3), "total_s": round(total_s, 2),
            "jobs_per_s": round(N / total_s, 1), "not_completed": failed}  # fmt: skip


def burst_graphile() -> dict:
    if not ANCHOR.exists():
        return {"error": f"no graphile-worker anchor harness at {ANCHOR} (set BENCH_ANCHORS_DIR)"}
    work = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    work.chmod(0o755)
    env = {
        **os.environ,
        "N": str(N),
        "TASKS": "send_email",
        "MODES": "default,batched,perf",
        "LAT_SAMPLES": "20" if QUICK else "200",
        "PG_PORT": str(free_port()),
        "SMTP_PORT": str(free_port()),
    }
    result = subprocess.run(
        ["bash", str(ANCHOR), str(work)], env=env, capture_output=True, text=True, timeout=3600
    )
    if result.returncode != 0:
        return {"error": result.stderr[-2000:]}
    anchor = json.loads(result.stdout.strip().splitlines()[-1])
    runs = [run for run in anchor["throughput"] if run.get("task") == "send_email"]
    best = max(runs, key=lambda run: run["jobs_per_s"])
    return {"n": N, "best_mode": best.get("mode"), "concurrency": best.get("concurrency"),
            "jobs_per_s": best["jobs_per_s"], "runs": runs}  # fmt: skip


def table_scale() -> dict:
    args = ["--waiting", "20000", "--completed", "100000", "--samples", "100"] if QUICK else []
    result = subprocess.run(
        [sys.executable, str(paths.PROJECT_ROOT / "bench" / "table_scale.py"), *args],
        capture_output=True, text=True, check=True, timeout=1800,
    )  # fmt: skip
    return dict(json.loads(result.stdout))


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "quick": QUICK,
        "at": datetime.datetime.now(datetime.UTC).isoformat(),
    }


def markdown(report: dict) -> str:
    ours, anchor = report["burst"]["ours"], report["burst"]["graphile_worker"]
    ratio = ours["jobs_per_s"] / anchor["jobs_per_s"] if anchor.get("jobs_per_s") else None
    lines = [
        f"# Benchmarks ({'quick' if QUICK else 'full'}), {report['machine']['at']}",
        "",
        "| case | ours | graphile-worker 0.18 (best mode) | ratio |",
        "|---|---|---|---|",
        f"| 1. e-mail burst, {N} jobs, jobs/s | {ours['jobs_per_s']} | {anchor.get('jobs_per_s', 'n/a')} "
        f"({anchor.get('best_mode', '')}) | {f'{ratio:.2f}' if ratio else 'n/a'} |",
    ]
    for name, figures in report["table_scale"]["results"].items():
        lines.append(f"| 5. {name}, p50 / p99 ms | {figures['p50_ms']} / {figures['p99_ms']} | | |")
    lines += [
        "",
        f"Machine: {report['machine']['cores']} cores, load average {report['machine']['load_average']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    log(f"case 1, ours: {N} send_email jobs in one statement")
    ours = burst_ours()
    log(f"case 1, ours: {ours}")
    log("case 1, graphile-worker anchor")
    anchor = burst_graphile()
    log(f"case 1, graphile-worker: { {k: v for k, v in anchor.items() if k != 'runs'} }")
    log("case 5, table scale")
    report = {
        "machine": machine(),
        "burst": {"ours": ours, "graphile_worker": anchor},
        "table_scale": table_scale(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    table = markdown(report)
    (RESULTS / f"{stamp}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
