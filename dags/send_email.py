"""send_email: jobs `send_email` from the job table, as e-mails. render >> send.

Runs when the trigger watching the job table says jobs wait; each run claims a batch. Triggered by
hand with a payload (the form, or `conf` over the REST API), the payload becomes a job of the run.
`send` runs in a process that outlives its task, so a task killed mid-batch sends nothing twice.
"""

from __future__ import annotations

from jobqueue import job_chain, step
from jobqueue.emails.steps import prepare_send, render, send

send_email = job_chain(
    "send_email",
    render,
    step(send, batch=True, detached=True, prepare=prepare_send),
    tags=["email"],
    doc=__doc__,
)
