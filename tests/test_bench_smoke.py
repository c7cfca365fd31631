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
        "BENCH_RESULTS": str(tmp_path),
        "PYTHONPATH": f"{paths.PROJECT_ROOT}{os.pathsep}{paths.PROJECT_ROOT / 'plugins'}",
    }
    result = subprocess.run(
        [sys.executable, str(paths.PROJECT_ROOT / "bench" / "run.py")],
        env=env, capture_output=True, text=True, timeout=900, cwd=paths.PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    [report_file] = tmp_path.glob("*.json")
    report = json.loads(report_file.read_text())
    assert report["burst"]["ours"]["n"] == 50 and report["burst"]["ours"]["not_completed"] == 0
    assert report["burst"]["ours"]["jobs_per_s"] > 0
    assert report["burst"]["graphile_worker"].get("jobs_per_s", 0) > 0, report["burst"]["graphile_worker"]
    assert set(report["table_scale"]["results"]) >= {"add_job", "claim_jobs(1)"}
    assert "| 1. e-mail burst, 50 jobs" in next(tmp_path.glob("*.md")).read_text()
