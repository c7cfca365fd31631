"""pdf-render anchor benchmark driver.

Renders the invoice template once with Jinja2, then measures Chromium
(puppeteer-core, chromium_bench.mjs) and WeasyPrint (weasy_bench.py) on the
same HTML: cold start, warm per-PDF time, parallel throughput and peak memory.
Checks every output PDF with poppler-utils and prints ONE JSON line on stdout;
progress goes to stderr. Started by bench.sh, which installs the dependencies
and picks the network namespace; the benchmark parameters are read here, in
Settings.from_env, and nowhere else.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from check_pdfs import Expected, check_pdf
from invoice import build_invoice, euro, render_invoice_html

HERE = Path(__file__).resolve().parent
ENGINES = ("chromium", "weasyprint")


class BenchError(RuntimeError):
    """A measurement process failed, timed out or printed no result."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise BenchError(f"{name}={raw!r}: not an integer") from None
    if value < minimum:
        raise BenchError(f"{name}={value}: must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    workdir: Path
    chromium: str
    chromium_extra_args: tuple[str, ...]
    engines: tuple[str, ...]
    n_small: int
    n_large: int
    cold_runs: int
    warmup: int
    warm_runs: int
    warm_runs_large: int
    par_workers: int
    par_pdfs: int
    sample_ms: int
    run_timeout_s: int
    network: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        engines = tuple(e for e in env.get("ENGINES", ",".join(ENGINES)).split(",") if e)
        unknown = set(engines) - set(ENGINES)
        if unknown or not engines:
            raise BenchError(f"ENGINES: unknown or no engine(s): {sorted(unknown)}")
        settings = cls(
            workdir=Path(env["WORKDIR"]).resolve(),
            chromium=env.get("CHROMIUM", "/usr/bin/chromium"),
            chromium_extra_args=tuple(shlex.split(env.get("CHROMIUM_EXTRA_ARGS", ""))),
            engines=engines,
            n_small=_int(env, "N_SMALL", 12),
            n_large=_int(env, "N_LARGE", 200),
            cold_runs=_int(env, "COLD_RUNS", 3),
            warmup=_int(env, "WARMUP", 2, minimum=0),
            warm_runs=_int(env, "WARM_RUNS", 30),
            warm_runs_large=_int(env, "WARM_RUNS_LARGE", 10),
            par_workers=_int(env, "PAR_WORKERS", 2),
            par_pdfs=_int(env, "PAR_PDFS", 60),
            sample_ms=_int(env, "SAMPLE_MS", 200),
            run_timeout_s=_int(env, "RUN_TIMEOUT_S", 900),
            network=env.get("BENCH_NETWORK", "host"),
        )
        if settings.n_small == settings.n_large:
            raise BenchError("N_SMALL and N_LARGE must differ")
        if settings.par_pdfs < settings.par_workers:
            raise BenchError("PAR_PDFS must be at least PAR_WORKERS")
        return settings

    @property
    def out_dir(self) -> Path:
        return self.workdir / "out"

    @property
    def profile_root(self) -> Path:
        return self.workdir / "tmp"

    def engine_config(self) -> dict[str, Any]:
        """What both engine scripts get as their CONFIG_JSON argument."""
        return {
            "chromium": self.chromium,
            "chromium_extra_args": list(self.chromium_extra_args),
            "html_small": str(self.out_dir / f"invoice-n{self.n_small}.html"),
            "html_large": str(self.out_dir / f"invoice-n{self.n_large}.html"),
            "n_small": self.n_small,
            "n_large": self.n_large,
            "out_dir": str(self.out_dir),
            "profile_root": str(self.profile_root),
            "warmup": self.warmup,
            "warm_runs": self.warm_runs,
            "warm_runs_large": self.warm_runs_large,
            "par_workers": self.par_workers,
            "par_pdfs": self.par_pdfs,
            "sample_ms": self.sample_ms,
        }


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def epoch_ms() -> float:
    return time.time() * 1000


# ------------------------------------------------------------------ inputs --
def clear_previous_run(settings: Settings) -> None:
    """Earlier PDFs and PNGs (no check may read them), and profiles of killed browsers."""
    for stale in [*settings.out_dir.glob("*.pdf"), *settings.out_dir.glob("png/*.png")]:
        stale.unlink()
    for profile in settings.profile_root.glob("chromium-profile-*"):
        shutil.rmtree(profile, ignore_errors=True)


def write_invoices(settings: Settings) -> dict[int, Expected]:
    """Render the template once per size; the engines only ever read these files."""
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    expected = {}
    for n in (settings.n_small, settings.n_large):
        invoice = build_invoice(n)
        html = render_invoice_html(invoice)
        (settings.out_dir / f"invoice-n{n}.html").write_text(html, encoding="utf-8")
        expected[n] = Expected(invoice.meta.number, euro(invoice.totals.gross))
    return expected


# --------------------------------------------------------------- processes --
def engine_command(engine: str, mode: str, config: dict[str, Any]) -> list[str]:
    if engine == "chromium":
        return ["node", str(HERE / "chromium_bench.mjs"), mode, json.dumps(config)]
    return [sys.executable, str(HERE / "weasy_bench.py"), mode, json.dumps(config)]


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGINT first: puppeteer then kills the browser it launched before exiting."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def last_json_line(stdout: str, what: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"{what}: no JSON result on stdout")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_engine(settings: Settings, engine: str, mode: str) -> dict[str, Any]:
    """Run one measurement process; adds spawn_epoch_ms, the parent's clock at spawn."""
    what = f"{engine} {mode}"
    spawned = epoch_ms()
    proc = subprocess.Popen(
        engine_command(engine, mode, settings.engine_config()), stdout=subprocess.PIPE, text=True
    )
    try:
        stdout, _ = proc.communicate(timeout=settings.run_timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what}: timed out after {settings.run_timeout_s} s") from exc
    finally:
        stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"{what}: exit status {proc.returncode}")
    return {**last_json_line(stdout, what), "spawn_epoch_ms": spawned}


