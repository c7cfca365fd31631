"""Running a step's handler over its jobs, and deciding what each answer means (River's executor:
this decides, completer.py writes).

Three ways to run, behind one interface (`Executor.run(items)`), chosen by the step:
- async handlers: one event loop, `concurrency` jobs at once;
- sync handlers: `concurrency` threads (lanes) taking the jobs in turn;
- batch handlers: one call for the whole batch, each job reported as it ends.
Each job runs on a connection of its own (from the completer), in a transaction its `ctx` work
belongs to; its outcome goes to the completer with whether the handler touched that transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from jobqueue.cancelling import Cancellations
from jobqueue.completer import Completer
from jobqueue.context import BatchItem, JobContext, StepContext
from jobqueue.exceptions import JobCancelled, JobTimeLimitExceeded, OutcomeNotRecorded
from jobqueue.jobs import Job
from jobqueue.manager import JobManager
from jobqueue.outcomes import Failed, Outcome, Retry, of_exception, of_return

if TYPE_CHECKING:
    from jobqueue.declaration import JobType

log = logging.getLogger(__name__)
Items = Sequence[tuple[Job, Any]]


class Handler:
    """One step's function, as the runtime calls it: a job's `ctx`, the call, what an answer means."""

    def __init__(
        self, job_type: JobType, index: int, worker_id: str, prepared: Any = None,
        cancellations: Cancellations | None = None,
    ) -> None:  # fmt: skip
        self.job_type = job_type
        self.cancellations = cancellations or Cancellations()
        self.step = job_type.steps[index]
        self.last = job_type.is_last(index)
        self.worker_id = worker_id
        self.prepared = prepared
        self.time_limit = job_type.options.time_limit
        self.concurrency = job_type.options.concurrency

    def context(self, job: Job, jobs: JobManager) -> JobContext:
        parsed: list[Any] = []

        def payload() -> Any:
            if not parsed:
                parsed.append(self.job_type.parse(job.payload))
            return parsed[0]

        ctx = JobContext(job, self.worker_id, jobs, payload)
        self.cancellations.listen(job.id, ctx.cancel)
        return ctx

    @staticmethod
    def unless_cancelled(ctx: JobContext, outcome: Outcome) -> Outcome:
        """A cancelled job fails for good, whatever its handler answered after the request."""
        return outcome if ctx.cancelled_by is None else cancelled(ctx.cancelled_by)

    def outcome(self, answer: Any) -> Outcome:
        """What a handler's answer for one job means: a value, an exception, or an outcome."""
        if isinstance(answer, Outcome):
            return answer
        try:
            return of_return(answer, self.last, f"step {self.step.name}")
        except Exception as exc:  # a value the job table cannot keep as JSON
            return of_exception(exc, f"keeping what step {self.step.name} returned")

    def call(self, value: Any, ctx: JobContext) -> Outcome:
        """A sync handler's outcome for one job (not called if the job was cancelled already)."""
        if ctx.cancelled_by is not None:  # before its handler began
            return cancelled(ctx.cancelled_by)
        try:
            outcome = self.outcome(self.step.function(value, ctx))
        except OutcomeNotRecorded:
            raise
        except Exception as exc:
            if ctx.cancelled_by is None:
                log.exception("job %d: step %s failed", ctx.job.id, self.step.name)
            outcome = self.outcome(exc)
        return self.unless_cancelled(ctx, outcome)

    async def call_async(self, value: Any, ctx: JobContext) -> Outcome:
        """An async handler's outcome for one job, within the time limit; its task is cancelled
        when the job is (CancelledError inside the handler)."""
        if ctx.cancelled_by is not None:  # before its handler began
            return cancelled(ctx.cancelled_by)
        task, loop = asyncio.current_task(), asyncio.get_running_loop()
        assert task is not None
        ctx.when_cancelled(lambda: _cancel_from_another_thread(loop, task))
        deadline = asyncio.timeout(self.time_limit)
        try:
            async with deadline:
                outcome = self.outcome(await self.step.function(value, ctx))
        except OutcomeNotRecorded:
            raise
        except asyncio.CancelledError:
            if ctx.cancelled_by is None:
                raise  # not ours: the step itself is being stopped
            task.uncancel()
            return cancelled(ctx.cancelled_by)
        except TimeoutError as exc:
            if deadline.expired():  # else the handler's own time-out, for its own error
                outcome = self.outcome(JobTimeLimitExceeded(self.time_limit or 0))
            else:
                outcome = self.outcome(exc)
        except Exception as exc:
            if ctx.cancelled_by is None:
                log.exception("job %d: step %s failed", ctx.job.id, self.step.name)
            outcome = self.outcome(exc)
        return self.unless_cancelled(ctx, outcome)


