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
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from jobqueue import metrics
from jobqueue.context import JobContext
from jobqueue.exceptions import JobTimeLimitExceeded, OutcomeNotRecorded, PermanentJobError
from jobqueue.jobs import Job
from jobqueue.manager import JobManager
from jobqueue.outcomes import (
    Completed,
    Failed,
    HandedOn,
    Outcome,
    Recorder,
    Retry,
    of_exception,
    of_return,
)

if TYPE_CHECKING:
    from jobqueue.job_types import BatchSize, JobType, Step

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
        return self._open(autocommit=False)

    def fresh(self) -> JobManager:
        """A new autocommit connection, whatever became of the others."""
        return self._open(autocommit=True)

    def _open(self, autocommit: bool) -> JobManager:
        conn = self.connect()
        conn.autocommit = autocommit
        with self.lock:
            self.opened.append(conn)
        return JobManager(conn)

    def replace(self, jobs: JobManager) -> JobManager:
        """A new connection for one that was lost; None of its work survives."""
        with contextlib.suppress(Exception):
            jobs.conn.close()
        try:
            return self.take()
        except Exception as exc:
            if not connection_lost(exc):
                raise
            return jobs  # still down: the caller tries again, with this closed one failing at once

    def give_back(self, jobs: JobManager) -> None:
        with self.lock:
            self.idle.append(jobs)

    def close(self) -> None:
        with self.lock:
            for conn in self.opened:
                with contextlib.suppress(Exception):
                    conn.close()


@dataclasses.dataclass
class BatchItem:
    """One job of a batch handler's batch: its input and context, and how to report its outcome at
    once (`done`, `fail`, `retry`). A job not reported when the handler returns takes what the
    handler returned for it (a list, one entry per job: a value, or an exception), else None.

    The jobs of a batch share one connection, whose transaction each report commits: what a job
    enqueues through its `ctx` belongs to the next job reported, so report a job right after."""

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


@dataclasses.dataclass(frozen=True)
class StepContext:
    """A batch handler's `ctx`: the run, a log, and what the step's `prepare` returned (resolved in
    the task process, before a detached step leaves it)."""

    worker_id: str
    log: logging.Logger
    prepared: Any = None


