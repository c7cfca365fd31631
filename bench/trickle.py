"""Case 2's arithmetic, for bench/run.py: the latency percentiles, and where each job's time went,
from Airflow's own records (the asset event, the DAG run, each task's queueing and running).
`BENCH_CASES=2 make bench` runs case 2 alone."""

from __future__ import annotations

import statistics

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
        for task in ("render", "send"):
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
