"""Job types as data: an identifier, its steps, its payload model and its options, checked when
declared. Nothing here touches Airflow's DAGs or the job database: job_types.py declares (the
public API), airflow_dag.py makes the DAG, runtime.py runs a step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydantic

from jobqueue import forms, payloads, settings
from jobqueue.exceptions import InvalidJobType

# A job that runs longer fails its attempt: without a limit one stuck job would hold its whole run,
# and with WORKER_MAX_ACTIVE_RUNS runs its job type, for ever.
DEFAULT_TIME_LIMIT = datetime.timedelta(minutes=10)
Handler = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class BatchSize:
    """How many jobs a run claims: `least` when that many wait; when more do, its share of them
    with the runs that may still start (of `runs` at once), up to `most`. Held back by a rate
    limit, it claims more as the limit allows for up to `pace_seconds`."""

    least: int
    most: int
    runs: int
    pace_seconds: float = 0.0

    def share(self, waiting: int, other_runs: int) -> int:
        free = max(1, self.runs - other_runs)
        return max(self.least, min(self.most, -(-waiting // free)))


@dataclasses.dataclass(frozen=True)
class Options:
    batch_size: int | None = None  # jobs one run claims; None: WORKER_BATCH_SIZE, read at run time
    # When more wait, a run takes its share of them (what waits over the runs that may still start),
    # up to this many: Airflow's cost of a run is paid once per few thousand jobs in a burst.
    # None: WORKER_MAX_BATCH_SIZE
    max_batch_size: int | None = None
    max_active_runs: int | None = None  # runs at once; None: WORKER_MAX_ACTIVE_RUNS
    max_attempts: int | None = None  # caps each job's own max_attempts (25 unless add_job says)
    time_limit: float | None = DEFAULT_TIME_LIMIT.total_seconds()  # per job, None for no limit
    concurrency: int = 1  # jobs of a batch whose handler runs at once (async: tasks; sync: threads)
    tags: tuple[str, ...] = ()
    doc: str | None = None
    schedule: str | None = None  # a cron expression: each tick enqueues one job (see CronPayload)
    timezone: str = "UTC"  # the cron expression's time zone
    # Jobs claimed per second, minute or hour ("10/s", "100/m", "1000/h"), across every run and
    # host: a token bucket in the job database (migration 0007), which an operator can change.
    rate_limit: str | None = None
    # A job group's name: its jobs are picked up by the group's DAG, one run for every member with
    # jobs waiting, rather than by a run of their own type each (airflow_dag.join_group).
    group: str | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_batch_size", "max_active_runs", "max_attempts", "concurrency"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidJobType(f"{name} must be a whole number of at least 1, got {value!r}")
        limit = self.time_limit
        if limit is not None and (
            not isinstance(limit, int | float) or isinstance(limit, bool) or limit <= 0
        ):
            raise InvalidJobType(f"time_limit must be a positive duration, got {self.time_limit!r}")
        if self.schedule is not None:
            _check_cron(self.schedule, self.timezone)
        if self.rate_limit is not None:
            _check_rate_limit(self.rate_limit)
        if self.group is not None and not (isinstance(self.group, str) and _GROUP_NAME.fullmatch(self.group)):
            raise InvalidJobType(
                f"group must be a DAG id (letters, digits, '_', '-', '.', up to 250), got {self.group!r}"
            )


@dataclasses.dataclass(frozen=True)
class Step:
    """One task of a job type's DAG: a function of (input, ctx) per job, or of the batch."""

    function: Handler
    batch: bool = False
    name: str = ""
    # Runs in a process of its own that outlives the task (detach.py): for an effect that cannot be
    # undone, so a task killed mid-batch leaves it to finish and record what it did.
    detached: bool = False
    # Called in the task process before the step (before it detaches): what a batch handler finds
    # as ctx.prepared, such as an Airflow connection, which a detached process cannot look up.
    prepare: Callable[[], Any] | None = None
    input_adapter: pydantic.TypeAdapter[Any] | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise InvalidJobType(f"a step must be a function, got {self.function!r}")
        object.__setattr__(self, "name", self.name or self.function.__name__)
        adapter = None if self.batch else _input_adapter(self.function)
        object.__setattr__(self, "input_adapter", adapter)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def parse_input(self, value: Any) -> Any:
        """What the step before handed on, as this step's first parameter is annotated."""
        adapter = self.input_adapter
        return value if adapter is None else adapter.validate_python(value)