class StepRun:
    # A lost job database (a restart) is waited for this long when recording an outcome: failing the
    # task instead would make its retry do again what was done (send a message twice).
    RECONNECT_SECONDS = 120.0

    def __init__(
        self,
        job_type: JobType,
        index: int,
        worker_id: str,
        connect: Connect,
        prepared: Any = None,
        try_number: int | None = None,
    ) -> None:
        self.job_type = job_type
        self.prepared = prepared
        self.step: Step = job_type.steps[index]
        self.index = index
        self.last = index == len(job_type.steps) - 1
        self.worker_id = worker_id
        self.connections = Connections(connect)
        self.recorder = Recorder(worker_id, self.step.name, len(job_type.steps) > 1, try_number)
        self.counts: dict[str, int] = {}
        self.counts_lock = threading.Lock()
        self.writer = OutcomeWriter(self)

    def run(self, conf: dict[str, Any] | None, cron: dict[str, Any] | None = None) -> dict[str, int]:
        try:
            control = self.connections.take()
            control.conn.autocommit = True  # claims and adoption are durable at once
            if self.step.detached:
                # A retried task's step waits here for the one its killed attempt left running.
                control.lock_sends(self.worker_id)
            items = self._inputs(control, conf, cron)
            self.writer.start()
            if self.step.batch:
                self._run_batch(items)
            elif self.step.is_async:
                asyncio.run(self._run_each(items))
            else:
                self._run_in_lanes(items)
            self.writer.close()
            failed_in_run = 0
            if self.last:
                # On a new connection: the handler may have outlived a restart of the database.
                fresh = self.connections.fresh()
                self._release_leftovers(fresh)
                # In any step of the run: what the run's last task fails on (job_types).
                failed_in_run = fresh.run_job_counts(self.worker_id).get("failed", 0)
        finally:
            self.writer.finish()
            self.connections.close()
            metrics.outcomes(self.job_type.identifier, self.counts)
        summary = {"jobs": len(items), **self.counts}
        if failed_in_run:
            summary["failed_in_run"] = failed_in_run
        log.info("step %s of %s: %s", self.step.name, self.worker_id, summary)
        return summary

    # -- what the step works on

    def _inputs(
        self, control: JobManager, conf: dict[str, Any] | None, cron: dict[str, Any] | None
    ) -> list[tuple[Job, Any]]:
        already = {} if self.last else control.step_values(self.worker_id, self.step.name)
        if self.index == 0:
            if cron is not None:
                adopt_cron_job(control, self.job_type, self.worker_id, cron)
            return self._claimed(control, conf, already)
        before = self.job_type.steps[self.index - 1].name
        handed = control.step_values(self.worker_id, before)
        items = []
        for job in control.held_jobs(self.worker_id):
            if job.id not in handed or job.id in already:
                continue
            try:
                items.append((job, self.step.parse_input(handed[job.id])))
            except Exception as exc:  # the two steps disagree: the same value would again
                problem = f"what step {before} handed on does not fit step {self.step.name}: {exc}"
                self._count(self.recorder.record(control, job, Failed(problem.splitlines()[0][:500])))
        return items

    def _claimed(
        self, control: JobManager, conf: dict[str, Any] | None, already: dict[int, Any]
    ) -> list[tuple[Job, Any]]:
        job_type = self.job_type
        # Before the claim, which the limit bounds: a new or changed limit is in force from this run on.
        control.declare_rate_limit(job_type.identifier, job_type.options.rate_limit)
        adopt_manual_job(control, job_type, self.recorder, conf)
        cap = job_type.options.max_attempts
        batch = claim_batch(control, job_type.identifier, self.worker_id, job_type.batch_size(), cap)
        items = []
        for job in batch:
            if job.id in already:
                continue
            try:
                items.append((job, job_type.parse(job.payload)))
            except PermanentJobError as exc:
                self._count(self.recorder.record(control, job, of_exception(exc, "reading the payload")))
        return items

    def _release_leftovers(self, control: JobManager) -> None:
        """A job the run still holds after its last step got no outcome (it cannot, but a job left
        locked would wait for maintenance): it goes back to the queue."""
        for job in control.held_jobs(self.worker_id):
            error = f"the DAG run {self.worker_id} ended without an outcome for this job"
            self._count(self.recorder.record(control, job, Retry(error)))

    def _context(self, job: Job, jobs: JobManager) -> JobContext:
        parsed: list[Any] = []

        def payload() -> Any:
            if not parsed:
                parsed.append(self.job_type.parse(job.payload))
            return parsed[0]

        return JobContext(job, self.worker_id, jobs, payload)

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
            except OutcomeNotRecorded:
                raise
            except JobTimeLimitExceeded as exc:
                outcome = Retry(str(exc))
            except Exception as exc:
                log.exception("job %d: step %s failed", job.id, self.step.name)
                outcome = self._outcome(exc)
            jobs = self._record(jobs, job, outcome, ctx.touched)
            self.connections.give_back(jobs)

    def _outcome(self, answer: Any) -> Outcome:
        """What a handler's answer for one job means: a value, an exception, or an outcome."""
        if isinstance(answer, Outcome):
            return answer
        try:
            return of_return(answer, self.last, f"step {self.step.name}")
        except Exception as exc:  # a value the job table cannot keep as JSON
            return of_exception(exc, f"keeping what step {self.step.name} returned")

    def _record(self, jobs: JobManager, job: Job, outcome: Outcome, touched: bool) -> JobManager:
        """A job's outcome: in the job's own transaction when its handler did something through
        ctx (a success commits that work with it, a failure rolls it back), else handed to the
        writer, which records it with others. Returns the connection to go on with."""
        if not touched:
            self.writer.put(job, outcome)
            return jobs
        if isinstance(outcome, Retry | Failed):
            jobs.rollback()  # what the handler did through ctx goes with its failure
            self.writer.put(job, outcome)
            return jobs
        return self.write(jobs, [(job, outcome)], touched=True)

    def write(self, jobs: JobManager, outcomes: list[tuple[Job, Outcome]], touched: bool) -> JobManager:
        """Records outcomes in one transaction and commits; returns the connection to go on with.
        If the job database went away (a restart), waits for it on a new connection: what a handler
        did through ctx went with the old one, so a job that `touched` it is retried instead."""
        deadline, backoff = time.monotonic() + self.RECONNECT_SECONDS, 0.5
        while True:
            try:
                with jobs.transaction():
                    counts = self.recorder.record_many(jobs, outcomes)
                self._count(counts)
                return jobs
            except Exception as exc:
                if not connection_lost(exc) or time.monotonic() > deadline:
                    names = ", ".join(str(job.id) for job, _ in outcomes[:10])
                    raise OutcomeNotRecorded(f"job(s) {names}: outcome not recorded: {exc}") from exc
                log.warning("recording %d outcome(s): %s; retrying on a new connection", len(outcomes), exc)
                if touched:
                    lost = f"the job database went away before the outcome was recorded: {exc}"
                    outcomes = [
                        (job, Retry(lost) if isinstance(outcome, Completed | HandedOn) else outcome)
                        for job, outcome in outcomes
                    ]
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            jobs = self.connections.replace(jobs)

    def _count(self, counts: dict[str, int]) -> None:
        with self.counts_lock:
            for kind, how_many in counts.items():
                self.counts[kind] = self.counts.get(kind, 0) + how_many

    async def _call(self, value: Any, ctx: JobContext) -> Any:
        limit = self.job_type.options.time_limit
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await self.step.function(value, ctx)
        except TimeoutError:
            if deadline.expired():  # else the handler's own time-out, for its own error
                raise JobTimeLimitExceeded(limit or 0) from None
            raise

    # -- a sync handler per job, in lanes

    def _run_in_lanes(self, items: Sequence[tuple[Job, Any]]) -> None:
        """`concurrency` threads (lanes) take the jobs in turn, each on a connection of its own. A
        job past its time limit gets its Retry from here, and its lane is left to it (no thread can
        be stopped): a new lane goes on with the rest. One thread per lane, not per job: a thread
        start and an event loop's round trip cost more than a template's rendering."""
        work: queue.SimpleQueue[tuple[Job, Any]] = queue.SimpleQueue()
        for item in items:
            work.put(item)
        limit = self.job_type.options.time_limit
        changed = threading.Condition()
        lanes = [Lane(self, work, changed) for _ in range(min(self.job_type.options.concurrency, len(items)))]
        for lane in lanes:
            lane.start()
        with changed:
            while True:
                running = [lane for lane in lanes if not lane.over]
                errors = [lane.error for lane in lanes if lane.error is not None]
                if errors:  # an outcome could not be recorded: no lane takes another job
                    with contextlib.suppress(queue.Empty):
                        while True:
                            work.get_nowait()
                    raise errors[0]
                if not running:
                    return
                now = time.monotonic()
                for lane in running:
                    job = lane.overdue(now, limit)
                    if job is not None:
                        self.writer.put(job, Retry(str(JobTimeLimitExceeded(limit or 0))))
                        lanes.append(Lane(self, work, changed))
                        lanes[-1].start()
                changed.wait(timeout=None if limit is None else min(limit, 0.5))

    # -- one handler call for the whole batch

    def _run_batch(self, items: Sequence[tuple[Job, Any]]) -> None:
        if not items:
            return
        shared = [self.connections.take()]  # one transaction at a time: see BatchItem
        lock = threading.Lock()

        def report(item: BatchItem, answer: Any) -> None:
            with lock:
                if item.reported:
                    return
                item.reported = True
                jobs = self._record(shared[0], item.job, self._outcome(answer), item.ctx.touched)
                if jobs is not shared[0]:  # reconnected: the other jobs go on with the new one
                    shared[0] = jobs
                    for each in batch:
                        each.ctx.rebind(jobs)

        batch = [BatchItem(job, value, self._context(job, shared[0]), report) for job, value in items]
        ctx = StepContext(self.worker_id, log, self.prepared)
        try:
            returned = self.step.function(batch, ctx)
            if inspect.isawaitable(returned):
                returned = asyncio.run(_awaited(returned))
        except OutcomeNotRecorded:
            raise  # the task fails: its jobs stay held by the run, for its retry
        except Exception as exc:
            log.exception("step %s: the batch handler failed", self.step.name)
            for item in batch:
                report(item, exc)
            return
        answers = _per_job(returned, len(batch))
        for item, answer in zip(batch, answers, strict=True):
            report(item, answer)


