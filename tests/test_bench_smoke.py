"""`make bench` works: a tiny run of every case, ours and graphile-worker's, writing its results.
A smoke test only: it checks the figures exist, never what they are (timing belongs to bench/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jobqueue import paths

pytestmark = pytest.mark.e2e


def test_quick_bench_runs_side_by_side(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WORKER_"))}
    env |= {
        "BENCH_QUICK": "1",
        "BENCH_N": "50",
        # Each case run, on little: the figures' existence is what is checked here.
        "BENCH_TRICKLE_JOBS": "3",
        "BENCH_DOCUMENTS": "5",
        "BENCH_IDLE_SECONDS": "5",
        "BENCH_TABLE_SCALE": "--waiting 2000 --completed 10000 --samples 20",
        # The pdf-render anchor installs puppeteer and a venv and takes minutes: not in a smoke test.
        "BENCH_SKIP_PDF_ANCHOR": "1",
        "BENCH_RESULTS": str(tmp_path),
        "PYTHONPATH": f"{paths.PROJECT_ROOT}{os.pathsep}{paths.PROJECT_ROOT / 'plugins'}",
    }
    result = subprocess.run(
        [sys.executable, str(paths.PROJECT_ROOT / "bench" / "run.py")],
        env=env, capture_output=True, text=True, timeout=1200, cwd=paths.PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    [report_file] = tmp_path.glob("*.json")
    report = json.loads(report_file.read_text())
    ours = report["ours"]
    [burst] = ours["burst"]["runs"]
    assert burst["n"] == 50 and burst["not_completed"] == 0 and burst["mails"] == 50
    assert ours["burst"]["jobs_per_s"] > 0
    assert ours["trickle"]["delivered"] == ours["trickle"]["jobs"] == 3
    assert ours["documents"]["not_completed"] == 0
    assert ours["idle"]["pss_mib_median"] > 0 and burst["footprint"]["cpu_percent_of_one_core"] > 0
    assert report["graphile_worker"].get("jobs_per_s", 0) > 0, report["graphile_worker"]
    assert ours["raw_weasyprint"]["before"] > 0 and ours["raw_weasyprint"]["after"] > 0
    assert set(report["table_scale"]["results"]) >= {"add_job", "claim_jobs(1)"}
    [celery] = report["celery"]["runs"]
    assert celery["not_completed"] == 0 and celery["mails"] == 50
    table = next(tmp_path.glob("*.md")).read_text()
    rows = (
        "| 1. e-mail burst, 50 jobs",
        "| 2. trickle",
        "| 3. documents",
        "| 4. footprint, idle",
        "| 6. e-mail",
    )
    for row in rows:
        assert row in table, table
