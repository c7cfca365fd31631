"""What one step of a DAG run works on: the first step claims a batch (events are only hints: the
job table is the work list), adopting the job of a run triggered by hand or by a cron tick; each
later step takes the jobs its run still holds, with what the step before handed on for each.

Nothing here records an outcome: a payload that cannot be read comes back as a refusal, which
the caller hands to the completer with the others.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from jobqueue import metrics
from jobqueue.exceptions import PermanentJobError
from jobqueue.jobs import Job
from jobqueue.manager import JobManager
from jobqueue.outcomes import Failed, Outcome, of_exception

if TYPE_CHECKING:
    from jobqueue.declaration import BatchSize, JobType

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StepInputs:
    """The jobs a step runs, each with its input; those refused before any handler ran, with their
    outcome; and, for a run triggered by hand whose payload was refused, why the run fails."""

    items: list[tuple[Job, Any]] = dataclasses.field(default_factory=list)
    refused: list[tuple[Job, Outcome]] = dataclasses.field(default_factory=list)
    run_refused: str | None = None


def step_inputs(
    control: JobManager,
    job_type: JobType,
    index: int,
    worker: str,
    conf: dict[str, Any] | None,
    cron: dict[str, Any] | None,
) -> StepInputs:
    """The step `index`'s work in run `worker`, skipping jobs a killed try of it recorded already."""
    already = {} if job_type.is_last(index) else control.step_values(worker, job_type.steps[index].name)
    if index == 0:
        if cron is not None:
            adopt_cron_job(control, job_type, worker, cron)
        return _claimed(control, job_type, worker, conf, already)
    before, current = job_type.steps[index - 1].name, job_type.steps[index]
    handed = control.step_values(worker, before)
    inputs = StepInputs()
    for job in control.held_jobs(worker):
        if job.id not in handed or job.id in already:
            continue
        try:
            inputs.items.append((job, current.parse_input(handed[job.id])))
        except Exception as exc:  # the two steps disagree: the same value would again
            problem = f"what step {before} handed on does not fit step {current.name}: {exc}"
            inputs.refused.append((job, Failed(problem.splitlines()[0][:500])))
    return inputs


def _claimed(
    control: JobManager, job_type: JobType, worker: str, conf: dict[str, Any] | None, already: dict[int, Any]
) -> StepInputs:
    # Before the claim, which the limit bounds: a new or changed limit is in force from this run on.
    control.declare_rate_limit(job_type.identifier, job_type.options.rate_limit)
    inputs = StepInputs()
    adopt_manual_job(control, job_type, worker, conf, inputs)
    if inputs.run_refused:
        return inputs
    cap = job_type.options.max_attempts
    for job in claim_batch(control, job_type.identifier, worker, job_type.batch_size(), cap):
        if job.id in already:
            continue
        try:
            inputs.items.append((job, job_type.parse(job.payload)))
        except PermanentJobError as exc:
            inputs.refused.append((job, of_exception(exc, "reading the payload")))
    return inputs


def claim_batch(
    jobs: JobManager, identifier: str, worker: str, size: BatchSize, max_attempts: int | None = None
) -> list[Job]:
    """What the run holds already (a retried task), topped up to a batch with waiting jobs: the
    least batch, and when more wait than that, the run's share of them. With `max_attempts` (the
    job type's cap), a job allowed more attempts is given that many, in its row."""
    held = jobs.held_jobs(worker, identifier)
    room = size.least - len(held)
    claimed = jobs.claim_jobs([identifier], worker, max_jobs=room) if room > 0 else []
    if claimed and len(claimed) == room and size.most > size.least:
        waiting, others = jobs.waiting_and_runs(identifier, worker, most=size.most * size.runs)
        more = size.share(waiting + len(claimed), others) - len(claimed)
        if more > 0:
            claimed += jobs.claim_jobs([identifier], worker, max_jobs=more)
            room += more
    more_waiting = bool(claimed) and len(claimed) == room
    if not more_waiting and room > len(claimed) and size.pace_seconds > 0:
        paced, more_waiting = _paced_claims(jobs, identifier, worker, room - len(claimed), size.pace_seconds)
        claimed += paced
    batch = held + claimed
    if max_attempts is not None and any(job.max_attempts > max_attempts for job in batch):
        capped = jobs.cap_attempts(worker, max_attempts)
        batch = [dataclasses.replace(job, max_attempts=capped.get(job.id, job.max_attempts)) for job in batch]
    if more_waiting:
        jobs.notify_more_waiting(identifier)
    log.info(
        "worker %s holds %d job(s) (%d taken back, %d claimed now)%s",
        worker, len(batch), len(held), len(claimed), _id_ranges([job.id for job in batch]),
    )  # fmt: skip
    metrics.claimed(identifier, batch, claimed)
    return batch


