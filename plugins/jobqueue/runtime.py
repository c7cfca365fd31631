"""The runtime behind job types: one step of one DAG run, for its batch of jobs.

A DAG run is one worker, `<dag_id>/<run_id>`. A step is three parts, each in a module of its own,
none reaching into another's state:

    claiming.py   what the step works on (its first step claims a batch; later ones take what the
                  run holds, with what the step before handed on)
    handlers.py   calls the handler per job (async, lanes) or per batch, and decides each outcome
    completer.py  writes the outcomes (outcomes.Recorder), owning the connections and reconnects

Every job runs in a transaction of its own, which the completer commits together with the job's
outcome: what a handler enqueues through `ctx` exists exactly when its job's step is recorded, and
one job's exception, bad payload or time-out touches no other job of the batch. A retried task
skips the jobs its killed attempt already recorded, so no job completes twice.
"""

from __future__ import annotations

import logging
from typing import Any

from jobqueue import metrics
from jobqueue.cancelling import Cancellations, CancelWatch
from jobqueue.claiming import step_inputs
from jobqueue.completer import Completer, Connect, connection_lost
from jobqueue.declaration import JobType
from jobqueue.exceptions import RunPayloadRefused
from jobqueue.handlers import Handler, executor_for
from jobqueue.manager import JobManager
from jobqueue.outcomes import Recorder, Retry

log = logging.getLogger(__name__)


class StepRun:
    def __init__(
        self,
        job_type: JobType,
        index: int,
        worker_id: str,
        connect: Connect,
        prepared: Any = None,
        try_number: int | None = None,
        task_id: str | None = None,
    ) -> None:
        self.job_type = job_type
        self.index = index
        self.step = job_type.steps[index]
        self.last = job_type.is_last(index)
        self.worker_id = worker_id
        recorder = Recorder(worker_id, self.step.name, len(job_type.steps) > 1, try_number, task_id)
        self.completer = Completer(connect, recorder)
        cancellations = Cancellations()
        self.handler = Handler(job_type, index, worker_id, prepared, cancellations)
        self.cancel_watch = CancelWatch(worker_id, self.completer.fresh, cancellations)

    def run(self, conf: dict[str, Any] | None, cron: dict[str, Any] | None = None) -> dict[str, int]:
        """The step's jobs, each to its outcome; a summary of how many ended how."""
        completer = self.completer
        try:
            control = completer.fresh()  # claims and adoption are durable at once
            if self.step.detached:
                # A retried task's step waits here for the one its killed attempt left running.
                control.lock_sends(self.worker_id)
            inputs = step_inputs(control, self.job_type, self.index, self.worker_id, conf, cron)
            for job, outcome in inputs.refused:
                completer.record_now(control, job, outcome)
            if inputs.run_refused:
                raise RunPayloadRefused(inputs.run_refused)
            if self.index > 0:  # a job cancelled between two steps of its chain runs no more
                self.cancel_watch.read_now(control)
            completer.start()
            self.cancel_watch.start()
            try:
                executor_for(self.handler, completer).run(inputs.items)
            finally:
                self.cancel_watch.stop()
            completer.close()
            failed_in_run = self._end_of_run_on(control) if self.last else 0
        finally:
            completer.finish()
            metrics.outcomes(self.job_type.identifier, completer.counts)
        summary = {"jobs": len(inputs.items), **completer.counts}
        if failed_in_run:
            summary["failed_in_run"] = failed_in_run
        log.info("step %s of %s: %s", self.step.name, self.worker_id, summary)
        return summary

    def _end_of_run_on(self, control: JobManager) -> int:
        """_end_of_run on the step's first connection, or on a new one if the database restarted
        while the handlers ran (what it does is a read, then writes that a second try repeats
        harmlessly: it finds what is still held)."""
        try:
            return self._end_of_run(control)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            log.warning("the end of run %s: %s; again on a new connection", self.worker_id, exc)
        return self._end_of_run(self.completer.fresh())

    def _end_of_run(self, control: JobManager) -> int:
        """Releases what the run still holds, and counts its jobs failed for good in any step (what
        the run's last task fails on: airflow_dag.py)."""
        # Only this job type's: a group's run holds its other members' jobs for their turn.
        for job in control.held_jobs(self.worker_id, self.job_type.identifier):
            # It cannot happen, but a job left locked would wait for maintenance: back to the queue.
            error = f"the DAG run {self.worker_id} ended without an outcome for this job"
            self.completer.record_now(control, job, Retry(error))
        return control.run_job_counts(self.worker_id).get("failed", 0)