def read_ready_line(proc: subprocess.Popen[str], what: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise BenchError(f"{what}: expected 'ready', got {line!r}")


def weasy_parallel(settings: Settings) -> dict[str, Any]:
    """PAR_WORKERS warmed-up processes are released together and share PAR_PDFS."""
    shares = [len(range(i, settings.par_pdfs, settings.par_workers)) for i in range(settings.par_workers)]
    procs = [
        subprocess.Popen(
            engine_command("weasyprint", "worker", {**settings.engine_config(), "count": n}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in shares
    ]
    try:
        for i, proc in enumerate(procs):
            read_ready_line(proc, f"weasyprint worker {i}")
        started = epoch_ms()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for i, proc in enumerate(procs):
            stdout, _ = proc.communicate(timeout=settings.run_timeout_s)
            if proc.returncode != 0:
                raise BenchError(f"weasyprint worker {i}: exit status {proc.returncode}")
            results.append(last_json_line(stdout, f"weasyprint worker {i}"))
    finally:
        for proc in procs:
            stop(proc)
    return {
        "wall_ms": max(r["done_epoch_ms"] for r in results) - started,
        "pdfs": sum(shares),
        "ms": [ms for r in results for ms in r["ms"]],
        "cpu_ms": sum(r["cpu_ms"] for r in results),
        "pdf_bytes": [r["pdf_bytes"] for r in results],
        "peak_rss_kib_per_process": [r["peak_rss_kib"] for r in results],
    }


# ------------------------------------------------------------------- stats --
def nearest_rank(sorted_values: list[float], q: float) -> float:
    return sorted_values[max(1, math.ceil(len(sorted_values) * q)) - 1]


def ms_stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 1),
        "p95": round(nearest_rank(ordered, 0.95), 1),
        "mean": round(statistics.fmean(ordered), 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def rounded(values: list[float]) -> list[float]:
    return [round(v, 1) for v in values]


# ------------------------------------------------------------ measurements --
def cold_starts(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Alternate the engines so neither gets all the warm file caches."""
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in settings.engines}
    for i in range(settings.cold_runs):
        for engine in settings.engines:
            log(f"cold start {i + 1}/{settings.cold_runs}: {engine}")
            result = run_engine(settings, engine, "cold")
            result["total_ms"] = result["ready_epoch_ms"] - result["spawn_epoch_ms"]
            runs[engine].append(result)
    return runs


def summarize_cold(runs: list[dict[str, Any]]) -> dict[str, Any]:
    drop = {
        "engine",
        "mode",
        "pdf_options",
        "spawnargs",
        "ready_epoch_ms",
        "spawn_epoch_ms",
        "browser_version",
    }
    return {
        "total_ms": ms_stats([r["total_ms"] for r in runs]),
        "runs": [
            {k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items() if k not in drop}
            for r in runs
        ],
    }


def parallel_summary(settings: Settings, par: dict[str, Any], cpu_ms: float) -> dict[str, Any]:
    return {
        "workers": settings.par_workers,
        "pdfs": par["pdfs"],
        "wall_ms": round(par["wall_ms"], 1),
        "pdfs_per_s": round(par["pdfs"] / par["wall_ms"] * 1000, 2),
        "per_pdf_ms": ms_stats(par["ms"]),
        "cpu_ms_per_pdf": round(cpu_ms / par["pdfs"], 1),
    }


def chromium_cpu_per_pdf(phase: dict[str, Any], pdfs: int) -> dict[str, float]:
    browser, driver = phase["browser_cpu_ms"] / pdfs, phase["driver_cpu_ms"] / pdfs
    return {
        "browser": round(browser, 1),
        "driver": round(driver, 1),
        "total": round(browser + driver, 1),
    }


def measure_chromium(settings: Settings, cold: list[dict[str, Any]]) -> dict[str, Any]:
    log("chromium: warm renders and parallel throughput (one browser)")
    warm = run_engine(settings, "chromium", "warm")
    par = warm["parallel"]
    phases = ("small", "large", "parallel")
    peaks = {p: warm[p]["peak_tree"] for p in phases}
    return {
        "browser_version": warm["browser_version"],
        "spawnargs": warm["spawnargs"],
        "pdf_options": warm["pdf_options"],
        "cold": summarize_cold(cold),
        "startup_ms": round(warm["startup_ms"], 1),
        "warm_small_ms": ms_stats(warm["small"]["ms"]),
        "warm_large_ms": ms_stats(warm["large"]["ms"]),
        "parallel": parallel_summary(settings, par, par["browser_cpu_ms"] + par["driver_cpu_ms"]),
        "cpu_ms_per_pdf": {
            "what": "utime+stime of the browser tree, and of the node driver, per timed PDF",
            **{p: chromium_cpu_per_pdf(warm[p], len(warm[p]["ms"])) for p in phases},
        },
        "memory": {
            "what": "sum over the browser process tree, sampled (RSS every SAMPLE_MS, "
            "PSS every 2 s and at phase ends)",
            "peak_rss_mib": {p: mib(m["rss_kib"]) for p, m in peaks.items()},
            "peak_pss_mib": {p: mib(m["pss_kib"]) for p, m in peaks.items()},
            "max_processes": max(m["processes"] for m in peaks.values()),
            "cold_peak_rss_mib": [mib(r["peak_tree"]["rss_kib"]) for r in cold],
        },
        "raw_ms": {p: rounded(warm[p]["ms"]) for p in phases},
    }


def measure_weasyprint(settings: Settings, cold: list[dict[str, Any]]) -> dict[str, Any]:
    log("weasyprint: warm renders (one process, one FontConfiguration)")
    warm = run_engine(settings, "weasyprint", "warm")
    log(f"weasyprint: {settings.par_pdfs} PDFs on {settings.par_workers} processes")
    par = weasy_parallel(settings)
    return {
        "cold": summarize_cold(cold),
        "startup_ms": round(warm["startup_ms"], 1),
        "warm_small_ms": ms_stats(warm["small"]["ms"]),
        "warm_large_ms": ms_stats(warm["large"]["ms"]),
        "parallel": parallel_summary(settings, par, par["cpu_ms"]),
        "cpu_ms_per_pdf": {
            "what": "utime+stime of the Python process(es) per timed PDF",
            "small": round(warm["small"]["cpu_ms"] / len(warm["small"]["ms"]), 1),
            "large": round(warm["large"]["cpu_ms"] / len(warm["large"]["ms"]), 1),
            "parallel": round(par["cpu_ms"] / par["pdfs"], 1),
        },
        "memory": {
            "what": "ru_maxrss of the Python process (exact peak since start)",
            "peak_rss_mib": {
                "small": mib(warm["small"]["peak_rss_kib"]),
                "large": mib(warm["large"]["peak_rss_kib"]),
                "parallel_per_process": [mib(k) for k in par["peak_rss_kib_per_process"]],
                "parallel_sum": mib(sum(par["peak_rss_kib_per_process"])),
            },
            "cold_peak_rss_mib": [mib(r["peak_rss_kib"]) for r in cold],
        },
        "raw_ms": {
            "small": rounded(warm["small"]["ms"]),
            "large": rounded(warm["large"]["ms"]),
            "parallel": rounded(par["ms"]),
        },
    }


def check_outputs(settings: Settings, expected: dict[int, Expected]) -> dict[str, Any]:
    png_dir = settings.out_dir / "png"
    png_dir.mkdir(exist_ok=True)
    results = {}
    for engine in settings.engines:
        for n in (settings.n_small, settings.n_large):
            pdf = settings.out_dir / f"{engine}-n{n}.pdf"
            results[pdf.stem] = check_pdf(pdf, expected[n], png_dir)
        cold_pdf = settings.out_dir / f"{engine}-cold.pdf"
        if cold_pdf.exists():
            results[cold_pdf.stem] = check_pdf(cold_pdf, expected[settings.n_small], png_dir)
    return results


# ---------------------------------------------------------------- metadata --
def _first_line(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        "",
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
    }


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return ""


def pango_version() -> str:
    from weasyprint.text.ffi import pango

    version = pango.pango_version()  # e.g. 15012 for 1.50.12
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


def versions(chromium_version: str | None) -> dict[str, Any]:
    pkg = json.loads((HERE / "node_modules" / "puppeteer-core" / "package.json").read_text())
    return {
        "chromium": chromium_version,
        "puppeteer_core": pkg["version"],
        "node": _first_line("node", "--version"),
        "python": platform.python_version(),
        **{
            name: metadata.version(name)
            for name in ("weasyprint", "pydyf", "tinycss2", "tinyhtml5", "fonttools", "jinja2")
        },
        "pango": pango_version(),
        "poppler": _first_line("pdfinfo", "-v"),
        "dejavu_sans": _first_line("fc-match", "DejaVu Sans"),
    }


# -------------------------------------------------------------------- main --
def headline(name: str, result: dict[str, Any], checks: dict[str, Any], settings: Settings) -> dict[str, Any]:
    small, large = f"n{settings.n_small}", f"n{settings.n_large}"
    rss = result["memory"]["peak_rss_mib"]
    cpu = result["cpu_ms_per_pdf"]["small"]
    line = {
        "cold_start_ms_median": result["cold"]["total_ms"]["median"],
        f"warm_{small}_ms_median": result["warm_small_ms"]["median"],
        f"warm_{small}_ms_p95": result["warm_small_ms"]["p95"],
        f"warm_{large}_ms_median": result["warm_large_ms"]["median"],
        f"warm_{large}_ms_p95": result["warm_large_ms"]["p95"],
        f"cpu_ms_per_pdf_{small}": cpu["total"] if isinstance(cpu, dict) else cpu,
        "parallel_pdfs_per_s": result["parallel"]["pdfs_per_s"],
        "peak_rss_mib_sequential": max(rss["small"], rss["large"]),
        "peak_rss_mib_parallel": rss.get("parallel", rss.get("parallel_sum")),
    }
    if "peak_pss_mib" in result["memory"]:
        pss = result["memory"]["peak_pss_mib"]
        line["peak_pss_mib_sequential"] = max(pss["small"], pss["large"])
        line["peak_pss_mib_parallel"] = pss["parallel"]
    line[f"pages_{small}"] = checks[f"{name}-{small}"]["pages"]
    line[f"pages_{large}"] = checks[f"{name}-{large}"]["pages"]
    return line


def main() -> int:
    settings = Settings.from_env(os.environ)
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    log(f"workdir {settings.workdir}; engines {','.join(settings.engines)}")
    clear_previous_run(settings)
    expected = write_invoices(settings)
    cold = cold_starts(settings)
    results: dict[str, Any] = {}
    if "chromium" in settings.engines:
        results["chromium"] = measure_chromium(settings, cold["chromium"])
    if "weasyprint" in settings.engines:
        results["weasyprint"] = measure_weasyprint(settings, cold["weasyprint"])
    log("checking the PDFs with poppler-utils")
    checks = check_outputs(settings, expected)
    summary = {name: headline(name, res, checks, settings) for name, res in results.items()}
    report = {
        "bench": "pdf-render-anchor",
        "date_utc": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "machine": {**machine_info(), "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "network": settings.network,
        "params": {k: v for k, v in asdict(settings).items() if k not in {"workdir", "network"}},
        "versions": versions(results.get("chromium", {}).get("browser_version")),
        "expected": {n: asdict(e) for n, e in expected.items()},
        "summary": summary,
        **results,
        "checks": checks,
        "ok": all(c["ok"] for c in checks.values()),
    }
    line = json.dumps(report, default=str, ensure_ascii=False)
    (settings.workdir / "result.json").write_text(line + "\n", encoding="utf-8")
    print(line, flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        log(f"error: {exc}")
        sys.exit(1)