class Lane:
    """A thread taking jobs of a step in turn (StepRun._run_in_lanes): calls the handler, records
    the outcome, takes the next job. A lane whose job outran its time limit is abandoned: its
    job's Retry is recorded by the step, and whatever the handler does later is not. A daemon
    thread, so that a handler past its time limit, which no thread can be made to stop, does not
    keep the task process from exiting."""

    def __init__(self, step: StepRun, work: queue.SimpleQueue[tuple[Job, Any]], changed: threading.Condition):
        self.step = step
        self.work = work
        self.changed = changed
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
        step = self.step
        jobs = step.connections.take()
        try:
            while True:
                try:
                    job, value = self.work.get_nowait()
                except queue.Empty:
                    break
                ctx = step._context(job, jobs)
                with self.lock:
                    self.current = (job, ctx, time.monotonic())
                try:
                    outcome = step._outcome(step.step.function(value, ctx))
                except Exception as exc:
                    log.exception("job %d: step %s failed", job.id, step.step.name)
                    outcome = step._outcome(exc)
                with self.lock:
                    if self.abandoned:  # its Retry is recorded; its connection stays with it, unused
                        return
                    self.current = None
                jobs = step._record(jobs, job, outcome, ctx.touched)
            step.connections.give_back(jobs)
        except BaseException as exc:  # OutcomeNotRecorded: the step stops
            self.error = exc
        finally:
            with self.changed:
                self.finished = True
                self.changed.notify_all()