# A run held back by a rate limit claims again about this often as the bucket refills. A run that
# ended with its first claim (a bucket's worth, one second of the rate) left the rest of the refill
# to the next run, which Airflow starts a second or more later, when the bucket has been full and
# lost tokens for a while: a 10/s limit delivered about 2/s.
PACE_STEP_SECONDS = 0.5


def _paced_claims(
    jobs: JobManager, identifier: str, worker: str, room: int, seconds: float
) -> tuple[list[Job], bool]:
    """Claims up to `room` jobs of `identifier` as its rate limit lets, for up to `seconds`: the
    jobs, and whether jobs the limit holds back still wait. At once if it has no limit."""
    claimed: list[Job] = []
    deadline = time.monotonic() + seconds
    while len(claimed) < room:
        limit = jobs.rate_limited_waiting(identifier)
        if limit is None:
            return claimed, False
        per_second, tokens = limit
        wanted = min(room - len(claimed), max(1.0, per_second * PACE_STEP_SECONDS))
        wait = max(0.0, (wanted - tokens) / per_second)
        if time.monotonic() + wait > deadline:
            return claimed, True
        time.sleep(wait)
        taken = jobs.claim_jobs([identifier], worker, max_jobs=room - len(claimed))
        if not taken:  # what waits is another run's or behind a busy queue: look again later
            time.sleep(min(PACE_STEP_SECONDS, max(0.0, deadline - time.monotonic())))
        claimed += taken
    return claimed, True


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
    jobs: JobManager, job_type: JobType, worker: str, conf: dict[str, Any] | None, inputs: StepInputs
) -> None:
    """A run triggered by hand (UI form or REST) with a payload as its conf: the payload becomes a
    job of this run, so it shows in worker.jobs with its outcome. A payload `parse` refuses leaves a
    failed job saying why, and fails the run at once (no retry can fix it): `inputs.run_refused`. A
    conf that is exactly the form's defaults (the UI's Trigger with nothing typed) is no payload:
    the run just takes waiting jobs. A REST conf holds only what the caller sent, so any conf but
    that one counts. The job has its job type's cap on attempts from the start, as a claimed one
    has from its claim."""
    payload = {name: value for name, value in (conf or {}).items() if value not in (None, "")}
    untouched = {name: value for name, value in job_type.form_defaults.items() if value is not None}
    if not payload or payload == untouched:
        return
    key = f"run:{worker}"
    if jobs.job_key_exists(key):
        return  # a retried task: the job exists already, and is held
    identifier, cap = job_type.identifier, job_type.options.max_attempts
    job = jobs.add_job_for_worker(identifier, payload, worker, job_key=key, max_attempts=cap)
    if job.locked_by != worker:
        log.info("manual run %s: %s is paused, its payload waits as job %d", worker, identifier, job.id)
        return
    try:
        job_type.parse(payload)
    except PermanentJobError as exc:
        inputs.refused.append((job, of_exception(exc, "reading the payload")))
        inputs.run_refused = f"job {job.id} failed: {exc}"
        return
    log.info("manual run %s: payload recorded as job %d", worker, job.id)


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
