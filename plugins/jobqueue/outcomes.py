"""The one place a job's outcome is recorded.

A step of a job ends in one of five ways: the job completed (its result kept), it handed a value to
the next step of its chain, it failed for a retry with backoff, it failed for good, or someone
cancelled it (failed for good too, but not a failure of its run). Whether a
failure is retried is decided here and nowhere else: a PermanentJobError, a refused payload or a
call the job database refused is final, anything else is retried while the job has attempts left
(its own max_attempts, which its claim capped at its job type's).
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobqueue import payloads
from jobqueue.exceptions import JobQueueError, JobTimeLimitExceeded, PermanentJobError
from jobqueue.jobs import Attempt, Job, JsonValue
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Completed:
    result: JsonValue = None


@dataclasses.dataclass(frozen=True)
class HandedOn:
    value: JsonValue


@dataclasses.dataclass(frozen=True)
class Retry:
    error: str
    traceback: str | None = None  # of the exception behind it, kept with the failed attempt


@dataclasses.dataclass(frozen=True)
class Failed:
    error: str
    traceback: str | None = None
    cancelled_by: str | None = None  # someone cancelled the job: not the run's failure (cancelling.py)


# What a failed attempt keeps of its traceback: its end, where the error is.
TRACEBACK_CHARS = 20_000


Outcome = Completed | HandedOn | Retry | Failed


def of_exception(exc: BaseException, doing: str) -> Outcome:
    """What an exception out of a handler means for its job. The job database refusing a call of
    the handler's (ctx.add_job with a payload JSON cannot hold, an empty identifier) is final too:
    the same call would be refused again."""
    if isinstance(exc, PermanentJobError):  # said on purpose: its message is the whole story
        return Failed(str(exc) or type(exc).__name__)
    if isinstance(exc, JobQueueError):
        return Failed(str(exc) or type(exc).__name__, _traceback(exc))
    if isinstance(exc, JobTimeLimitExceeded):
        return Retry(str(exc))
    return Retry(payloads.unexpected(exc, doing), _traceback(exc))


_PACKAGE = str(Path(__file__).parent)


def _traceback(exc: BaseException) -> str | None:
    """The exception's traceback from the handler's frame on: the runtime's frames that called it
    say nothing to the handler's author (all of it when the error is the runtime's own)."""
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        frames = frames.tb_next
    shown = traceback.format_exception(type(exc), exc, frames or exc.__traceback__)
    return "".join(shown)[-TRACEBACK_CHARS:] if exc.__traceback__ is not None else None


def of_return(value: Any, last_step: bool, doing: str) -> Outcome:
    if isinstance(value, BaseException):  # a batch handler's per-job answer
        return of_exception(value, doing)
    return Completed(payloads.to_json(value)) if last_step else HandedOn(payloads.to_json(value))


@dataclasses.dataclass
class Recorder:
    """Records outcomes for one step of one DAG run (a worker)."""

    worker_id: str
    step: str  # the step's name; "" when no task records (a DAG run's failure callback)
    chained: bool  # the job type has several steps, so values are kept between them
    try_number: int | None = None  # the task's try: with the run and task, it names the task's log
    task_id: str | None = None  # the task's id, when not the step's name (a job group's `run`)

    def record(self, jobs: JobManager, job: Job, outcome: Outcome) -> dict[str, int]:
        """Runs inside the caller's transaction (the job's own), which the caller commits."""
        return self.record_many(jobs, [(job, outcome)])

    def record_many(self, jobs: JobManager, outcomes: Sequence[tuple[Job, Outcome]]) -> dict[str, int]:
        """Several jobs' outcomes in the caller's transaction: the completions in one statement, the
        values handed on in another, each failure on its own (they are few). Returns how many of
        each kind, for the caller to count once its transaction is committed."""
        counts: dict[str, int] = {}
        completed: dict[int, JsonValue] = {}
        handed: dict[int, JsonValue] = {}
        finished: list[int] = []  # failed: what their steps handed on goes (completions drop theirs)
        for job, outcome in outcomes:
            match outcome:
                case Completed(result):
                    completed[job.id] = result
                case HandedOn(value):
                    handed[job.id] = value
                case Retry(error, trace) if self._attempts_left(job):
                    self._fail(jobs, job, "retry", error, trace)
                    finished.append(job.id)
                    counts["retry"] = counts.get("retry", 0) + 1
                    log.warning("job %d failed, to be retried: %s", job.id, error)
                case Failed(error, _, cancelled_by) if cancelled_by is not None:
                    self._fail(jobs, job, "cancelled", error, None)
                    finished.append(job.id)
                    counts["cancelled"] = counts.get("cancelled", 0) + 1
                    log.warning("job %d %s", job.id, error)
                case Retry(error, trace) | Failed(error, trace):
                    self._fail(jobs, job, "failed", error, trace)
                    finished.append(job.id)
                    counts["failed"] = counts.get("failed", 0) + 1
                    log.warning("job %d failed for good: %s", job.id, error)
        if completed:
            jobs.complete_each(completed, forget_steps=self.chained)
            counts["completed"] = len(completed)
        if handed:
            jobs.save_step_values(self.step, handed)
            counts["handed_on"] = len(handed)
        if finished and self.chained:
            jobs.forget_step_values(finished)
        return counts

    def _fail(self, jobs: JobManager, job: Job, how: str, error: str, trace: str | None) -> None:
        """The failed attempt, and what it keeps: its error, its traceback and its task."""
        if jobs.fail_job(job.id, self.worker_id, error, retry=how == "retry") is None:
            return  # released meanwhile (maintenance, a force unlock): the job is not this attempt's now
        attempt = Attempt(
            attempt=job.attempts, outcome=how, error=error, traceback=trace, worker_id=self.worker_id,
            task_id=self.task_id or self.step or None, try_number=self.try_number,
        )  # fmt: skip
        jobs.record_failed_attempt(job.id, attempt)

    @staticmethod
    def _attempts_left(job: Job) -> bool:
        """The job's row says it (its max_attempts capped by its job type's at its claim): so the log
        says "failed for good" of a last attempt, as the job table does."""
        return job.attempts < job.max_attempts
