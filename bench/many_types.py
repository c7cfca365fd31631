"""Case 8 of `make bench`: a team's many job types (issue 26).

A stack (`make run`'s, stock settings) with a team folder of TYPES trivial job types of its own
(`tasks/scale_NN.py`: `@job_type("scale_NN")` returning its payload) beside the built-ins:
  - idle: the job database's connections once every type is watched (worker._consumers), and
    how many of them are the pickup triggers' (application_name jobqueue-trigger);
  - one type: JOBS jobs into one of them: the first done after (s, by the database's clock) and
    jobs/s until all are completed;
  - spread: the same JOBS spread evenly over all TYPES: jobs/s, and its ratio to the one-type burst;
  - grouped: the same again over TYPES other types, members of one job group (`tasks/grouped.py`).
`BENCH_CASES=8 make bench` runs it alone; BENCH_TYPES and BENCH_TYPE_JOBS override the sizes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.waiting import log, until_done, wait_until_idle
from devtools.harness import RunningStack, stack_environment

TASK = """from jobqueue import job_type


@job_type("{name}")
def {name}(payload: dict, ctx) -> dict:
    return payload
"""
# The same many types as members of one job group (one file: a group's members share it), whose
# one DAG picks up all of them: the spread burst once more over these.
GROUPED = """from jobqueue import job_type

for _n in range({types}):
    def _handler(payload: dict, ctx) -> dict:
        return payload

    _handler.__name__ = f"grouped_{{_n:02}}"
    job_type(f"grouped_{{_n:02}}", group="grouped")(_handler)
"""
WATCHED = (
    "select count(*) from worker._consumers where (identifier like 'scale\\_%' "
    "or identifier like 'grouped\\_%') and seen_at > now() - interval '1 minute'"
)


def team_folder(types: int) -> Path:
    team = Path(tempfile.mkdtemp(prefix="bench-team-"))
    (team / "tasks").mkdir()
    for n in range(types):
        name = f"scale_{n:02}"
        (team / "tasks" / f"{name}.py").write_text(TASK.format(name=name))
    (team / "tasks" / "grouped.py").write_text(GROUPED.format(types=types))
    return team


def measure(types: int, jobs: int) -> dict:
    team = team_folder(types)
    env = stack_environment("worker-bench-many-") | {"WORKER_PROJECT": str(team)}
    stack = RunningStack(env)
    port = env["WORKER_PG_PORT"]
    database = f"postgresql://postgres@127.0.0.1:{port}/worker"
    metadata_db = f"postgresql://postgres@127.0.0.1:{port}/airflow"
    report: dict[str, Any] = {"types": types, "jobs": jobs}
    try:
        with psycopg.connect(database, autocommit=True) as conn:
            watched = lambda: conn.execute(WATCHED).fetchone()[0] >= 2 * types  # type: ignore[index]  # noqa: E731
            until(watched, 300, f"{types} job types and {types} grouped ones watched")
            wait_until_idle(metadata_db)
            report["idle"] = connections(conn)
            log(f"case 8, idle with {types} job types: {report['idle']}")
            report["one_type"] = burst(conn, [("scale_00", jobs)])
            log(f"case 8, {jobs} jobs into one type: {report['one_type']}")
            wait_until_idle(metadata_db)
            share = jobs // types
            report["spread"] = burst(conn, [(f"scale_{n:02}", share) for n in range(types)])
            log(f"case 8, {share * types} jobs over {types} types: {report['spread']}")
            report["spread_ratio"] = round(
                report["spread"]["jobs_per_s"] / report["one_type"]["jobs_per_s"], 2
            )
            wait_until_idle(metadata_db)
            report["grouped"] = burst(conn, [(f"grouped_{n:02}", share) for n in range(types)])
            log(f"case 8, {share * types} jobs over {types} types of one job group: {report['grouped']}")
            report["grouped_ratio"] = round(
                report["grouped"]["jobs_per_s"] / report["one_type"]["jobs_per_s"], 2
            )
    finally:
        stack.stop_with("sigint")
        subprocess.run(["rm", "-rf", env["WORKER_DATA_DIR"]], check=False)
        shutil.rmtree(team, ignore_errors=True)
    return report


def connections(conn: psycopg.Connection) -> dict:
    """The job database's connections, but this one: all, and the pickup triggers'."""
    total, triggers = conn.execute(
        "select count(*), count(*) filter (where application_name = 'jobqueue-trigger') "
        "from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
    ).fetchone()  # type: ignore[misc]
    return {"connections": total, "trigger_connections": triggers}


def burst(conn: psycopg.Connection, shares: list[tuple[str, int]]) -> dict:
    specs = [{"identifier": name, "payload": {"n": n}} for name, count in shares for n in range(count)]
    start = time.monotonic()
    ids = [row[0] for row in conn.execute("select id from worker.add_jobs(%s)", [Jsonb(specs)])]
    until_done(conn, ids, 1800)
    total_s = time.monotonic() - start
    first, runs, completed = conn.execute(
        "select extract(epoch from min(completed_at) - min(created_at)), count(distinct last_worker), "
        "count(*) filter (where status = 'completed') from worker.jobs where id = any(%s)",
        [ids],
    ).fetchone()  # type: ignore[misc]
    return {
        "jobs": len(ids), "total_s": round(total_s, 2), "jobs_per_s": round(len(ids) / total_s, 1),
        "first_done_s": round(float(first), 2), "runs": runs, "not_completed": len(ids) - completed,
    }  # fmt: skip


def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"case 8: not within {timeout:g} s: {what}")
        time.sleep(0.05)
