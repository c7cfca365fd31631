"""graphile-worker's crontab file, as is: each line becomes a DAG whose schedule is the line's and
whose one task enqueues the line's job at each tick.

    # ┌ minute ┌ hour ┌ day of month ┌ month ┌ day of week (0-6, Sunday 0 or 7)
    0 8 * * 1 send_report ?fill=2d&max=3&queue=reports&priority=1&id=weekly {"format": "pdf"}

The fields read as graphile-worker reads them (numbers, `a-b`, `*`, `*/n`, comma lists; when both
the day of month and the day of week are restricted, either matches), in UTC unless a time zone is
given. The job is graphile-worker's: the task identifier, the payload merged with
`{"_cron": {"ts": ..., "backfilled": ...}}`, run_at the tick, the options as add_job's. Each tick is
enqueued once (worker.add_cron_job), with the key `cron:<id>:<tick>` unless `jobKey=` gives one;
with `?fill=`, a run also enqueues the ticks missed since the line's last one, within that period,
as `backfilled`. A line that does not parse fails the DAG file's import, naming the line.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

from jobqueue.exceptions import InvalidCrontab
from jobqueue.manager import JobManager

# graphile-worker's own patterns (src/cronConstants.ts), so a line it accepts is accepted here.
_LINE = re.compile(r"^([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)\s+(.*)$")
_COMMAND = re.compile(r"^([_a-zA-Z][_a-zA-Z0-9:/_-]*)(?:\s+\?([^\s]+))?(?:\s+(\{.*\}))?$")
_ID = re.compile(r"^[_a-zA-Z][-_a-zA-Z0-9]*$")
_FILL = re.compile(r"^(?:[0-9]+[smhdw])+$")
_FILL_PART = re.compile(r"([0-9]+)([smhdw])")
_QUEUE = re.compile(r"^[-a-zA-Z0-9_:]+$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# (name, lowest, highest) of the five fields; a day of week of 7 is Sunday, 0.
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
)
_OPTIONS = ("id", "fill", "max", "queue", "priority", "jobKey", "jobKeyMode")
# A DAG id allows letters, digits, dashes, dots and underscores; a task identifier may have more.
_DAG_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


@dataclasses.dataclass(frozen=True)
class CronItem:
    """One line of a crontab."""

    line: int
    expression: str  # the five fields, as a cron expression that means what graphile-worker reads
    identifier: str
    id: str
    fill: datetime.timedelta = datetime.timedelta(0)
    max_attempts: int | None = None
    queue_name: str | None = None
    priority: int | None = None
    job_key: str | None = None
    job_key_mode: str | None = None
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def dag_id(self) -> str:
        return "crontab_" + _DAG_ID_UNSAFE.sub("_", self.id)

    def spec(self, tick: datetime.datetime, backfilled: bool) -> dict[str, Any]:
        """The add_jobs spec of this line's job at `tick`."""
        ts = tick.astimezone(datetime.UTC).isoformat()
        spec = {
            "identifier": self.identifier,
            "payload": {**self.payload, "_cron": {"ts": ts, "backfilled": backfilled}},
            "run_at": ts,
            "queue_name": self.queue_name,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "job_key": self.job_key or f"cron:{self.id}:{ts}",
            "job_key_mode": self.job_key_mode,
        }
        return {name: value for name, value in spec.items() if value is not None}


