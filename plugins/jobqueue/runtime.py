"""The runtime behind job types: one step of one DAG run, for its batch of jobs.

A DAG run is one worker, `<dag_id>/<run_id>`. Its first step claims a batch (events are only
hints: the job table is the work list); each later step takes the jobs its run still holds, with
what the step before handed on for each. Every job runs in a transaction of its own, which the
runtime commits together with the job's outcome (outcomes.Recorder): what a handler enqueues
through `ctx` exists exactly when its job's step is recorded, and one job's exception, bad payload
or time-out touches no other job of the batch. A retried task skips the jobs its killed attempt
already recorded, so no job completes twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from jobqueue import runs
from jobqueue.context import JobContext
from jobqueue.exceptions import PermanentJobError
from jobqueue.jobs import Job
from jobqueue.manager import JobManager
from jobqueue.outcomes import Failed, Outcome, Recorder, Retry, TimeLimitExceeded, of_exception, of_return

if TYPE_CHECKING:
    from jobqueue.job_types import JobType, Step

log = logging.getLogger(__name__)
Connect = Callable[[], Any]  # opens a new DB-API connection to the job database


class Connections:
    """The job transactions' connections: at most one per job running at once, reused."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect
        self.idle: list[JobManager] = []
        self.opened: list[Any] = []
        self.lock = threading.Lock()

    def take(self) -> JobManager:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        conn = self.connect()
        conn.autocommit = False
        with self.lock:
            self.opened.append(conn)
        return JobManager(conn)

    def give_back(self, jobs: JobManager) -> None:
        with self.lock:
            self.idle.append(jobs)

    def close(self) -> None:
        with self.lock:
            for conn in self.opened:
                with contextlib.suppress(Exception):
                    conn.close()


@contextlib.contextmanager
def committed(jobs: JobManager) -> Iterator[JobManager]:
    try:
        yield jobs
        jobs.conn.commit()
    except BaseException:
        jobs.conn.rollback()
        raise


@dataclasses.dataclass
class BatchItem:
    """One job of a batch handler's batch: its input and context, and how to report its outcome at
    once (`done`, `fail`, `retry`). A job not reported when the handler returns takes what the
    handler returned for it (a list, one entry per job: a value, or an exception), else None."""

    job: Job
    value: Any
    ctx: JobContext
    _report: Callable[[BatchItem, Any], None]
    reported: bool = False

    def done(self, value: Any = None) -> None:
        """Completed (or, in a chain, handed on to the next step) with this value."""
        self._report(self, value)

    def fail(self, message: str) -> None:
        """Failed for good: retrying cannot fix it."""
        self._report(self, Failed(message))

    def retry(self, message: str) -> None:
        """Failed for a retry with backoff."""
        self._report(self, Retry(message))


