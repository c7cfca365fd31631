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

import dataclasses
import datetime
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

import pydantic

from jobqueue import forms, payloads, runs, settings
from jobqueue.exceptions import InvalidJobType

# A job that runs longer fails its attempt: without a limit one stuck job would hold its whole run,
# and with WORKER_MAX_ACTIVE_RUNS runs its job type, for ever.
DEFAULT_TIME_LIMIT = datetime.timedelta(minutes=10)
Handler = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Options:
    batch_size: int | None = None  # jobs one run claims; None: WORKER_BATCH_SIZE, read at run time
    max_active_runs: int | None = None  # runs at once; None: WORKER_MAX_ACTIVE_RUNS
    max_attempts: int | None = None  # caps each job's own max_attempts (25 unless add_job says)
    time_limit: float | None = DEFAULT_TIME_LIMIT.total_seconds()  # per job, None for no limit
    concurrency: int = 1  # jobs of a batch whose handler runs at once (async: tasks; sync: threads)
    tags: tuple[str, ...] = ()
    doc: str | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_active_runs", "max_attempts", "concurrency"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidJobType(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise InvalidJobType(f"time_limit must be a positive duration, got {self.time_limit!r}")


@dataclasses.dataclass(frozen=True)
class Step:
    """One task of a job type's DAG: a function of (input, ctx) per job, or of the batch."""

    function: Handler
    batch: bool = False
    name: str = ""
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


def step(function: Handler | None = None, *, batch: bool = False, name: str | None = None) -> Any:
    """A step of a chain; `batch=True`: the function takes the whole batch (runtime.BatchItem)."""
    if function is None:
        return lambda fn: Step(fn, batch=batch, name=name or "")
    return Step(function, batch=batch, name=name or "")


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

    def batch_size(self) -> int:
        return self.options.batch_size or settings.batch_size()

    def run_step(self, index: int, context: dict[str, Any]) -> dict[str, int]:
        """A task of the DAG: the step `index` for this run's batch."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from jobqueue.runtime import StepRun

        hook = PostgresHook(postgres_conn_id=runs.JOB_DB_CONN_ID)
        return StepRun(self, index, runs.worker_id(context), hook.get_conn).run(context["dag_run"].conf)

    def _build_dag(self) -> Any:
        from airflow.providers.standard.operators.python import PythonOperator
        from airflow.sdk import DAG, chain

        first = self.steps[0].function
        with DAG(
            dag_id=self.identifier,
            doc_md=self.options.doc or inspect.getdoc(first),
            params=forms.params(self.form_fields),
            **runs.job_dag(self.identifier, *self.options.tags, max_active_runs=self.options.max_active_runs),
        ) as dag:
            chain(
                *(
                    PythonOperator(task_id=each.name, python_callable=self._task(index))
                    for index, each in enumerate(self.steps)
                )
            )
        return dag

    def _task(self, index: int) -> Callable[..., dict[str, int]]:
        def run(**context: Any) -> dict[str, int]:
            return self.run_step(index, context)

        return run


def job_type(
    identifier: str,
    *,
    payload: type[pydantic.BaseModel] | None = None,
    batch: bool = False,
    batch_size: int | None = None,
    max_active_runs: int | None = None,
    max_attempts: int | None = None,
    time_limit: float | datetime.timedelta | None = DEFAULT_TIME_LIMIT,
    concurrency: int = 1,
    tags: Sequence[str] = (),
    doc: str | None = None,
) -> Callable[[Handler], JobType]:
    """Makes `function(payload, ctx)` the job type `identifier`, and the DAG that consumes its jobs.

    The payload's model is the first parameter's annotation (a pydantic model), or `payload=`;
    `batch=True`: the function takes the whole batch, a list of runtime.BatchItem."""
    options = _options(batch_size, max_active_runs, max_attempts, time_limit, concurrency, tags, doc)

    def decorate(function: Handler) -> JobType:
        handler = Step(function, batch=batch)
        model = payload or (None if batch else _payload_model(function))
        return JobType(identifier, [handler], model, options)

    return decorate


def job_chain(
    identifier: str,
    *steps: Handler | Step,
    payload: type[pydantic.BaseModel] | None = None,
    batch_size: int | None = None,
    max_active_runs: int | None = None,
    max_attempts: int | None = None,
    time_limit: float | datetime.timedelta | None = DEFAULT_TIME_LIMIT,
    concurrency: int = 1,
    tags: Sequence[str] = (),
    doc: str | None = None,
) -> JobType:
    """A job type of several steps, one task each, in this order: each step gets what the step
    before returned for the job (kept in the job database, not in XCom), the last step's value is
    the job's result, and a job that fails in one step goes no further."""
    chain = [each if isinstance(each, Step) else Step(each) for each in steps]
    first = chain[0] if chain else None
    model = payload or (_payload_model(first.function) if first and not first.batch else None)
    options = _options(batch_size, max_active_runs, max_attempts, time_limit, concurrency, tags, doc)
    return JobType(identifier, chain, model, options)


def _options(
    batch_size: int | None,
    max_active_runs: int | None,
    max_attempts: int | None,
    time_limit: float | datetime.timedelta | None,
    concurrency: int,
    tags: Sequence[str],
    doc: str | None,
) -> Options:
    seconds = time_limit.total_seconds() if isinstance(time_limit, datetime.timedelta) else time_limit
    if isinstance(tags, str):
        raise InvalidJobType(f"tags must be a list of names, got the string {tags!r}")
    return Options(batch_size, max_active_runs, max_attempts, seconds, concurrency, tuple(tags), doc)


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
