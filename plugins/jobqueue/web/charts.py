"""The job queue's charts, drawn as SVG on the server from worker._job_minutes (migration 0013): no
script and no network fetch, and the page's own colours (CSS variables), so they read in light and
dark mode alike.

Per minute of the last hour or day: jobs completed, failed for good and retried; the pickup latency
of the completed ones (started_at - run_at; p50 and p95, interpolated within the buckets of a
histogram); the most jobs seen due (the triggers' sample, a few a minute)."""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

SPANS = {"hour": datetime.timedelta(hours=1), "day": datetime.timedelta(days=1)}
WIDTH, HEIGHT = 760, 170
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28


@dataclasses.dataclass(frozen=True)
class Minute:
    at: datetime.datetime
    completed: int = 0
    failed: int = 0
    retried: int = 0
    latency: tuple[int, ...] = ()  # completed jobs per latency bucket
    waiting: int | None = None


def minutes_of(rows: Sequence[dict[str, Any]]) -> dict[datetime.datetime, Minute]:
    """The job database's rows (one per minute, the latency histograms of its writers unsummed)."""
    found = {}
    for row in rows:
        histograms = row["latencies"] or []
        summed = tuple(map(sum, zip(*histograms, strict=True))) if histograms else ()
        found[row["minute"]] = Minute(
            row["minute"], row["completed"], row["failed"], row["retried"], summed, row["waiting"]
        )
    return found


def percentile(histogram: Sequence[int], edges: Sequence[float], fraction: float) -> float | None:
    """The value under which `fraction` of the histogram's jobs fall, interpolated in its bucket
    (the last bucket, past the last edge, answers its edge); None for no jobs."""
    total = sum(histogram)
    if total == 0:
        return None
    rank, seen = fraction * total, 0
    for bucket, count in enumerate(histogram):
        if count and seen + count >= rank:
            if bucket >= len(edges):
                return edges[-1]
            lower = edges[bucket - 1] if bucket else 0.0
            return lower + (edges[bucket] - lower) * (rank - seen) / count
        seen += count
    return edges[-1]


@dataclasses.dataclass(frozen=True)
class Series:
    name: str
    css: str  # the class that colours it
    values: list[float | None]  # one per minute; None: no point


def charts(
    found: dict[datetime.datetime, Minute], edges: Sequence[float], span: datetime.timedelta,
    now: datetime.datetime,
) -> dict[str, Any]:  # fmt: skip
    """The three charts of a span ending now, and the span's totals."""
    end = now.replace(second=0, microsecond=0)
    slots = [end - datetime.timedelta(minutes=n) for n in range(int(span.total_seconds() // 60) - 1, -1, -1)]
    minutes = [found.get(at, Minute(at)) for at in slots]
    summed = tuple(map(sum, zip(*[m.latency for m in minutes if m.latency], strict=True))) or ()
    totals = {
        "completed": sum(m.completed for m in minutes),
        "failed": sum(m.failed for m in minutes),
        "retried": sum(m.retried for m in minutes),
        "p50": percentile(summed, edges, 0.5),
        "p95": percentile(summed, edges, 0.95),
    }
    throughput = [
        Series("completed", "series-completed", [float(m.completed) for m in minutes]),
        Series("failed", "series-failed", [float(m.failed) for m in minutes]),
        Series("retried", "series-retried", [float(m.retried) for m in minutes]),
    ]
    latency = [
        Series("p50", "series-p50", [percentile(m.latency, edges, 0.5) for m in minutes]),
        Series("p95", "series-p95", [percentile(m.latency, edges, 0.95) for m in minutes]),
    ]
    waiting = [
        Series("due", "series-waiting", [None if m.waiting is None else float(m.waiting) for m in minutes])
    ]
    return {
        "totals": totals,
        "throughput": svg("Jobs per minute", throughput, slots, unit=""),
        "latency": svg("Pickup latency of completed jobs (seconds)", latency, slots, unit=" s"),
        "waiting": svg("Jobs due (sampled)", waiting, slots, unit=""),
    }


def svg(title: str, series: list[Series], slots: list[datetime.datetime], unit: str) -> str:
    """A line chart: one polyline per series (broken where it has no point), a y axis from 0 to a
    round top, the span's start, middle and end on the x axis."""
    top = _round_top(max((v for s in series for v in s.values if v is not None), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(slots) - 1, 1)
    time_format = "%H:%M" if len(slots) <= 60 else "%b %d %H:%M"  # a day's axis names its days

    def x(index: int) -> float:
        return LEFT + index * step

    def y(value: float) -> float:
        return TOP + plot_h - (value / top) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for fraction in (0.0, 0.5, 1.0):
        level = top * fraction
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}"/>'
        )
        label = f"{_label(level)}{unit}"
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y(level) + 4:.1f}" text-anchor="end">{label}</text>'
        )
    for index in (0, len(slots) // 2, len(slots) - 1):
        anchor = "start" if index == 0 else "end" if index == len(slots) - 1 else "middle"
        parts.append(
            f'<text class="axis" x="{x(index):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{slots[index].strftime(time_format)}</text>"
        )
    for each in series:
        for run in _runs(each.values):
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
            shape = "polyline" if len(run) > 1 else "circle"
            if shape == "circle":
                i, v = run[0]
                parts.append(f'<circle class="{each.css}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="2"/>')
            else:
                parts.append(f'<polyline class="{each.css}" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _runs(values: list[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of consecutive points (a gap breaks the line)."""
    runs: list[list[tuple[int, float]]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((index, value))
    return [run for run in runs if run]


def _round_top(highest: float) -> float:
    """1, 2 or 5 times a power of ten, at or above the highest value (1 for nothing)."""
    if highest <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(highest))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= highest)


def _label(value: float) -> str:
    return f"{value:g}" if value < 10 else f"{value:,.0f}"