def _cancel_from_another_thread(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: the job ended before the request
        loop.call_soon_threadsafe(task.cancel)


def cancelled(who: str) -> Failed:
    """The outcome of a job someone cancelled: failed for good, not a failure of its run."""
    return Failed(f"cancelled by {who}", cancelled_by=who)


class Executor(Protocol):
    def run(self, items: Items) -> None:
        """Calls the handler for each job and gives each outcome to the completer."""


class Unstarted:
    """The jobs of a step that no handler has started yet (waiting for a lane or a slot of the
    run's concurrency). Someone cancelling one fails it at once, and no handler starts it; else a
    lane or slot takes it (`take`) when its turn comes. Once a handler starts a job, its `ctx`
    takes the request (Handler.context)."""

    def __init__(self, items: Items, handler: Handler, completer: Completer) -> None:
        self._lock = threading.Lock()
        self._jobs = {job.id for job, _ in items}
        self.completer = completer
        for job, _ in items:
            handler.cancellations.listen(job.id, functools.partial(self._cancelled, job))

    def take(self, job: Job) -> bool:
        """Whether the caller may start the job (it was not cancelled before its turn)."""
        with self._lock:
            if job.id not in self._jobs:
                return False
            self._jobs.discard(job.id)
            return True

    def _cancelled(self, job: Job, who: str) -> None:
        if self.take(job):
            self.completer.record_later(job, cancelled(who))


def executor_for(handler: Handler, completer: Completer) -> Executor:
    if handler.step.batch:
        return BatchExecutor(handler, completer)
    if handler.step.is_async:
        return AsyncExecutor(handler, completer)
    return LaneExecutor(handler, completer)


class AsyncExecutor:
    def __init__(self, handler: Handler, completer: Completer) -> None:
        self.handler = handler
        self.completer = completer

    def run(self, items: Items) -> None:
        asyncio.run(self._run_each(items))

    async def _run_each(self, items: Items) -> None:
        slots = asyncio.Semaphore(self.handler.concurrency)
        unstarted = Unstarted(items, self.handler, self.completer)
        await asyncio.gather(*(self._run_one(job, value, slots, unstarted) for job, value in items))

    async def _run_one(self, job: Job, value: Any, slots: asyncio.Semaphore, unstarted: Unstarted) -> None:
        async with slots:
            if not unstarted.take(job):
                return  # cancelled before its turn: its outcome is recorded
            jobs = self.completer.take()
            ctx = self.handler.context(job, jobs)
            outcome = await self.handler.call_async(value, ctx)
            jobs = self.completer.record(jobs, job, outcome, ctx.touched)
            self.completer.give_back(jobs)


class LaneExecutor:
    """`concurrency` threads (lanes) take the jobs in turn, each on a connection of its own. A job
    past its time limit gets its Retry from here, and its lane is left to it (no thread can be
    stopped): a new lane goes on with the rest. One thread per lane, not per job: a thread start
    and an event loop's round trip cost more than a template's rendering."""

    def __init__(self, handler: Handler, completer: Completer) -> None:
        self.handler = handler
        self.completer = completer

    def run(self, items: Items) -> None:
        work: queue.SimpleQueue[tuple[Job, Any]] = queue.SimpleQueue()
        for item in items:
            work.put(item)
        limit = self.handler.time_limit
        changed = threading.Condition()

        unstarted = Unstarted(items, self.handler, self.completer)

        def lane() -> Lane:
            started = Lane(self.handler, self.completer, work, changed, unstarted)
            started.start()
            return started

        lanes = [lane() for _ in range(min(self.handler.concurrency, len(items)))]
        with changed:
            while True:
                running = [each for each in lanes if not each.over]
                errors = [each.error for each in lanes if each.error is not None]
                if errors:  # an outcome could not be recorded: no lane takes another job
                    with contextlib.suppress(queue.Empty):
                        while True:
                            work.get_nowait()
                    raise errors[0]
                if not running:
                    return
                now = time.monotonic()
                for each in running:
                    job = each.overdue(now, limit)
                    if job is not None:
                        self.completer.record_later(job, Retry(str(JobTimeLimitExceeded(limit or 0))))
                        lanes.append(lane())
                changed.wait(timeout=None if limit is None else min(limit, 0.5))


class Lane:
    """A thread taking jobs in turn (LaneExecutor): calls the handler, gives the outcome to the
    completer, takes the next job. A lane whose job outran its time limit is abandoned: its job's
    Retry is recorded by the executor, and whatever the handler does later is not. A daemon thread,
    so that a handler past its time limit, which no thread can be made to stop, does not keep the
    task process from exiting."""

    def __init__(
        self,
        handler: Handler,
        completer: Completer,
        work: queue.SimpleQueue[tuple[Job, Any]],
        changed: threading.Condition,
        unstarted: Unstarted,
    ) -> None:
        self.handler = handler
        self.completer = completer
        self.work = work
        self.changed = changed
        self.unstarted = unstarted
        self.lock = threading.Lock()
        self.current: tuple[Job, JobContext, float] | None = None
        self.abandoned = False
        self.finished = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="lane", daemon=True)

    @property
    def over(self) -> bool:
        return self.finished or self.abandoned

    def start(self) -> None:
        self.thread.start()

    def overdue(self, now: float, limit: float | None) -> Job | None:
        """The job this lane runs if it is past the time limit; the lane is then abandoned."""
        with self.lock:
            if limit is None or self.current is None or now - self.current[2] < limit:
                return None
            job, ctx, _ = self.current
            self.abandoned = True
        ctx.abandon()
        return job

    def _run(self) -> None:
        jobs = self.completer.take()
        try:
            while True:
                try:
                    job, value = self.work.get_nowait()
                except queue.Empty:
                    break
                if not self.unstarted.take(job):
                    continue  # cancelled before its turn: its outcome is recorded
                ctx = self.handler.context(job, jobs)
                with self.lock:
                    self.current = (job, ctx, time.monotonic())
                outcome = self.handler.call(value, ctx)
                with self.lock:
                    if self.abandoned:  # its Retry is recorded; its connection stays with it, unused
                        return
                    self.current = None
                jobs = self.completer.record(jobs, job, outcome, ctx.touched)
            self.completer.give_back(jobs)
        except BaseException as exc:  # OutcomeNotRecorded: the step stops
            self.error = exc
        finally:
            with self.changed:
                self.finished = True
                self.changed.notify_all()


