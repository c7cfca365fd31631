"""`make bench` works: a tiny run of every case, ours and graphile-worker's, writing its results.
A smoke test only: it checks the figures exist, never what they are (timing belongs to bench/).
Cases 1 to 4 here; the CeleryExecutor's burst and the table scale in test_bench_smoke_celery.py, so
that the two halves run side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import PREPARED_DATA
from jobqueue import paths

pytestmark = pytest.mark.e2e


def quick_bench(results: Path, cases: str, more: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """bench/run.py on little (its report, and its table): each case runs, its figures written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WORKER_"))}
    if prepared := os.environ.get(PREPARED_DATA):
        env[PREPARED_DATA] = prepared  # the run's prepared data folder (tests/conftest.py)
    env |= {
        "BENCH_QUICK": "1",
        "BENCH_CASES": cases,
        "BENCH_N": "50",
        "BENCH_TRICKLE_JOBS": "3",
        "BENCH_RATE_JOBS": "30",
        "BENCH_DOCUMENTS": "5",
        "BENCH_IDLE_SECONDS": "5",
        "BENCH_CALM_SECONDS": "1",  # the figures are not what a smoke test checks
        "BENCH_TABLE_SCALE": "--waiting 2000 --completed 10000 --samples 20",
        "BENCH_GRAPHILE_MODES": "perf",
        "BENCH_LATENCY_SAMPLES": "5",
        "BENCH_RAW_PDFS": "6",
        # The pdf-render anchor installs puppeteer and a venv and takes minutes: not in a smoke test.
        "BENCH_SKIP_PDF_ANCHOR": "1",
        "BENCH_RESULTS": str(results),
        "PYTHONPATH": f"{paths.PROJECT_ROOT}{os.pathsep}{paths.PROJECT_ROOT / 'plugins'}",
    } | (more or {})
    result = subprocess.run(
        [sys.executable, str(paths.PROJECT_ROOT / "bench" / "run.py")],
        env=env, capture_output=True, text=True, timeout=1200, cwd=paths.PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    [report_file] = results.glob("*.json")
    return json.loads(report_file.read_text()), next(results.glob("*.md")).read_text()


def test_quick_bench_runs_side_by_side(tmp_path):
    report, table = quick_bench(tmp_path, "1,2,3,4,7")
    ours = report["ours"]
    [burst] = ours["burst"]["runs"]
    assert burst["n"] == 50 and burst["not_completed"] == 0 and burst["mails"] == 50
    assert ours["burst"]["jobs_per_s"] > 0
    assert ours["trickle"]["delivered"] == ours["trickle"]["jobs"] == 3
    assert ours["documents"]["not_completed"] == 0
    assert ours["idle"]["pss_mib_median"] > 0 and burst["footprint"]["cpu_percent_of_one_core"] > 0
    assert report["graphile_worker"].get("jobs_per_s", 0) > 0, report["graphile_worker"]
    assert report["graphile_worker"]["noop"]["jobs_per_s"] > 0, report["graphile_worker"]
    assert ours["raw_weasyprint"]["before"] > 0 and ours["raw_weasyprint"]["after"] > 0
    limited = ours["rate_limited"]
    assert limited["jobs"] == 30 and limited["total_s"] >= limited["least_s"] == 2.0  # never above 10/s
    rows = (
        "| 1. e-mail burst, 50 jobs",
        "| 2. trickle",
        "| 3. documents",
        "| 4. footprint, idle",
        "| 7. rate limit",
    )
    for row in rows:
        assert row in table, table
