"""Case 5 of the benchmarks: add_job and claim_jobs with a big table.

Starts a throwaway PostgreSQL cluster, fills worker._jobs with WAITING waiting jobs (a tenth of them
in 5,000 named queues) and COMPLETED completed ones, then times add_job, claim_jobs of 1 and of 100
(each claim completed at once, as a worker would) and a two-identifier claim. Prints medians and p99.

    python bench/table_scale.py [--waiting 1000000] [--completed 10000000] [--samples 300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from devtools.harness import free_port
from devtools.localpg import LocalCluster
from jobqueue.migrations import apply_migrations

FILL = [
    """
insert into worker._jobs (identifier, payload, state, attempts, completed_at, run_at)
select (array['send_email', 'generate_pdf', 'other'])[1 + i %% 3], jsonb_build_object('n', i),
       'completed', 1, now(), now() - interval '1 day'
from generate_series(1, %(completed)s) i
""",
    """
insert into worker._jobs (identifier, payload, priority, run_at, queue_name)
select (array['send_email', 'generate_pdf', 'other'])[1 + i %% 3], jsonb_build_object('n', i), i %% 3,
       now() - (i %% 1000) * interval '1 second', case when i %% 10 = 0 then 'q' || (i %% 5000) end
from generate_series(1, %(waiting)s) i
""",
]


def timed(conn: psycopg.Connection, statement: str, samples: int, complete: bool) -> dict[str, float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        rows = conn.execute(statement).fetchall()
        times.append((time.perf_counter() - start) * 1000)
        if complete and rows:
            conn.execute("select worker.complete_jobs(%s)", [[row[0] for row in rows]])
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiting", type=int, default=1_000_000)
    parser.add_argument("--completed", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="worker-bench-"))
    folder.chmod(0o755)
    cluster = LocalCluster(folder / "pg", free_port(), durable=False)
    try:
        cluster.start()
        cluster.create_database("bench")
        url = cluster.url("bench")
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            start = time.perf_counter()
            for statement in FILL:
                conn.execute(statement, {"waiting": args.waiting, "completed": args.completed})
            conn.execute("vacuum analyze worker._jobs")
            fill_seconds = round(time.perf_counter() - start, 1)
            cases = {
                "add_job": (
                    "select id from worker.add_job('send_email', '{\"to\": \"a@example.com\"}')",
                    False,
                ),
                "claim_jobs(1)": ("select id from worker.claim_jobs(array['send_email'], 'w', 1)", True),
                "claim_jobs(100)": ("select id from worker.claim_jobs(array['send_email'], 'w', 100)", True),
                "claim_jobs(1, two identifiers)": (
                    "select id from worker.claim_jobs(array['send_email', 'generate_pdf'], 'w', 1)",
                    True,
                ),
            }
            results = {
                name: timed(conn, sql, args.samples, complete) for name, (sql, complete) in cases.items()
            }
        print(json.dumps({"waiting": args.waiting, "completed": args.completed, "fill_s": fill_seconds,
                          "results": results}, indent=2))  # fmt: skip
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