class BatchExecutor:
    """One call of the handler with the whole batch (a list of BatchItem). The jobs share one
    connection, one transaction at a time: see BatchItem."""

    def __init__(self, handler: Handler, completer: Completer) -> None:
        self.handler = handler
        self.completer = completer

    def run(self, items: Items) -> None:
        if not items:
            return
        shared = [self.completer.take()]
        lock = threading.Lock()

        def report(item: BatchItem, answer: Any) -> None:
            with lock:
                if item.reported:
                    return
                item.reported = True
                outcome = self.handler.unless_cancelled(item.ctx, self.handler.outcome(answer))
                jobs = self.completer.record(shared[0], item.job, outcome, item.ctx.touched)
                if jobs is not shared[0]:  # reconnected: the other jobs go on with the new one
                    shared[0] = jobs
                    for each in batch:
                        each.ctx.rebind(jobs)

        batch = [BatchItem(job, value, self.handler.context(job, shared[0]), report) for job, value in items]
        ctx = StepContext(self.handler.worker_id, log, self.handler.prepared)
        try:
            returned = self.handler.step.function(batch, ctx)
            if inspect.isawaitable(returned):
                returned = asyncio.run(_awaited(returned))
        except OutcomeNotRecorded:
            raise  # the task fails: its jobs stay held by the run, for its retry
        except JobCancelled as exc:  # raise_if_cancelled of one job: the others did nothing wrong
            stopped = [item.job.id for item in batch if item.ctx.cancelled_by is not None]
            retry = Retry(f"the batch handler stopped when job {', '.join(map(str, stopped))} was cancelled")
            for item in batch:
                report(item, exc if item.ctx.cancelled_by is not None else retry)
            return
        except Exception as exc:
            log.exception("step %s: the batch handler failed", self.handler.step.name)
            for item in batch:
                report(item, exc)
            return
        for item, answer in zip(batch, _per_job(returned, len(batch)), strict=True):
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
