"""Case 2, e-mail trickle latency: on an idle running stack, one send_email job every `gap` seconds;
for each, add_job to the message accepted by the SMTP server. Also where the time went, from
Airflow's own records: the asset event, the DAG run, each task's queueing and running.

    PYTHONPATH=.:plugins python bench/trickle.py [--jobs 100] [--gap 2]     (one JSON line)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time

import psycopg
from psycopg.types.json import Jsonb

from tests.e2e.conftest import RunningStack, stack_environment
from tests.smtp import SmtpServer

STAGES = """
select j.id,
       extract(epoch from j.created_at) as added,
       extract(epoch from (select max(e.timestamp)  -- the event this job caused, not an older one
                           from asset_event e join dagrun_asset_event d on d.event_id = e.id
                           where d.dag_run_id = r.id and e.timestamp >= j.created_at)) as event,
       extract(epoch from r.queued_at) as run_queued,
       extract(epoch from r.start_date) as run_started,
       (select json_object_agg(t.task_id, json_build_array(extract(epoch from t.scheduled_dttm),
                                                           extract(epoch from t.queued_dttm),
                                                           extract(epoch from t.start_date),
                                                           extract(epoch from t.end_date)))
        from task_instance t where t.dag_id = r.dag_id and t.run_id = r.run_id) as tasks
from jsonb_to_recordset(%s) as j(id bigint, created_at timestamptz, worker text)
left join dag_run r on r.dag_id || '/' || r.run_id = j.worker
"""


def accepted(smtp: SmtpServer) -> dict[int, float]:
    """When the SMTP server accepted each job's message, by job id (from `<job-ID@domain>`)."""
    with smtp.handler.lock:
        arrivals = dict(smtp.handler.accepted_at)
    return {int(m[1]): at for key, at in arrivals.items() if (m := re.match(r"<job-(\d+)@", key))}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(statistics.median(values), 3),
        "p95_s": round(percentile(values, 0.95), 3),
        "p99_s": round(percentile(values, 0.99), 3),
        "max_s": round(max(values), 3),
    }


def trickle(jobs: int, gap: float, settle: float = 20.0) -> dict:
    smtp = SmtpServer()
    smtp.start()
    env = stack_environment("worker-trickle-")
    env["AIRFLOW_CONN_SMTP_DEFAULT"] = smtp.airflow_uri
    stack = RunningStack(env)
    port = env["WORKER_PG_PORT"]
    database = f"postgresql://postgres@127.0.0.1:{port}/worker"
    sent: list[tuple[int, float]] = []
    try:
        time.sleep(settle)  # DAGs parsed, triggers started, the first-sight digest run over: idle
        with psycopg.connect(database, autocommit=True) as conn:
            for n in range(jobs):
                payload = {"to": f"t{n}@example.com", "template": "welcome", "context": {"name": f"T{n}"}}
                row = conn.execute("select id from worker.add_job('send_email', %s)", [Jsonb(payload)])
                sent.append((row.fetchone()[0], time.time()))  # type: ignore[index]
                time.sleep(gap)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(accepted(smtp)) < len(sent):
                time.sleep(0.1)
            rows = conn.execute(
                "select id, created_at, last_worker as worker from worker.jobs where id = any(%s)",
                [[job_id for job_id, _ in sent]],
            ).fetchall()
        records = [{"id": r[0], "created_at": r[1].isoformat(), "worker": r[2]} for r in rows]
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/airflow") as meta:
            stages = meta.execute(STAGES, [Jsonb(records)]).fetchall()
    finally:
        stack.stop_with("sigint")
        smtp.stop()
        subprocess.run(["rm", "-rf", env["WORKER_DATA_DIR"]], check=False)
    arrivals = accepted(smtp)
    latencies = [arrivals[job_id] - added for job_id, added in sent if job_id in arrivals]
    return {
        "jobs": jobs,
        "gap_s": gap,
        "delivered": len(latencies),
        "latency": summary(latencies) if latencies else None,
        "breakdown": breakdown(stages, dict(sent)),
    }


def breakdown(stages: list[tuple], sent_at: dict[int, float]) -> dict[str, dict[str, float]]:
    """Median and max time of each step, from Airflow's timestamps (same clock: one machine)."""
    steps: dict[str, list[float]] = {}

    def add(name: str, start: float | None, end: float | None) -> None:
        if start is not None and end is not None:
            steps.setdefault(name, []).append(float(end) - float(start))

    for job_id, _added, event, queued, started, tasks in stages:
        added = sent_at[job_id]
        add("add_job -> asset event", added, event)
        add("asset event -> run queued", event, queued)
        add("run queued -> run started", queued, started)
        previous = started
        for task in ("prepare", "render", "send"):
            if not tasks or task not in tasks:
                continue
            _scheduled, queued_at, start, end = tasks[task]
            add(f"{task}: ready -> queued", previous, queued_at)
            add(f"{task}: queued -> started", queued_at, start)
            add(f"{task}: running", start, end)
            previous = end
    return {
        name: {"p50_s": round(statistics.median(v), 3), "max_s": round(max(v), 3)}
        for name, v in steps.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--gap", type=float, default=2.0)
    args = parser.parse_args()
    print(json.dumps(trickle(args.jobs, args.gap)))


if __name__ == "__main__":
    main()
