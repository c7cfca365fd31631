"""Case 5 of the benchmarks: add_job and claim_jobs with a big table, and the job queue's pages.

Starts a throwaway PostgreSQL cluster, fills worker._jobs with WAITING waiting jobs (a tenth of them
in 5,000 named queues) and COMPLETED completed ones, then times add_job, claim_jobs of 1 and of 100
(each claim completed at once, as a worker would) and a two-identifier claim. Then the queries of
the job queue's pages, through JobManager as the pages run them: the charts of a day (a day of
minutes of three identifiers written by eight writers each, and the triggers' samples), the live
view, a job's attempts, a DAG run's Jobs tab, the list's first page and a filtered count. Prints
medians and p99.

    python bench/table_scale.py [--waiting 1000000] [--completed 10000000] [--samples 300]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from devtools.harness import free_port
from devtools.localpg import LocalCluster
from jobqueue.jobs import JobFilter
from jobqueue.manager import JobManager
from jobqueue.migrations import apply_migrations

TYPES = 40  # a team's own job types, beside the three the jobs are of: the charts' minutes only

FILL = [
    """
insert into worker._jobs (identifier, payload, state, attempts, completed_at, run_at)
select (array['send_email', 'generate_pdf', 'other'])[1 + i %% 3], jsonb_build_object('n', i),
       'completed', 1, now(), now() - interval '1 day'
from generate_series(1, %(completed)s) i
""",
    # A day of the charts' minutes of a team's job types: each identifier's outcomes written by eight
    # writers every minute, its latency histogram, and the triggers' sample; then merged by
    # maintenance, as every five minutes (page_queries).
    """
insert into worker._job_minutes (identifier, minute, slot, completed, failed, retried, latency, waiting)
select i, date_trunc('minute', now()) - m * interval '1 minute', s, 40, 1, 2,
       case when s >= 0 then array[5, 10, 10, 5, 3, 2, 1, 1, 1, 1, 0, 0, 0] end,
       case when s < 0 then 100 end
from (select 'type_' || n as i from generate_series(1, %(types)s) n
      union all select unnest(array['send_email', 'generate_pdf', 'other'])) t,
     generate_series(0, 1439) m, generate_series(-1, 7) s
""",
    # Every completed job's last attempt started a second after it was due (what the charts and the
    # attempts read); a failed attempt kept for one job in a hundred, by its DAG run.
    """
update worker._jobs
set started_at = run_at + interval '1 second', last_worker = 'send_email/r' || (id %% 1000)
where state = 'completed'
""",
    """
insert into worker._job_attempts (job_id, attempt, outcome, error, worker_id, task_id, started_at)
select id, 1, 'retry', 'SMTP 451', 'send_email/r' || (id %% 1000), 'send_email', run_at
from worker._jobs where state = 'completed' and id %% 100 = 0
""",
    """
insert into worker._jobs (identifier, payload, priority, run_at, queue_name)
select (array['send_email', 'generate_pdf', 'other'])[1 + i %% 3], jsonb_build_object('n', i), i %% 3,
       now() - (i %% 1000) * interval '1 second', case when i %% 10 = 0 then 'q' || (i %% 5000) end
from generate_series(1, %(waiting)s) i
""",
]


def timed(conn: psycopg.Connection, statement: str, samples: int, complete: bool) -> dict[str, float]:
    def once() -> None:
        rows = conn.execute(statement).fetchall()
        if complete and rows:
            completing.append([row[0] for row in rows])

    completing: list[list[int]] = []

    def after() -> None:
        while completing:
            conn.execute("select worker.complete_jobs(%s)", [completing.pop()])

    return timed_calls(once, samples, after)


def timed_calls(
    call: Callable[[], object], samples: int, after: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """p50 and p99 of `call` in ms; `after` runs between samples, outside the time."""
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
        after()
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
                conn.execute(
                    statement, {"waiting": args.waiting, "completed": args.completed, "types": TYPES}
                )
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
            results |= {name: timed_calls(call, args.samples) for name, call in page_queries(conn).items()}
        print(json.dumps({"waiting": args.waiting, "completed": args.completed, "fill_s": fill_seconds,
                          "results": results}, indent=2))  # fmt: skip
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def page_queries(conn: psycopg.Connection) -> dict[str, Callable[[], object]]:
    """The job queue's pages' queries, as JobManager runs them (jobqueue/web/queue.py), after
    maintenance merged the minutes' rows."""
    jobs = JobManager(conn)
    jobs.compact_minutes()
    day_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    some_job = conn.execute(
        "select max(id) from worker._jobs where state = 'completed' and id % 100 = 0"
    ).fetchone()
    assert some_job is not None
    identifiers = ["send_email", "generate_pdf", "other"]
    every_type = identifiers + [f"type_{n}" for n in range(1, TYPES + 1)]
    return {
        "charts: a day of one identifier": lambda: jobs.job_minutes(["send_email"], day_ago),
        "charts: a day of three together": lambda: jobs.job_minutes(identifiers, day_ago),
        f"charts: a day of all {TYPES + 3} together": lambda: jobs.job_minutes(every_type, day_ago),
        "charts: identifiers with minutes": lambda: jobs.chart_identifiers(day_ago),
        "live: running jobs": lambda: jobs.running_jobs(None),
        "live: identifiers": jobs.live_identifiers,
        "live: gauges of three identifiers": lambda: jobs.live_gauges(identifiers, 10_000),
        "live: named queues with jobs due": jobs.waiting_queues,
        "job page: attempts": lambda: jobs.attempts(some_job[0]),
        "run tab: jobs attempted": lambda: jobs.run_jobs("send_email/r7"),
        "list: first page": lambda: jobs.search_jobs(JobFilter(), limit=51),
        "list: counts per identifier and status": jobs.job_counts,
        "list: failed with 'smtp', first page": lambda: jobs.search_jobs(
            JobFilter(status="failed", error="smtp"), limit=51
        ),
    }


if __name__ == "__main__":
    main()
