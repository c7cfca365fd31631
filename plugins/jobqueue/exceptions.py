"""The project's exceptions: one root, one subclass per decision a caller makes."""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error this package raises."""


class PermanentJobError(WorkerError):
    """Raised by a job's handler when retrying cannot fix it (a bad payload, a template error): the
    job fails for good, with this message as its last_error."""


class RetryableJobError(WorkerError):
    """It may work later (a server is down): the job is failed for a retry with backoff. Any other
    exception a handler raises means the same; this one says so on purpose."""


class JobCancelled(PermanentJobError):
    """Someone cancelled the running job (worker.cancel_jobs, the page, the API): `ctx.raise_if_cancelled()`
    raises it; the job fails for good, "cancelled by <who>"."""


class JobTimeLimitExceeded(WorkerError):
    """A job's handler ran past its job type's time limit: a failed attempt, retried."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the job took longer than its time limit of {seconds:g} s")


class JobAbandoned(WorkerError):
    """The job's time limit passed: what its handler still does through ctx is refused."""


class OutcomeNotRecorded(WorkerError):
    """A job's outcome could not be written (not a lost connection, which is waited for): the step
    stops and its task fails, loudly, rather than go on doing work it cannot record."""


class RunPayloadRefused(PermanentJobError):
    """A DAG run triggered by hand carries a payload its job type refuses: its job is failed saying
    why, and the run fails at once (no retry can fix it)."""


class StorageError(WorkerError):
    """A document's URL is outside the document storage, or names nothing there."""


class DetachedError(WorkerError):
    """The detached process failed, or died without a result."""


class AccessRefused(WorkerError):
    """Airflow's auth manager says the user may not do this (jobqueue/access.py); a 403 naming what."""


class JobNotFound(WorkerError):
    """No job has that id (any more: it completed and was purged, or was removed)."""


class JobQueueError(WorkerError):
    """The database refused a call; `sqlstate` is one of the project's codes (README, "Errors")."""

    sqlstate: str | None = None


class InvalidJobKeyMode(JobQueueError):
    sqlstate = "WK001"


class InvalidIdentifier(JobQueueError):
    sqlstate = "WK002"


class InvalidQueueName(JobQueueError):
    sqlstate = "WK003"


class InvalidAttempts(JobQueueError):
    sqlstate = "WK004"


class InvalidPayload(JobQueueError):
    sqlstate = "WK005"


class InvalidJobSpec(JobQueueError):
    sqlstate = "WK006"


class InvalidJobKey(JobQueueError):
    sqlstate = "WK007"


class InvalidClaim(JobQueueError):
    sqlstate = "WK008"


class InvalidRateLimit(JobQueueError):
    sqlstate = "WK009"


BY_SQLSTATE: dict[str, type[JobQueueError]] = {
    cls.sqlstate: cls for cls in JobQueueError.__subclasses__() if cls.sqlstate
}


class MigrationError(WorkerError):
    """A migration file is missing, malformed or failed to apply."""


class ConfigurationError(WorkerError):
    """A setting (environment variable, connection) is missing or wrong."""


class InvalidJobType(WorkerError):
    """A job type is declared wrongly (an option out of range, a step that is no function)."""


class InvalidCrontab(WorkerError):
    """A line of the crontab file does not parse; the message names the line."""
