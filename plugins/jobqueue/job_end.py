"""A component whose loop died with its metadata database records its end once the database is back.

Airflow's scheduler, triggerer and dag-processor run through `airflow.jobs.job.run_job`, whose last
step, `Job.complete_execution`, writes the job's state and end time. When the loop died because
PostgreSQL went away (a restart), that write failed too and the process exited with its job row
still "running", so the component started in its place waited for the dead one's heartbeat to age:
a triggerer takes over the dead one's triggers (the job watchers) after
`triggerer_health_check_threshold` (15 s), a scheduler resets the dead one's tasks after
`scheduler_health_check_threshold` (30 s), and until then those tasks' runs held their job type's
max_active_runs. The fault suite's PostgreSQL restart saw its first new job done 40 s after.

`install()` lets that last write wait for the database, trying each second for up to
END_RECORD_SECONDS, before the process exits; the next component then sees at once that this one
ended. A component stopped while its database is up writes at the first try, as before. If a
later Airflow's `complete_execution` differs, `install()` declines and says so.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

END_RECORD_SECONDS = 20.0


def install() -> bool:
    from airflow.jobs.job import Job

    source = inspect.getsource(Job.complete_execution)
    if "session.merge(self)" not in source or "session.commit()" not in source:
        log.warning("Airflow's Job.complete_execution is not the one jobqueue.job_end knows: unchanged")
        return False
    complete = Job.complete_execution

    def complete_execution(self: Any, **kwargs: Any) -> None:
        try:
            complete(self, **kwargs)
        except Exception as exc:
            _record_end_when_possible(self, kwargs.get("session"), exc)

    Job.complete_execution = complete_execution  # type: ignore[method-assign]
    return True


def _record_end_when_possible(job: Any, session: Any, first_error: Exception) -> None:
    """What complete_execution writes (its state, its end), tried again each second (in
    `session`, run_job's, or in sessions of its own)."""
    from airflow._shared.timezones import timezone
    from airflow.utils.session import create_session

    log.warning("cannot record the end of %s %s yet (%s): trying again", job.job_type, job.id, first_error)
    deadline = time.monotonic() + END_RECORD_SECONDS
    while True:
        time.sleep(1.0)
        try:
            job.end_date = timezone.utcnow()
            if session is None:
                with create_session() as own:
                    own.merge(job)
            else:
                with contextlib.suppress(Exception):
                    session.rollback()
                session.merge(job)
                session.commit()
        except Exception as exc:
            if time.monotonic() >= deadline:
                log.error("gave up recording the end of %s %s: %s", job.job_type, job.id, exc)
                raise
            continue
        log.info("recorded the end of %s %s (%s)", job.job_type, job.id, job.state)
        return
