"""`make bench` works, its other half (see test_bench_smoke.py): the burst on the CeleryExecutor
(case 6) and the job table at scale (case 5)."""

from __future__ import annotations

import pytest

from tests.test_bench_smoke import quick_bench

pytestmark = pytest.mark.e2e


def test_quick_bench_runs_celery_and_the_table_scale(tmp_path):
    report, table = quick_bench(tmp_path, "5,6")
    assert set(report["table_scale"]["results"]) >= {"add_job", "claim_jobs(1)"}
    [celery] = report["celery"]["runs"]
    assert celery["not_completed"] == 0 and celery["mails"] == 50
    assert "| 6. e-mail" in table, table
