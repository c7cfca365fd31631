"""`make bench` works, its other half (see test_bench_smoke.py): the burst on the CeleryExecutor
(case 6), the job table at scale (case 5) and a team's many job types (case 8, with 3 of them,
and 3 of one job group)."""

from __future__ import annotations

import pytest

from tests.test_bench_smoke import quick_bench

pytestmark = pytest.mark.e2e


def test_quick_bench_runs_celery_the_table_scale_and_many_job_types(tmp_path):
    report, table = quick_bench(tmp_path, "5,6,8", {"BENCH_TYPES": "3", "BENCH_TYPE_JOBS": "30"})
    assert set(report["table_scale"]["results"]) >= {"add_job", "claim_jobs(1)"}
    [celery] = report["celery"]["runs"]
    assert celery["not_completed"] == 0 and celery["mails"] == 50
    assert "| 6. e-mail" in table, table
    many = report["many_types"]
    assert many["one_type"]["not_completed"] == 0 and many["spread"]["not_completed"] == 0
    assert many["spread"]["runs"] == 3 and many["idle"]["trigger_connections"] == 1
    # The same jobs over 3 members of one job group: picked up by the group's DAG, fewer runs.
    grouped = many["grouped"]
    assert grouped["not_completed"] == 0 and 1 <= grouped["runs"] < 3, grouped
    assert "of one job group" in table, table
    assert "| 8. 3 job types" in table, table