def parse_crontab(text: str) -> list[CronItem]:
    """Every line that is not a comment or blank; ids must be unique (graphile-worker's rule)."""
    items = [
        parse_line(line.strip(), number)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    seen: dict[str, int] = {}
    for item in items:
        for key, kind in ((item.id, "id"), (item.dag_id, "DAG id")):
            if key in seen:
                raise InvalidCrontab(
                    f"crontab line {item.line}: {kind} {key!r} is used by line {seen[key]} already: "
                    "give one of them ?id=..."
                )
            seen[key] = item.line
    return items


def parse_line(line: str, number: int) -> CronItem:
    where = f"crontab line {number}"
    fields = _LINE.match(line)
    if fields is None:
        raise InvalidCrontab(f"{where}: expected five time fields and a task identifier, got {line!r}")
    expression = " ".join(
        _field(fields.group(index + 1), name, low, high, where)
        for index, (name, low, high) in enumerate(_FIELDS)
    )
    command = _COMMAND.match(fields.group(6).strip())
    if command is None:
        raise InvalidCrontab(
            f"{where}: {fields.group(6)!r} is not `task_identifier [?options] [{{json payload}}]`"
        )
    identifier, options, payload = command.groups()
    return CronItem(
        line=number,
        expression=expression,
        identifier=identifier,
        payload=_payload(payload, where),
        **_options(options, identifier, where),
    )


def _field(text: str, name: str, low: int, high: int, where: str) -> str:
    """One time field as the values it matches: `*` when it matches all of them (it then does not
    count as restricted for the day-of-month or day-of-week rule), else a comma list."""
    values: set[int] = set()
    wrap = name == "day of week"
    for part in text.split(","):
        if part.isdigit():
            values.add(_value(int(part), name, low, high, wrap, where))
        elif (bounds := re.fullmatch(r"([0-9]+)-([0-9]+)", part)) is not None:
            first, last = int(bounds.group(1)), int(bounds.group(2))
            if last <= first:
                raise InvalidCrontab(f"{where}: range {part!r} of the {name} does not go upwards")
            values.update(_value(n, name, low, high, wrap, where) for n in range(first, last + 1))
        elif (star := re.fullmatch(r"\*(?:/([0-9]+))?", part)) is not None:
            step = int(star.group(1) or 1)
            if step < 1:
                raise InvalidCrontab(f"{where}: step {part!r} of the {name} must be at least 1")
            values.update(range(low, high + 1, step))
        else:
            raise InvalidCrontab(f"{where}: {part!r} in the {name} is not a number, a range a-b, * or */n")
    if values == set(range(low, high + 1)):
        return "*"
    return ",".join(str(n) for n in sorted(values))


def _value(number: int, name: str, low: int, high: int, wrap: bool, where: str) -> int:
    if wrap and number == high + 1:
        return low
    if not low <= number <= high:
        raise InvalidCrontab(f"{where}: {number} is outside the {name}'s {low}-{high}")
    return number


def _options(text: str | None, identifier: str, where: str) -> dict[str, Any]:
    given: dict[str, list[str]] = urllib.parse.parse_qs(text or "", keep_blank_values=True)
    for key, values in given.items():
        if key not in _OPTIONS:
            raise InvalidCrontab(f"{where}: unknown option {key!r}: expected one of {', '.join(_OPTIONS)}")
        if len(values) > 1:
            raise InvalidCrontab(f"{where}: option {key!r} is given more than once")
    option = {key: values[0] for key, values in given.items()}
    checks = {
        "id": _ID, "fill": _FILL, "max": re.compile(r"^[0-9]+$"), "queue": _QUEUE,
        "priority": re.compile(r"^-?[0-9]+$"), "jobKeyMode": re.compile(r"^(replace|preserve_run_at)$"),
        "jobKey": re.compile(r"^.+$"),
    }  # fmt: skip
    for key, value in option.items():
        if not checks[key].match(value):
            raise InvalidCrontab(f"{where}: {value!r} is not a valid value of option {key!r}")
    if option.get("max") is not None and int(option["max"]) < 1:
        raise InvalidCrontab(f"{where}: max={option['max']}: a job needs at least one attempt")
    if "jobKeyMode" in option and "jobKey" not in option:
        raise InvalidCrontab(f"{where}: jobKeyMode without jobKey means nothing")
    fill = sum(int(n) * _UNITS[unit] for n, unit in _FILL_PART.findall(option.get("fill", "")))
    return {
        "id": option.get("id", identifier),
        "fill": datetime.timedelta(seconds=fill),
        "max_attempts": int(option["max"]) if "max" in option else None,
        "queue_name": option.get("queue"),
        "priority": int(option["priority"]) if "priority" in option else None,
        "job_key": option.get("jobKey"),
        "job_key_mode": option.get("jobKeyMode"),
    }


def _payload(text: str | None, where: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise InvalidCrontab(
            f"{where}: the payload is not JSON ({exc}); graphile-worker's JSON5 (unquoted keys, "
            "single quotes, trailing commas) is not read: write it as JSON"
        ) from exc
    if not isinstance(payload, dict):
        raise InvalidCrontab(f"{where}: the payload must be a JSON object, got {text!r}")
    return payload


def ticks_between(
    expression: str, timezone: str, after: datetime.datetime, before: datetime.datetime
) -> list[datetime.datetime]:
    """The schedule's ticks strictly after `after` and strictly before `before`, as Airflow's own
    timetable counts them (daylight saving included)."""
    import pendulum
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    timetable = CronTriggerTimetable(expression, timezone=timezone)
    restriction = TimeRestriction(earliest=None, latest=None, catchup=True)
    found: list[datetime.datetime] = []
    current = pendulum.instance(after)
    while True:
        info = timetable.next_dagrun_info(
            last_automated_data_interval=DataInterval(current, current), restriction=restriction
        )
        if info is None or info.run_after >= before:
            return found
        current = info.run_after
        found.append(current)


def enqueue_tick(
    jobs: JobManager, item: CronItem, tick: datetime.datetime, timezone: str, backfilled: bool = False
) -> list[int]:
    """Enqueues the job of `tick`, after the ticks missed within the line's fill period since its
    last enqueued one. The ids of the jobs enqueued now (none for a tick enqueued already)."""
    ticks = []
    last = jobs.last_cron_tick(item.id) if item.fill else None
    if last is not None and last < tick:
        # graphile-worker fills the ticks of [tick - fill, tick); a cron tick is a whole minute.
        oldest = tick - item.fill
        since = max(last, oldest - datetime.timedelta(minutes=1))
        missed = ticks_between(item.expression, timezone, since, tick)
        ticks = [(each, True) for each in missed if each > last and each >= oldest]
    enqueued = []
    for each, filled in [*ticks, (tick, backfilled)]:
        job = jobs.add_cron_job(item.id, each, item.spec(each, filled))
        if job is not None:
            enqueued.append(job.id)
    return enqueued


def crontab_dags(path: Path, timezone: str = "UTC") -> dict[str, Any]:
    """A DAG per line of the crontab file at `path` (none if there is no such file), by DAG id."""
    if not path.exists():
        return {}
    try:
        items = parse_crontab(path.read_text())
    except InvalidCrontab as exc:  # the import error is filed under dags/crontab.py: name the file
        raise InvalidCrontab(f"{exc} (in {path})") from exc
    return {item.dag_id: _dag(item, timezone) for item in items}


def _dag(item: CronItem, timezone: str) -> Any:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, CronTriggerTimetable

    from jobqueue.airflow_dag import DEFAULT_ARGS

    def enqueue(**context: Any) -> list[int]:
        from jobqueue.database import job_database
        from jobqueue.task_run import TaskRun

        run = TaskRun.of(context)
        tick = run.logical_date or run.run_after
        assert tick is not None, "a crontab DAG's run has a tick: its schedule's"
        with job_database() as jobs:
            return enqueue_tick(jobs, item, tick, timezone, backfilled=run.backfilled)

    with DAG(
        dag_id=item.dag_id,
        schedule=CronTriggerTimetable(item.expression, timezone=timezone),
        start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        catchup=False,  # the latest missed tick runs; ?fill= enqueues the others (enqueue_tick)
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["crontab"],
        doc_md=f"Line {item.line} of the crontab: `{item.expression}` enqueues `{item.identifier}`.",
    ) as dag:
        PythonOperator(task_id="enqueue", python_callable=enqueue)
    return dag
