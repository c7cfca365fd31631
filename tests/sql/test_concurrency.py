"""Eight connections claiming at once: no job is claimed twice, no named queue runs two jobs."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import rows

WORKERS = 8


def run_workers(db_url: str, work) -> list:
    results: list = [None] * WORKERS
    start = threading.Barrier(WORKERS)

    def target(n: int) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            start.wait()
            results[n] = work(conn, f"worker-{n}")

    threads = [threading.Thread(target=target, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in results), "a worker thread failed"
    return results


def test_parallel_claims_never_claim_a_job_twice(conn, db_url):
    rows(conn, "select worker.add_jobs(%s)", [Jsonb([{"identifier": "a"}] * 2000)])

    def drain(worker_conn, worker_id):
        claimed = []
        while batch := worker_conn.execute(
            "select id from worker.claim_jobs(array['a'], %s, 7)", [worker_id]
        ).fetchall():
            claimed += [row[0] for row in batch]
            worker_conn.execute("select worker.complete_jobs(%s)", [[row[0] for row in batch]])
        return claimed

    claimed = [job_id for result in run_workers(db_url, drain) for job_id in result]
    assert len(claimed) == len(set(claimed)) == 2000
    assert rows(conn, "select count(*) from worker.jobs where status <> 'completed'")[0]["count"] == 0


@pytest.mark.parametrize("mixed", [False, True], ids=["one-identifier", "two-identifiers-one-queue"])
def test_named_queue_never_has_two_running_jobs(conn, db_url, mixed):
    # Mixed: the queues hold jobs of two identifiers, each claimed by its own half of the workers, so
    # only the queue's lock keeps them apart (a claimer takes any job of a free queue it may take).
    identifier = ["a", "b"] if mixed else ["a", "a"]
    specs = [
        {"identifier": identifier[n % 2], "queue_name": f"q{n % 5}", "payload": {"n": n}} for n in range(300)
    ]
    rows(conn, "select worker.add_jobs(%s)", [Jsonb(specs)])
    violations: list = []

    def drain(worker_conn, worker_id):
        claimed = []
        idle = 0
        mine = [identifier[int(worker_id.rsplit("-", 1)[1]) % 2]]
        while idle < 50:
            batch = worker_conn.execute(
                "select id, queue_name from worker.claim_jobs(%s, %s, 3)", [mine, worker_id]
            ).fetchall()
            if not batch:
                idle += 1
                continue
            idle = 0
            running = worker_conn.execute(
                "select queue_name, count(*) from worker.jobs where status = 'running' "
                "group by queue_name having count(*) > 1"
            ).fetchall()
            violations.extend(running)
            claimed += batch
            worker_conn.execute("select worker.complete_jobs(%s)", [[row[0] for row in batch]])
        return claimed

    results = run_workers(db_url, drain)
    claimed = [job_id for result in results for job_id, _ in result]
    assert violations == []
    assert len(claimed) == len(set(claimed)) == 300
    if mixed:
        return
    # Within each queue, jobs of one consumer ran in id order.
    order = rows(
        conn, "select queue_name, array_agg(id order by completed_at, id) as ids from worker.jobs group by 1"
    )
    for queue in order:
        assert queue["ids"] == sorted(queue["ids"]), queue["queue_name"]
