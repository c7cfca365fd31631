"""Every environment variable the project reads, in one place (documented in README.md)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TypeVar

from jobqueue import paths
from jobqueue.project import Project
from jobqueue.project import template_dirs as template_dirs_of

DEFAULT_PG_PORT = 55432
DEFAULT_SMTP_PORT = 8025
DEFAULT_API_PORT = 8080


N = TypeVar("N", int, float)


def _number(name: str, default: N, kind: type[N], meaning: str) -> N:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        from jobqueue.exceptions import ConfigurationError

        raise ConfigurationError(f"{name} must be {meaning}, got {raw!r}") from None


def _int(name: str, default: int) -> int:
    return _number(name, default, int, "a whole number")


def _float(name: str, default: float) -> float:
    return _number(name, default, float, "a number of seconds")


def data_dir() -> Path:
    return (paths.PROJECT_ROOT / os.environ.get("WORKER_DATA_DIR", ".data")).resolve()


def project() -> Project | None:
    """WORKER_PROJECT: a team's own folder (its tasks/, templates/ and crontab; see project.py),
    added to the product's; relative to the project root. Unset: the product's job types only."""
    raw = os.environ.get("WORKER_PROJECT", "")
    return Project.at(paths.PROJECT_ROOT / raw) if raw else None


def template_dirs(kind: str) -> list[Path]:
    """Where templates of `kind` ("email", "pdf") are found: WORKER_PROJECT's first, then ours."""
    return template_dirs_of(kind, project())


def crontab() -> tuple[Path, str]:
    """WORKER_CRONTAB: graphile-worker's crontab file (by default the project's `crontab`, else the
    product's dags/crontab), and WORKER_CRONTAB_TIMEZONE, the time zone its times are in (UTC, as
    graphile-worker's)."""
    team = project()
    default = team.crontab if team is not None else paths.PROJECT_ROOT / "dags" / "crontab"
    path = Path(os.environ.get("WORKER_CRONTAB") or default)
    return path, os.environ.get("WORKER_CRONTAB_TIMEZONE") or "UTC"


def statsd() -> tuple[str, int] | None:
    """WORKER_STATSD, `host:port` of a StatsD server: `make run` then has Airflow export its metrics
    and the job queue's there (jobqueue.metrics). Unset: no metrics."""
    raw = os.environ.get("WORKER_STATSD", "")
    if not raw:
        return None
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit():
        from jobqueue.exceptions import ConfigurationError

        raise ConfigurationError(f"WORKER_STATSD must be host:port, such as 127.0.0.1:8125, got {raw!r}")
    return host, int(port)


def pg_port() -> int:
    return _int("WORKER_PG_PORT", DEFAULT_PG_PORT)


def pg_durable() -> bool:
    """Whether the local cluster syncs its writes to disk, WORKER_PG_DURABLE (true). The tests'
    stacks turn it off: no test crashes the machine, and a fast restart loses nothing either way."""
    return os.environ.get("WORKER_PG_DURABLE", "true").lower() not in ("0", "false", "no")


def smtp_port() -> int:
    return _int("WORKER_SMTP_PORT", DEFAULT_SMTP_PORT)


def api_port() -> int:
    return _int("AIRFLOW_API_PORT", DEFAULT_API_PORT)


def external_database_url() -> str | None:
    """The job database named by WORKER_DATABASE_URL, or None for the local cluster."""
    return os.environ.get("WORKER_DATABASE_URL") or None


