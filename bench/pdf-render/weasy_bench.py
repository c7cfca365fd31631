"""WeasyPrint side of the pdf-render anchor.

Started by bench.py, never by hand:  python weasy_bench.py MODE CONFIG_JSON
  cold    fresh interpreter: import WeasyPrint, build a FontConfiguration,
          render config.html_small once.
  warm    one process, one reused FontConfiguration: config.warmup untimed
          renders, then config.warm_runs timed renders of html_small and
          config.warm_runs_large of html_large.
  worker  one of the parallel processes: import and warm up, print "ready",
          wait for a line on stdin, render config.count PDFs of html_small.
Prints ONE JSON line on stdout (raw timings in ms, memory in KiB).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RenderPdf = Callable[[str], bytes]


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def epoch_ms() -> float:
    return time.time() * 1000


def cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


def make_renderer() -> RenderPdf:
    """Import WeasyPrint and return html -> PDF bytes with one reused font config."""
    from weasyprint import HTML, URLFetcher
    from weasyprint.text.fonts import FontConfiguration

    font_config = FontConfiguration()
    # The invoice is self-contained: any fetch (file://, http://, data:) is a
    # bug, and fail_on_errors turns it into an error instead of a warning.
    fetcher = URLFetcher(allowed_protocols=frozenset(), fail_on_errors=True)

    def render_pdf(html: str) -> bytes:
        pdf: bytes = HTML(string=html, url_fetcher=fetcher).write_pdf(font_config=font_config)
        return pdf

    return render_pdf


def timed_renders(render_pdf: RenderPdf, html: str, count: int) -> tuple[list[float], bytes, float]:
    """Per-render wall times, the last PDF, and the CPU time of the whole loop."""
    ms = []
    pdf = b""
    cpu_start = cpu_ms()
    for _ in range(count):
        t0 = time.perf_counter()
        pdf = render_pdf(html)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms, pdf, cpu_ms() - cpu_start


def warm_up(render_pdf: RenderPdf, html: str, count: int) -> None:
    for _ in range(count):
        render_pdf(html)


def cold_run(config: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    render_pdf = make_renderer()
    t_ready = time.perf_counter()
    html = Path(config["html_small"]).read_text(encoding="utf-8")
    t_read = time.perf_counter()
    pdf = render_pdf(html)
    ready_epoch_ms = epoch_ms()
    t_pdf = time.perf_counter()
    Path(config["out_dir"], "weasyprint-cold.pdf").write_bytes(pdf)
    return {
        "ready_epoch_ms": ready_epoch_ms,
        "import_and_font_config_ms": (t_ready - t0) * 1000,
        "first_pdf_ms": (t_pdf - t_read) * 1000,
        "in_process_ms": (t_pdf - t0) * 1000,
        "pdf_bytes": len(pdf),
        "peak_rss_kib": peak_rss_kib(),
    }


def sequential_phase(render_pdf: RenderPdf, config: dict[str, Any], size: str, runs: int) -> dict[str, Any]:
    html = Path(config[f"html_{size}"]).read_text(encoding="utf-8")
    warm_up(render_pdf, html, config["warmup"])
    ms, pdf, cpu = timed_renders(render_pdf, html, runs)
    Path(config["out_dir"], f"weasyprint-n{config[f'n_{size}']}.pdf").write_bytes(pdf)
    # ru_maxrss never decreases: this is the peak since the process started.
    return {"ms": ms, "cpu_ms": cpu, "pdf_bytes": len(pdf), "peak_rss_kib": peak_rss_kib()}


def warm_run(config: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    render_pdf = make_renderer()
    startup_ms = (time.perf_counter() - t0) * 1000
    print(
        f"[weasyprint] ready in {startup_ms:.0f} ms; {config['warm_runs']} small invoices",
        file=sys.stderr,
    )
    small = sequential_phase(render_pdf, config, "small", config["warm_runs"])
    print(f"[weasyprint] {config['warm_runs_large']} large invoices", file=sys.stderr)
    large = sequential_phase(render_pdf, config, "large", config["warm_runs_large"])
    return {"startup_ms": startup_ms, "small": small, "large": large}


def worker_run(config: dict[str, Any]) -> dict[str, Any]:
    render_pdf = make_renderer()
    html = Path(config["html_small"]).read_text(encoding="utf-8")
    warm_up(render_pdf, html, config["warmup"])
    print("ready", flush=True)
    sys.stdin.readline()
    ms, pdf, cpu = timed_renders(render_pdf, html, config["count"])
    return {
        "ms": ms,
        "cpu_ms": cpu,
        "done_epoch_ms": epoch_ms(),
        "pdf_bytes": len(pdf),
        "peak_rss_kib": peak_rss_kib(),
    }


MODES = {"cold": cold_run, "warm": warm_run, "worker": worker_run}


def main() -> None:
    mode, config_json = sys.argv[1:3]
    result = MODES[mode](json.loads(config_json))
    print(json.dumps({"engine": "weasyprint", "mode": mode, **result}), flush=True)


if __name__ == "__main__":
    main()