class StepRun:
    def __init__(self, job_type: JobType, index: int, worker_id: str, connect: Connect) -> None:
        self.job_type = job_type
        self.step: Step = job_type.steps[index]
        self.index = index
        self.last = index == len(job_type.steps) - 1
        self.worker_id = worker_id
        self.connections = Connections(connect)
        options = job_type.options
        self.recorder = Recorder(worker_id, self.step.name, len(job_type.steps) > 1, options.max_attempts)

    def run(self, conf: dict[str, Any] | None) -> dict[str, int]:
        try:
            control = self.connections.take()
            control.conn.autocommit = True  # claims and adoption are durable at once
            items = self._inputs(control, conf)
            if self.step.batch:
                self._run_batch(items)
            else:
                asyncio.run(self._run_each(items))
            if self.last:
                self._release_leftovers(control)
        finally:
            self.connections.close()
        summary = {"jobs": len(items), **self.recorder.counts}
        log.info("step %s of %s: %s", self.step.name, self.worker_id, summary)
        return summary

    # -- what the step works on

    def _inputs(self, control: JobManager, conf: dict[str, Any] | None) -> list[tuple[Job, Any]]:
        already = {} if self.last else control.step_values(self.worker_id, self.step.name)
        if self.index == 0:
            return self._claimed(control, conf, already)
        handed = control.step_values(self.worker_id, self.job_type.steps[self.index - 1].name)
        return [
            (job, self.step.parse_input(handed[job.id]))
            for job in control.held_jobs(self.worker_id)
            if job.id in handed and job.id not in already
        ]

    def _claimed(
        self, control: JobManager, conf: dict[str, Any] | None, already: dict[int, Any]
    ) -> list[tuple[Job, Any]]:
        job_type = self.job_type
        runs.adopt_manual_job(
            control, job_type.identifier, self.worker_id, conf, job_type.parse, job_type.form_defaults
        )
        batch = runs.claim_batch(control, job_type.identifier, self.worker_id, job_type.batch_size())
        items = []
        for job in batch:
            if job.id in already:
                continue
            try:
                items.append((job, job_type.parse(job.payload)))
            except PermanentJobError as exc:
                self.recorder.record(control, job, of_exception(exc, "reading the payload"))
        return items

    def _release_leftovers(self, control: JobManager) -> None:
        """A job the run still holds after its last step got no outcome (it cannot, but a job left
        locked would wait for maintenance): it goes back to the queue."""
        for job in control.held_jobs(self.worker_id):
            error = f"the DAG run {self.worker_id} ended without an outcome for this job"
            self.recorder.record(control, job, Retry(error))

    def _context(self, job: Job, jobs: JobManager) -> JobContext:
        cap = self.job_type.options.max_attempts
        shown = job if cap is None else dataclasses.replace(job, max_attempts=min(job.max_attempts, cap))
        parsed: list[Any] = []

        def payload() -> Any:
            if not parsed:
                parsed.append(self.job_type.parse(job.payload))
            return parsed[0]

        return JobContext(shown, self.worker_id, jobs, payload)

    # -- one handler call per job

    async def _run_each(self, items: Sequence[tuple[Job, Any]]) -> None:
        slots = asyncio.Semaphore(self.job_type.options.concurrency)
        await asyncio.gather(*(self._run_one(job, value, slots) for job, value in items))

    async def _run_one(self, job: Job, value: Any, slots: asyncio.Semaphore) -> None:
        async with slots:
            jobs = self.connections.take()
            ctx = self._context(job, jobs)
            try:
                outcome = self._outcome(await self._call(value, ctx))
            except TimeLimitExceeded as exc:
                outcome = Retry(str(exc))
                if not self.step.is_async:  # its thread still runs, on its connection: leave both
                    jobs = self.connections.take()
            except Exception as exc:
                log.exception("job %d: step %s failed", job.id, self.step.name)
                outcome = self._outcome(exc)
            self._record(jobs, job, outcome)
            self.connections.give_back(jobs)

    def _outcome(self, answer: Any) -> Outcome:
        """What a handler's answer for one job means: a value, an exception, or an outcome."""
        if isinstance(answer, Outcome):
            return answer
        return of_return(answer, self.last, f"step {self.step.name}")

    def _record(self, jobs: JobManager, job: Job, outcome: Outcome) -> None:
        if isinstance(outcome, Retry | Failed):
            jobs.conn.rollback()  # what the handler did through ctx goes with its failure
        try:
            with committed(jobs):
                self.recorder.record(jobs, job, outcome)
        except Exception as exc:  # the outcome could not be written (a result that is not JSON...)
            if isinstance(outcome, Retry):
                raise
            log.exception("job %d: recording its outcome failed", job.id)
            with committed(jobs):
                self.recorder.record(jobs, job, of_exception(exc, "recording the outcome"))

    async def _call(self, value: Any, ctx: JobContext) -> Any:
        limit = self.job_type.options.time_limit
        if self.step.is_async:
            deadline = asyncio.timeout(limit)
            try:
                async with deadline:
                    return await self.step.function(value, ctx)
            except TimeoutError:
                if deadline.expired():  # else the handler's own time-out, for its own error
                    raise TimeLimitExceeded(limit or 0) from None
                raise
        future = _in_thread(lambda: self.step.function(value, ctx), f"job-{ctx.job.id}")
        done, _ = await asyncio.wait({future}, timeout=limit)
        if future not in done:
            ctx.abandon()
            raise TimeLimitExceeded(limit or 0)
        return future.result()

    # -- one handler call for the whole batch

    def _run_batch(self, items: Sequence[tuple[Job, Any]]) -> None:
        if not items:
            return
        jobs = self.connections.take()
        lock = threading.Lock()

        def report(item: BatchItem, answer: Any) -> None:
            with lock:
                if item.reported:
                    return
                item.reported = True
                self._record(jobs, item.job, self._outcome(answer))

        batch = [BatchItem(job, value, self._context(job, jobs), report) for job, value in items]
        try:
            returned = self.step.function(batch)
            if inspect.isawaitable(returned):
                returned = asyncio.run(_awaited(returned))
        except Exception as exc:
            log.exception("step %s: the batch handler failed", self.step.name)
            for item in batch:
                report(item, exc)
            return
        answers = _per_job(returned, len(batch))
        for item, answer in zip(batch, answers, strict=True):
            report(item, answer)


def _per_job(returned: Any, count: int) -> list[Any]:
    if returned is None:
        return [None] * count
    if isinstance(returned, list) and len(returned) == count:
        return returned
    what = f"a list of {len(returned)}" if isinstance(returned, list) else type(returned).__name__
    problem = RuntimeError(f"the batch handler returned {what}, not None or a list of {count} outcomes")
    return [problem] * count


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _in_thread(call: Callable[[], Any], name: str) -> asyncio.Future[Any]:
    """`call()` in a daemon thread of its own, as a future of the running loop. A daemon thread, so
    that a handler past its time limit, which no thread can be made to stop, does not keep the task
    process from exiting."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        try:
            result = call()
        except BaseException as exc:
            answer: tuple[Callable[[Any], None], Any] = (future.set_exception, exc)
        else:
            answer = (future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the job's time was up
            loop.call_soon_threadsafe(settle, *answer)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
