"""Declaring job types: a decorated function becomes the DAG that consumes its jobs.

    from jobqueue import PermanentJobError, job_type

    @job_type("resize_image")
    def resize_image(payload: ResizeImage, ctx) -> dict | None:
        ...

The DAG is named after the identifier and runs when the trigger watching the job table says jobs
of that identifier wait; each run claims a batch, and the runtime (runtime.py) calls the handler
once per job and records each outcome (outcomes.py). A chain of steps is `job_chain`:

    job_chain("generate_pdf", render_html, step(render_pdf, batch=True), enqueue_email)

Options are checked when the DAG file is parsed, so a wrong one is an import error naming it. The
job type itself is data (declaration.py); its DAG is airflow_dag.py's.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pydantic
from typing_extensions import Unpack

from jobqueue import airflow_dag
from jobqueue.declaration import (
    DEFAULT_TIME_LIMIT,
    CronPayload,
    CronTick,
    Handler,
    JobType,
    Options,
    Step,
    declaring_frame,
    payload_model_of,
)
from jobqueue.exceptions import InvalidJobType

__all__ = ["CronPayload", "CronTick", "JobType", "Step", "job_chain", "job_type", "step"]


def step(
    function: Handler | None = None,
    *,
    batch: bool = False,
    name: str | None = None,
    detached: bool = False,
    prepare: Callable[[], Any] | None = None,
) -> Any:
    """A step of a chain. `batch=True`: the function takes (items, ctx), the whole batch as a list
    of context.BatchItem; `detached`, `prepare`: see Step."""

    def make(fn: Handler) -> Step:
        return Step(fn, batch=batch, name=name or "", detached=detached, prepare=prepare)

    return make if function is None else make(function)


def declared(job_type: JobType) -> JobType:
    """The job type with its DAG, which Airflow finds as the DAG file is parsed; a member of a
    group joins its group's DAG too, which picks up its jobs."""
    job_type.dag = airflow_dag.build_dag(job_type)
    if job_type.options.group is not None:
        airflow_dag.join_group(job_type)
    return job_type


class OptionArgs(typing.TypedDict, total=False):
    """The options `job_type` and `job_chain` share (see Options and the README)."""

    batch_size: int | None
    max_batch_size: int | None
    max_active_runs: int | None
    max_attempts: int | None
    time_limit: float | datetime.timedelta | None
    concurrency: int
    tags: Sequence[str]
    doc: str | None
    schedule: str | None
    timezone: str
    rate_limit: str | None
    group: str | None


def job_type(
    identifier: str,
    *,
    payload: type[pydantic.BaseModel] | None = None,
    batch: bool = False,
    **options: Unpack[OptionArgs],
) -> Callable[[Handler], JobType]:
    """Makes `function(payload, ctx)` the job type `identifier`, and the DAG that consumes its jobs.

    The payload's model is the first parameter's annotation (a pydantic model), or `payload=`;
    `batch=True`: the function takes the whole batch, a list of context.BatchItem. `schedule`: a
    cron expression (in `timezone`); each tick enqueues a job whose payload is a CronPayload."""
    with _at_the_callers_line():
        checked = _options(options)

    def decorate(function: Handler) -> JobType:
        with _at_the_callers_line():
            handler = Step(function, batch=batch)
            model = payload or (None if batch else payload_model_of(function))
            return declared(JobType(identifier, [handler], model, checked))

    return decorate


def job_chain(
    identifier: str,
    *steps: Handler | Step,
    payload: type[pydantic.BaseModel] | None = None,
    **options: Unpack[OptionArgs],
) -> JobType:
    """A job type of several steps, one task each, in this order: each step gets what the step
    before returned for the job (kept in the job database, not in XCom), the last step's value is
    the job's result, and a job that fails in one step goes no further."""
    with _at_the_callers_line():
        chain = [each if isinstance(each, Step) else Step(each) for each in steps]
        first = chain[0] if chain else None
        model = payload or (payload_model_of(first.function) if first and not first.batch else None)
        return declared(JobType(identifier, chain, model, _options(options)))


@contextlib.contextmanager
def _at_the_callers_line() -> Iterator[None]:
    """A declaration refused names the line of the DAG file that made it: Airflow shows an import
    error's last two frames, which are ours (`[core] dagbag_import_error_traceback_depth`)."""
    try:
        yield
    except InvalidJobType as exc:
        frame = declaring_frame(sys._getframe(1))  # from contextlib's __exit__, past our frames
        where = f"{frame.f_code.co_filename}, line {frame.f_lineno}"
        if where in str(exc):
            raise
        raise InvalidJobType(f"{exc} (at {where})") from exc


def _options(given: OptionArgs) -> Options:
    known = [*OptionArgs.__annotations__, "payload", "batch"]
    unknown = sorted(set(given) - set(OptionArgs.__annotations__))
    if unknown:
        close = {name: difflib.get_close_matches(name, known, n=1) for name in unknown}
        named = [f"{name} (did you mean {close[name][0]}?)" if close[name] else name for name in unknown]
        raise InvalidJobType(f"no such option: {', '.join(named)}")
    values: dict[str, Any] = dict(given)
    limit = values.get("time_limit", DEFAULT_TIME_LIMIT)
    values["time_limit"] = limit.total_seconds() if isinstance(limit, datetime.timedelta) else limit
    tags = values.get("tags", ())
    if isinstance(tags, str):
        raise InvalidJobType(f"tags must be a list of names, got the string {tags!r}")
    values["tags"] = tuple(tags)
    return Options(**values)
