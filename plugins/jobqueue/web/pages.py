"""The job queue's HTML pages, rendered on the server (include/templates/web) and shown in Airflow's
shell: the queue with its filter, one job with every attempt, the live view, the charts, and a DAG
run's Jobs tab."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from jobqueue import paths
from jobqueue.web import charts
from jobqueue.web.models import STATUSES, PageQuery, dag_run_url, task_log_url
from jobqueue.web.queue import Allowed, UserQueue

PAGE_SIZE = 50
LIVE_SECONDS = 2  # the live view's refresh
RUNNING_SHOWN = 200  # the live view's running jobs, the longest running first
MOST_COUNTED = 10_000  # the live view counts up to this, then says "10,000+"

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.INCLUDE_DIR / "templates" / "web"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.globals["dag_run_url"] = dag_run_url
    environment.globals["task_log_url"] = task_log_url
    environment.globals["duration"] = duration
    environment.globals["at_most"] = at_most
    return environment


def at_most(count: int, most: int) -> str:
    """A count that stopped at most + 1: "10,000+"."""
    return f"{most:,}+" if count > most else f"{count:,}"


def duration(seconds: float | None) -> str:
    """3.2 s, 4 min 05 s, 2 h 07 min: how long, as a person reads it."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


TEMPLATES = _templates()


def _render(name: str, request: Request, **values: object) -> str:
    """A page; `root` is the path the app is mounted at (the plugin's url_prefix), which the page's
    links and requests start with."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return TEMPLATES.get_template(name).render(root=root, **values)


@router.get("/runs/{dag_id}/{run_id:path}")
def run_page(dag_id: str, run_id: str, request: Request, access: Allowed) -> str:
    """The Jobs tab of a DAG run's page in Airflow's UI: every job the run attempted."""
    with UserQueue.open(access) as queue:
        found, counts, attempts = queue.run(dag_id, run_id)
    return _render(
        "run.html", request, jobs=found, counts=counts, attempts=attempts, worker=f"{dag_id}/{run_id}"
    )


@router.get("/")
def queue_page(request: Request, access: Allowed, query: Annotated[PageQuery, Query()]) -> str:
    matching, page = query.job_filter(), query.page
    with UserQueue.open(access) as queue:
        found = queue.search(matching, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        counts, controls, unconsumed = queue.counts(), queue.controls(), queue.unconsumed()
        filtered = queue.count(matching) if matching.given() else 0
        paused_identifiers = {row["name"]: row for row in controls["paused"] if row["kind"] == "identifier"}
        rate_limits = {row["identifier"]: row for row in controls["rate_limits"] if row["rate_limit"]}
        table = _counts_table(counts, [*paused_identifiers, *rate_limits])
        may_act = queue.may_act_on({job.identifier for job in found})
        may_control, may_control_queues = queue.may_control(table), queue.may_control_queues()
        may_act_on_filter = bool(filtered) and queue.may_act_on_filter(matching)
    return _render(
        "jobs.html", request,
        jobs=found[:PAGE_SIZE], more=len(found) > PAGE_SIZE, page=page,
        filters=dict.fromkeys(matching.params()) | matching.given(), given_filter=matching.given(),
        matching=filtered, counts=table, statuses=STATUSES,
        unconsumed={row["identifier"]: row for row in unconsumed},
        paused_identifiers=paused_identifiers, rate_limits=rate_limits,
        paused_queues=[row for row in controls["paused"] if row["kind"] == "queue"],
        may_act=may_act, may_act_on_filter=may_act_on_filter,
        may_control=may_control, may_control_queues=may_control_queues,
    )  # fmt: skip


def _counts_table(counts: list[dict[str, Any]], also: list[str]) -> dict[str, dict[str, int]]:
    """{identifier: {status: jobs}}, by identifier; `also`: identifiers shown without jobs (paused,
    rate-limited)."""
    table: dict[str, dict[str, int]] = {name: {} for name in also}
    for row in counts:
        table.setdefault(row["identifier"], {})[row["status"]] = row["jobs"]
    return dict(sorted(table.items()))


@router.get("/live")
def live_page(request: Request, access: Allowed, part: bool = False) -> str:
    """What runs now and what waits, refreshed in place every LIVE_SECONDS (`part`: the content
    alone, for the refresh)."""
    with UserQueue.open(access) as queue:
        live = queue.live(RUNNING_SHOWN, MOST_COUNTED)
        may_act = queue.may_act_on({row["identifier"] for row in live["running"]})
    values = {
        "live": live, "may_act": may_act, "now": datetime.datetime.now(datetime.UTC),
        "running_limit": RUNNING_SHOWN, "refresh_seconds": LIVE_SECONDS, "most": MOST_COUNTED,
    }  # fmt: skip
    return _render("live_part.html" if part else "live.html", request, **values)


@router.get("/charts")
def charts_page(
    request: Request, access: Allowed, identifier: str | None = None, span: Literal["hour", "day"] = "hour"
) -> str:
    """Per minute of the last hour or day, of one identifier or of all the user reads: completed,
    failed and retried, pickup latency, jobs due."""
    now = datetime.datetime.now(datetime.UTC)
    since = now.replace(second=0, microsecond=0) - charts.SPANS[span]
    with UserQueue.open(access) as queue:
        rows, edges = queue.minutes(identifier or None, since)
        identifiers = queue.chart_identifiers(now - charts.SPANS["day"])
    drawn = charts.charts(charts.minutes_of(rows), edges, charts.SPANS[span], now)
    return _render(
        "charts.html", request,
        identifier=identifier or None, identifiers=identifiers, span=span, spans=list(charts.SPANS), **drawn,
    )  # fmt: skip


@router.get("/{job_id}")
def job_page(job_id: int, request: Request, access: Allowed) -> str:
    with UserQueue.open(access) as queue:
        details = queue.details(job_id)
        may_act = bool(queue.may_act_on([details.job.identifier]))
    return _render(
        "job.html", request,
        job=details.job, actions=details.actions, attempts=details.attempts,
        cancel_request=details.cancel_request, may_act=may_act,
    )  # fmt: skip