class OutcomeWriter:
    """Records, from a thread of its own, the outcomes that need no transaction of their job's
    (its handler did nothing through ctx): as many as have come in, in one transaction. So neither
    handlers nor SMTP sessions wait for a commit, and a burst costs a few statements per group, not
    two per job. An outcome lags its job's work by at most the statement being written: the
    window in which a crash makes that job run again, as it would if the crash came just before
    the work ended. A lost database is waited for (StepRun.write); any other error stops the
    step: `put` raises it, so nothing more is done that could not be recorded."""

    def __init__(self, step: StepRun) -> None:
        self.step = step
        self.queue: queue.SimpleQueue[tuple[Job, Outcome] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="outcomes", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def put(self, job: Job, outcome: Outcome) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((job, outcome))

    def close(self) -> None:
        """Waits until every outcome put is recorded; raises what stopped the writer."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """On the way out after an error: still write what was done (a job whose work is done but
        unrecorded would be done again), then stop."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join(timeout=self.step.RECONNECT_SECONDS)

    def _run(self) -> None:
        jobs = self.step.connections.take()
        done = False
        while not done:
            item = self.queue.get()
            group = []
            while item is not None:
                group.append(item)
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            done = item is None
            if group and self.error is None:
                try:
                    jobs = self.step.write(jobs, group, touched=False)
                except BaseException as exc:
                    self.error = exc


def claim_batch(
    jobs: JobManager, identifier: str, worker: str, size: BatchSize, max_attempts: int | None = None
) -> list[Job]:
    """What the run holds already (a retried task), topped up to a batch with waiting jobs: the
    least batch, and when more wait than that, the run's share of them. With `max_attempts` (the
    job type's cap), a job allowed more attempts is given that many, in its row."""
    held = jobs.held_jobs(worker)
    room = size.least - len(held)
    claimed = jobs.claim_jobs([identifier], worker, max_jobs=room) if room > 0 else []
    if claimed and len(claimed) == room and size.most > size.least:
        waiting, others = jobs.waiting_and_runs(identifier, worker, most=size.most * size.runs)
        more = size.share(waiting + len(claimed), others) - len(claimed)
        if more > 0:
            claimed += jobs.claim_jobs([identifier], worker, max_jobs=more)
            room += more
    batch = held + claimed
    if max_attempts is not None and any(job.max_attempts > max_attempts for job in batch):
        capped = jobs.cap_attempts(worker, max_attempts)
        batch = [dataclasses.replace(job, max_attempts=capped.get(job.id, job.max_attempts)) for job in batch]
    if claimed and len(claimed) == room:
        jobs.notify_more_waiting(identifier)
    log.info(
        "worker %s holds %d job(s) (%d taken back, %d claimed now)%s",
        worker, len(batch), len(held), len(claimed), _id_ranges([job.id for job in batch]),
    )  # fmt: skip
    metrics.claimed(identifier, batch, claimed)
    return batch


def _id_ranges(ids: list[int]) -> str:
    """`: 1-500, 733` for the log: a batch's ids in a few characters, not thousands."""
    if not ids:
        return ""
    spans: list[list[int]] = []
    for job_id in sorted(ids):
        if spans and job_id == spans[-1][1] + 1:
            spans[-1][1] = job_id
        else:
            spans.append([job_id, job_id])
    shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans[:20])
    return ": " + shown + (f" and {len(spans) - 20} more ranges" if len(spans) > 20 else "")