def local_database_url(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{pg_port()}/{database}"


def job_database_url() -> str:
    return external_database_url() or local_database_url("worker")


def airflow_database_url() -> str:
    """Airflow's metadata: its own database on the local cluster, else beside the jobs."""
    explicit = os.environ.get("WORKER_AIRFLOW_DATABASE_URL")
    if explicit:
        return explicit
    return external_database_url() or local_database_url("airflow")


def smtp_connection() -> str | None:
    """The Airflow connection URI of a real SMTP server (AIRFLOW_CONN_SMTP_DEFAULT), or None for the
    local sink."""
    return os.environ.get("AIRFLOW_CONN_SMTP_DEFAULT") or None


def admin_password() -> str | None:
    return os.environ.get("AIRFLOW_ADMIN_PASSWORD") or None


@dataclasses.dataclass(frozen=True)
class TriggerTunables:
    poll_interval: float
    min_gap: float
    stale_after: float
    metrics_interval: float = 10.0  # how often the queue's gauges are read (0: never)


def trigger_tunables() -> TriggerTunables:
    """Read when the trigger starts, not kept in its kwargs (which must stay stable)."""
    return TriggerTunables(
        poll_interval=_float("WORKER_TRIGGER_POLL_SECONDS", 5.0),
        min_gap=_float("WORKER_TRIGGER_MIN_GAP_SECONDS", 0.2),
        stale_after=_float("WORKER_TRIGGER_REFIRE_SECONDS", 6.0),
        metrics_interval=_float("WORKER_METRICS_INTERVAL_SECONDS", 10.0),
    )


def batch_size() -> int:
    return _int("WORKER_BATCH_SIZE", 500)


def rate_limit_pace_seconds() -> float:
    """How long a run of a rate-limited identifier keeps claiming as its limit allows, before it
    works on what it has (WORKER_RATE_LIMIT_PACE_SECONDS). Longer: nearer the rate (the next run's
    start, a second or two, is paid less often); shorter: each job starts sooner after its claim."""
    return _float("WORKER_RATE_LIMIT_PACE_SECONDS", 5.0)


def max_batch_size() -> int:
    """The most jobs one run claims when many wait (its share of them): WORKER_MAX_BATCH_SIZE."""
    return _int("WORKER_MAX_BATCH_SIZE", 5000)


def scheduler_hot() -> tuple[float, float]:
    """(seconds after a trigger fired during which the scheduler's idle sleep is short when it
    cannot hear its executor's task ends, that short sleep): WORKER_SCHEDULER_HOT_SECONDS (30),
    WORKER_SCHEDULER_HOT_SLEEP (0.1)."""
    return _float("WORKER_SCHEDULER_HOT_SECONDS", 30.0), _float("WORKER_SCHEDULER_HOT_SLEEP", 0.1)


def scheduler_idle_seconds() -> float:
    """The longest an idle scheduler goes without running its loop, WORKER_SCHEDULER_IDLE_SECONDS
    (10): it still looks for work every second (idle_probe.py), and its timed events bound it."""
    return _float("WORKER_SCHEDULER_IDLE_SECONDS", 10.0)


def dag_processor_idle_seconds() -> float:
    """The dag-processor's wait between loops when it parses nothing, WORKER_DAG_PROCESSOR_IDLE_SECONDS
    (5; Airflow's is 1): see parsing_idle.py."""
    return _float("WORKER_DAG_PROCESSOR_IDLE_SECONDS", 5.0)


def triggerer_load_seconds() -> float:
    """How often the triggerer takes on new triggers and cleans unused ones,
    WORKER_TRIGGERER_LOAD_SECONDS (5; 0 leaves Airflow's round, 1 s): see trigger_loading.py."""
    return _float("WORKER_TRIGGERER_LOAD_SECONDS", 5.0)


def executor_idle_seconds() -> float:
    """How long the LocalExecutor's workers stay with no task before they leave,
    WORKER_EXECUTOR_IDLE_SECONDS (30; 0 keeps them): see idle_workers.py."""
    return _float("WORKER_EXECUTOR_IDLE_SECONDS", 30.0)


def smtp_sessions() -> int:
    """SMTP sessions a send task opens at most (one per 25 messages of its batch)."""
    return _int("WORKER_SMTP_SESSIONS", 4)


def max_active_runs() -> int:
    return _int("WORKER_MAX_ACTIVE_RUNS", 2)


def mail_from() -> str:
    return os.environ.get("WORKER_MAIL_FROM") or "jobs@localhost"


def storage_url() -> str:
    """Where documents live: any fsspec URL (s3://bucket/prefix); default a folder under the data dir."""
    return os.environ.get("WORKER_STORAGE_URL") or f"file://{data_dir() / 'documents'}"


@dataclasses.dataclass(frozen=True)
class PdfLimits:
    timeout_seconds: float
    max_bytes: int
    max_html_bytes: int


def pdf_limits() -> PdfLimits:
    return PdfLimits(
        timeout_seconds=_float("WORKER_PDF_TIMEOUT_SECONDS", 60.0),
        max_bytes=_int("WORKER_PDF_MAX_BYTES", 20_000_000),
        max_html_bytes=_int("WORKER_PDF_MAX_HTML_BYTES", 5_000_000),
    )


def pdf_workers() -> int:
    """Processes rendering PDFs at once; all cores by default."""
    return _int("WORKER_PDF_WORKERS", os.cpu_count() or 1)


def pdf_idle_seconds() -> float:
    """How long the render server keeps a PDF worker that renders nothing."""
    return _float("WORKER_PDF_IDLE_SECONDS", 300.0)


@dataclasses.dataclass(frozen=True)
class Maintenance:
    lock_timeout_minutes: float
    completed_retention_days: float
    failed_retention_days: float
    purge_batch_size: int
    purge_documents: bool
    unconsumed_after_seconds: float


def maintenance() -> Maintenance:
    return Maintenance(
        lock_timeout_minutes=_float("WORKER_LOCK_TIMEOUT_MINUTES", 30.0),
        completed_retention_days=_float("WORKER_COMPLETED_RETENTION_DAYS", 7.0),
        failed_retention_days=_float("WORKER_FAILED_RETENTION_DAYS", 30.0),
        purge_batch_size=_int("WORKER_PURGE_BATCH_SIZE", 5000),
        purge_documents=os.environ.get("WORKER_PURGE_DOCUMENTS", "false").lower() in ("1", "true", "yes"),
        # Ten missed heartbeats of a job type's trigger (every 30 s): nothing consumes its jobs.
        unconsumed_after_seconds=_float("WORKER_UNCONSUMED_AFTER_SECONDS", 300.0),
    )


AUTH_MANAGERS = ("simple", "fab")


def auth_manager() -> str:
    """WORKER_AUTH_MANAGER: `simple` (Airflow's default, for development: users and roles in
    [core] simple_auth_manager_users) or `fab` (the FAB provider's: users, roles and per-DAG
    permissions in the metadata database, what docker-compose.yaml runs)."""
    from jobqueue.exceptions import ConfigurationError

    chosen = os.environ.get("WORKER_AUTH_MANAGER") or "simple"
    if chosen not in AUTH_MANAGERS:
        raise ConfigurationError(
            f"WORKER_AUTH_MANAGER must be one of {', '.join(AUTH_MANAGERS)}, got {chosen!r}"
        )
    return chosen


EXECUTORS = ("LocalExecutor", "CeleryExecutor")


def executor() -> str:
    """WORKER_EXECUTOR: LocalExecutor (default) or CeleryExecutor (then WORKER_CELERY_BROKER_URL)."""
    from jobqueue.exceptions import ConfigurationError

    chosen = os.environ.get("WORKER_EXECUTOR") or "LocalExecutor"
    if chosen not in EXECUTORS:
        raise ConfigurationError(f"WORKER_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {chosen!r}")
    if chosen == "CeleryExecutor" and not celery_broker_url():
        raise ConfigurationError(
            "WORKER_EXECUTOR=CeleryExecutor needs WORKER_CELERY_BROKER_URL (redis://...)"
        )
    return chosen


def celery_broker_url() -> str | None:
    return os.environ.get("WORKER_CELERY_BROKER_URL") or None