class JobType:
    """A job type: its identifier, its steps, its payload model, its options; and, once declared
    through job_types.py, the DAG that consumes its jobs (`dag`)."""

    def __init__(
        self,
        identifier: str,
        steps: Sequence[Step],
        payload: type[pydantic.BaseModel] | None,
        options: Options,
    ) -> None:
        self.identifier = identifier
        if not steps:
            raise InvalidJobType(f"job type {identifier!r} has no step")
        names = [each.name for each in steps]
        if len(set(names)) != len(names):
            raise InvalidJobType(f"job type {identifier!r}: two steps are named alike: {names}")
        group = options.group
        if group is not None and len(steps) > 1:
            raise InvalidJobType(
                f"job type {identifier!r}: a job group's members have one step each, not {names}"
            )
        if group == identifier:
            raise InvalidJobType(f"job type {identifier!r}: its group's DAG would have its own DAG's id")
        self.steps = tuple(steps)
        self.payload_model = payload
        self.options = options
        self.parse = payloads.parser(payload)
        fields = forms.model_fields(payload) if payload is not None else {}
        self.form_fields = fields
        self.form_defaults = forms.defaults(fields)
        self.dag: Any = None
        self.group_dag: Any = None  # a group's member: the DAG that picks up its jobs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The first step's function itself (a handler stays callable, in tests for one)."""
        return self.steps[0].function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job type {self.identifier!r}: {' >> '.join(each.name for each in self.steps)}>"

    def is_last(self, index: int) -> bool:
        """Whether the step `index` ends the chain: its value is the job's result."""
        return index == len(self.steps) - 1

    def batch_size(self) -> BatchSize:
        least = self.options.batch_size or settings.batch_size()
        most = max(least, self.options.max_batch_size or settings.max_batch_size())
        runs = self.options.max_active_runs or settings.max_active_runs()
        return BatchSize(least, most, runs, settings.rate_limit_pace_seconds())


class CronTick(pydantic.BaseModel):
    ts: datetime.datetime  # the tick's time (the DAG run's logical date)
    backfilled: bool = False  # enqueued by a backfill, after its time


class CronPayload(pydantic.BaseModel):
    """The payload of a job a cron tick enqueued, as graphile-worker's crontab gives it:
    `{"_cron": {"ts": "...", "backfilled": false}}`."""

    model_config = pydantic.ConfigDict(frozen=True)

    cron: CronTick = pydantic.Field(alias="_cron")


def _check_cron(expression: str, timezone: str) -> None:
    # Airflow's own timetable checks the expression (validate) and the zone (its constructor).
    from airflow.timetables.trigger import CronTriggerTimetable

    try:
        CronTriggerTimetable(expression, timezone=timezone).validate()
    except Exception as exc:
        raise InvalidJobType(f"schedule {expression!r} in time zone {timezone!r} is refused: {exc}") from exc


_PACKAGE = Path(__file__).parent


def declaring_frame(frame: types.FrameType) -> types.FrameType:
    """From `frame` outwards, the first frame neither ours nor contextlib's: the DAG file's line
    that declares a job type (a refusal names it; a job group belongs to that file's run)."""
    while frame.f_back is not None and (
        frame.f_code.co_filename == contextlib.__file__
        or Path(frame.f_code.co_filename).is_relative_to(_PACKAGE)
    ):
        frame = frame.f_back
    return frame


# A group is a DAG: its name is a DAG id (Airflow's own pattern, its length limit).
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,250}")

# The notation worker._rate_per_second (SQL) reads: Celery's.
_RATE_LIMIT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*[smh])?\s*")


def _check_rate_limit(rate_limit: Any) -> None:
    match = _RATE_LIMIT.fullmatch(rate_limit) if isinstance(rate_limit, str) else None
    if match is None:
        raise InvalidJobType(
            f"rate_limit must be jobs per second, minute or hour, such as '10/s', '100/m' or '1000/h', "
            f"got {rate_limit!r}"
        )
    if float(match.group(1)) <= 0:
        raise InvalidJobType(f"rate_limit {rate_limit!r} lets no job run: pause the identifier instead")


def _first_annotation(function: Handler) -> Any:
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters:
        raise InvalidJobType(f"{function.__name__} takes no parameter: a handler takes (payload, ctx)")
    try:
        hints = typing.get_type_hints(function)
    except NameError as exc:
        raise InvalidJobType(f"{function.__name__}: an annotation names something unknown: {exc}") from exc
    return hints.get(parameters[0].name)


def payload_model_of(function: Handler) -> type[pydantic.BaseModel] | None:
    annotation = _first_annotation(function)
    if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    return None


def _input_adapter(function: Handler) -> pydantic.TypeAdapter[Any] | None:
    annotation = _first_annotation(function)
    if annotation is None or annotation is Any or annotation in (dict, list, str, int, float):
        return None
    return pydantic.TypeAdapter(annotation)
