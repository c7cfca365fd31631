"""Job types: a decorated function becomes the DAG that consumes its jobs.

    from jobqueue import PermanentJobError, job_type

    @job_type("resize_image")
    def resize_image(payload: ResizeImage, ctx) -> dict | None:
        ...

The DAG is named after the identifier and runs when the trigger watching the job table says jobs
of that identifier wait; each run claims a batch, and the runtime (runtime.py) calls the handler
once per job and records each outcome (outcomes.py). A chain of steps is `job_chain`:

    job_chain("generate_pdf", render_html, step(render_pdf, batch=True), enqueue_email)

Options are checked when the DAG file is parsed, so a wrong one is an import error naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import inspect
import logging
import re
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pydantic
from typing_extensions import Unpack

from jobqueue import forms, payloads, settings
from jobqueue.exceptions import InvalidJobType
from jobqueue.manager import JobManager
from jobqueue.task_run import TaskRun, worker_of

log = logging.getLogger(__name__)
JOB_DB_CONN_ID = "worker_db"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "jobqueue",
    # A task retry is safe: it takes back the jobs its run holds and skips those already recorded.
    "retries": 2,
    "retry_delay": datetime.timedelta(seconds=5),
}

# A job that runs longer fails its attempt: without a limit one stuck job would hold its whole run,
# and with WORKER_MAX_ACTIVE_RUNS runs its job type, for ever.
DEFAULT_TIME_LIMIT = datetime.timedelta(minutes=10)
Handler = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class BatchSize:
    """How many jobs a run claims: `least` when that many wait; when more do, its share of them
    with the runs that may still start (of `runs` at once), up to `most`."""

    least: int
    most: int
    runs: int

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


def step(
    function: Handler | None = None,
    *,
    batch: bool = False,
    name: str | None = None,
    detached: bool = False,
    prepare: Callable[[], Any] | None = None,
) -> Any:
    """A step of a chain. `batch=True`: the function takes (items, ctx), the whole batch as a list
    of runtime.BatchItem; `detached`, `prepare`: see Step."""

    def make(fn: Handler) -> Step:
        return Step(fn, batch=batch, name=name or "", detached=detached, prepare=prepare)

    return make if function is None else make(function)


class JobType:
    """A job type: its identifier, its steps, its payload model, its options, and its DAG."""

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
        self.steps = tuple(steps)
        self.payload_model = payload
        self.options = options
        self.parse = payloads.parser(payload)
        fields = forms.model_fields(payload) if payload is not None else {}
        self.form_fields = fields
        self.form_defaults = forms.defaults(fields)
        self.dag = self._build_dag()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The first step's function itself (a handler stays callable, in tests for one)."""
        return self.steps[0].function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job type {self.identifier!r}: {' >> '.join(each.name for each in self.steps)}>"

    def batch_size(self) -> BatchSize:
        least = self.options.batch_size or settings.batch_size()
        most = max(least, self.options.max_batch_size or settings.max_batch_size())
        return BatchSize(least, most, self.options.max_active_runs or settings.max_active_runs())

    def run_step(self, index: int, context: dict[str, Any]) -> dict[str, int]:
        """A task of the DAG: the step `index` for this run's batch."""
        return self.run_task(index, TaskRun.of(context))

    def run_task(self, index: int, run: TaskRun) -> dict[str, int]:
        """The step `index` for the batch of the run `run` (what run_step read from Airflow)."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from jobqueue import detach
        from jobqueue.runtime import StepRun

        hook = PostgresHook(postgres_conn_id=JOB_DB_CONN_ID)
        hook.connection  # noqa: B018 - resolved now, through the task's supervisor: a detached step cannot
        current = self.steps[index]
        prepared = current.prepare() if current.prepare else None
        work = StepRun(self, index, run.worker_id, hook.get_conn, prepared, run.try_number)
        conf, tick = dict(run.conf), cron_tick(run)
        if current.detached:
            summary = dict(detach.run_detached(lambda: work.run(conf, tick)))
        else:
            summary = work.run(conf, tick)
        if summary.get("failed_in_run"):
            fail_run(summary)
        return summary

    def _build_dag(self) -> Any:
        from airflow.providers.standard.operators.python import PythonOperator
        from airflow.sdk import DAG, chain

        first = self.steps[0].function
        with DAG(
            dag_id=self.identifier,
            **self._schedule(),
            max_active_runs=self.options.max_active_runs or settings.max_active_runs(),
            default_args=DEFAULT_ARGS,
            on_failure_callback=self.release_run,
            tags=["jobs", *self.options.tags],
            doc_md=self.options.doc or inspect.getdoc(first),
            params=forms.params(self.form_fields),
        ) as dag:
            chain(
                *(
                    PythonOperator(task_id=each.name, python_callable=self._task(index))
                    for index, each in enumerate(self.steps)
                )
            )
        return dag

    def _schedule(self) -> dict[str, Any]:
        """Jobs waiting start a run; with a cron schedule, so does each tick (not the ticks missed
        while paused: graphile-worker's crontab without `?fill=`; a backfill fills them)."""
        asset = job_asset(self.identifier)
        if self.options.schedule is None:
            return {"schedule": [asset]}
        from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

        timetable = CronTriggerTimetable(self.options.schedule, timezone=self.options.timezone)
        return {
            "schedule": AssetOrTimeSchedule(timetable=timetable, assets=[asset]),
            "start_date": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
            "catchup": False,
        }

    def release_run(self, context: Any) -> None:
        """on_failure_callback of the DAG: the run's jobs go back to the queue, attempts kept."""
        from jobqueue.outcomes import Recorder, Retry

        worker = worker_of(context)
        recorder = Recorder(worker, step="", chained=len(self.steps) > 1)
        with job_database() as jobs:
            held = jobs.held_jobs(worker)
            for job in held:
                recorder.record(jobs, job, Retry(f"the DAG run {worker} failed before finishing this job"))
        log.warning("released %d job(s) of failed run %s", len(held), worker)

    def _task(self, index: int) -> Callable[..., dict[str, int]]:
        def run(**context: Any) -> dict[str, int]:
            return self.run_step(index, context)

        return run


def fail_run(summary: dict[str, int]) -> None:
    """Ends the run's last task as failed, with no retry, when jobs of the run failed for good
    (summary["failed_in_run"], counted by its last step over every step): each outcome is recorded
    already, and the run then shows red in every view of Airflow's (its grid, the DAG list's failed
    runs, the REST API, failure callbacks and alerts) rather than green over a job that will never
    run again. A job failed for a retry does not count; the task's log names each failed job."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(
        f"{summary['failed_in_run']} job(s) of this run failed for good (its Jobs tab lists them); "
        f"this step: {summary}"
    )


def job_asset(identifier: str) -> Any:
    """The asset whose watcher (the trigger on the job table) starts the job type's DAG runs."""
    from airflow.sdk import Asset, AssetWatcher

    from jobqueue.trigger import JobsWaitingTrigger

    trigger = JobsWaitingTrigger(identifiers=[identifier], conn_id=JOB_DB_CONN_ID)
    return Asset(
        name=f"worker_jobs_{identifier}",
        uri=f"worker-jobs://{identifier}",
        watchers=[AssetWatcher(name=f"worker_jobs_{identifier}_waiting", trigger=trigger)],
    )


class CronTick(pydantic.BaseModel):
    ts: datetime.datetime  # the tick's time (the DAG run's logical date)
    backfilled: bool = False  # enqueued by a backfill, after its time


class CronPayload(pydantic.BaseModel):
    """The payload of a job a cron tick enqueued, as graphile-worker's crontab gives it:
    `{"_cron": {"ts": "...", "backfilled": false}}`."""

    model_config = pydantic.ConfigDict(frozen=True)

    cron: CronTick = pydantic.Field(alias="_cron")


def cron_tick(run: TaskRun) -> dict[str, Any] | None:
    """A run the schedule started (or a backfill) stands for a cron tick; any other run does not."""
    tick = run.tick
    if tick is None:
        return None
    return {"ts": tick.astimezone(datetime.UTC).isoformat(), "backfilled": run.backfilled}


def _check_cron(expression: str, timezone: str) -> None:
    # Airflow's own timetable checks the expression (validate) and the zone (its constructor).
    from airflow.timetables.trigger import CronTriggerTimetable

    try:
        CronTriggerTimetable(expression, timezone=timezone).validate()
    except Exception as exc:
        raise InvalidJobType(f"schedule {expression!r} in time zone {timezone!r} is refused: {exc}") from exc


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


@contextlib.contextmanager
def job_database(autocommit: bool = True) -> Iterator[JobManager]:
    """One connection to the job database for a task of ours, through the `worker_db` connection."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn: Any = PostgresHook(postgres_conn_id=JOB_DB_CONN_ID).get_conn()
    conn.autocommit = autocommit
    try:
        yield JobManager(conn)
    finally:
        conn.close()


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


def job_type(
    identifier: str,
    *,
    payload: type[pydantic.BaseModel] | None = None,
    batch: bool = False,
    **options: Unpack[OptionArgs],
) -> Callable[[Handler], JobType]:
    """Makes `function(payload, ctx)` the job type `identifier`, and the DAG that consumes its jobs.

    The payload's model is the first parameter's annotation (a pydantic model), or `payload=`;
    `batch=True`: the function takes the whole batch, a list of runtime.BatchItem. `schedule`: a
    cron expression (in `timezone`); each tick enqueues a job whose payload is a CronPayload."""
    with _at_the_callers_line():
        checked = _options(options)

    def decorate(function: Handler) -> JobType:
        with _at_the_callers_line():
            handler = Step(function, batch=batch)
            model = payload or (None if batch else _payload_model(function))
            return JobType(identifier, [handler], model, checked)

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
        model = payload or (_payload_model(first.function) if first and not first.batch else None)
        return JobType(identifier, chain, model, _options(options))


_PACKAGE = Path(__file__).parent


@contextlib.contextmanager
def _at_the_callers_line() -> Iterator[None]:
    """A declaration refused names the line of the DAG file that made it: Airflow shows an import
    error's last two frames, which are ours (`[core] dagbag_import_error_traceback_depth`)."""
    try:
        yield
    except InvalidJobType as exc:
        frame = sys._getframe(1)  # contextlib's __exit__, then our frames, then the DAG file's
        while frame.f_back is not None and (
            frame.f_code.co_filename == contextlib.__file__
            or Path(frame.f_code.co_filename).is_relative_to(_PACKAGE)
        ):
            frame = frame.f_back
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


def _first_annotation(function: Handler) -> Any:
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters:
        raise InvalidJobType(f"{function.__name__} takes no parameter: a handler takes (payload, ctx)")
    try:
        hints = typing.get_type_hints(function)
    except NameError as exc:
        raise InvalidJobType(f"{function.__name__}: an annotation names something unknown: {exc}") from exc
    return hints.get(parameters[0].name)


def _payload_model(function: Handler) -> type[pydantic.BaseModel] | None:
    annotation = _first_annotation(function)
    if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    return None


def _input_adapter(function: Handler) -> pydantic.TypeAdapter[Any] | None:
    annotation = _first_annotation(function)
    if annotation is None or annotation is Any or annotation in (dict, list, str, int, float):
        return None
    return pydantic.TypeAdapter(annotation)


def might_contain_job_types(file_path: str, zip_file: Any = None) -> bool:
    """Airflow's `[core] might_contain_dag_callable`: Airflow's own guess (the file names "airflow"
    and "dag"), or a file that declares job types."""
    from airflow.utils.file import might_contain_dag_via_default_heuristic

    if might_contain_dag_via_default_heuristic(file_path, zip_file):
        return True
    if zip_file is not None:
        with zip_file.open(file_path) as opened:
            content = opened.read()
    else:
        with open(file_path, "rb") as opened:
            content = opened.read()
    return b"job_type" in content or b"job_chain" in content