def adopt_manual_job(
    jobs: JobManager, job_type: JobType, recorder: Recorder, conf: dict[str, Any] | None
) -> Job | None:
    """A run triggered by hand (UI form or REST) with a payload as its conf: the payload becomes a
    job of this run, so it shows in worker.jobs with its outcome. A payload `parse` refuses leaves a
    failed job saying why, and fails the run at once (no retry can fix it). A conf that is exactly
    the form's defaults (the UI's Trigger with nothing typed) is no payload: the run just takes
    waiting jobs. A REST conf holds only what the caller sent, so any conf but that one counts. The
    job has its job type's cap on attempts from the start, as a claimed one has from its claim."""
    payload = {name: value for name, value in (conf or {}).items() if value not in (None, "")}
    untouched = {name: value for name, value in job_type.form_defaults.items() if value is not None}
    if not payload or payload == untouched:
        return None
    worker = recorder.worker_id
    key = f"run:{worker}"
    if jobs.job_key_exists(key):
        return None  # a retried task: the job exists already, and is held
    identifier, cap = job_type.identifier, job_type.options.max_attempts
    job = jobs.add_job_for_worker(identifier, payload, worker, job_key=key, max_attempts=cap)
    if job.locked_by != worker:
        log.info("manual run %s: %s is paused, its payload waits as job %d", worker, identifier, job.id)
        return None
    try:
        job_type.parse(payload)
    except PermanentJobError as exc:
        recorder.record(jobs, job, of_exception(exc, "reading the payload"))
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"job {job.id} failed: {exc}") from exc
    log.info("manual run %s: payload recorded as job %d", worker, job.id)
    return job


def adopt_cron_job(jobs: JobManager, job_type: JobType, worker: str, tick: dict[str, Any]) -> Job | None:
    """A cron tick's job, enqueued already held by the run of that tick. Its key is the tick, so a
    rerun or a retried task enqueues it once (a tick whose job completed is not run again)."""
    identifier = job_type.identifier
    key = f"{identifier}:cron:{tick['ts']}"
    if jobs.job_key_exists(key):
        return None
    cap = job_type.options.max_attempts
    job = jobs.add_job_for_worker(identifier, {"_cron": tick}, worker, job_key=key, max_attempts=cap)
    if job.locked_by != worker:
        log.info("cron tick %s: %s is paused, job %d waits", tick["ts"], identifier, job.id)
        return None
    log.info("cron tick %s: job %d", tick["ts"], job.id)
    return job


def connection_lost(exc: BaseException) -> bool:
    import psycopg
    import psycopg2

    lost = (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        psycopg2.OperationalError,
        psycopg2.InterfaceError,
    )
    return isinstance(exc, lost)


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
