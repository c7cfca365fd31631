"""generate_pdf: jobs `generate_pdf` from the job table, as PDF documents. render_pdf >> enqueue_email.

`enqueue_email` enqueues the `send_email` job that mails the PDF (when the payload asks for an e-mail).
"""

from __future__ import annotations

from jobqueue import job_chain, step
from jobqueue.documents import model
from jobqueue.documents.steps import enqueue_email, render_pdf

generate_pdf = job_chain(
    "generate_pdf",
    step(render_pdf, batch=True),
    enqueue_email,
    payload=model.DocumentPayload,
    # enqueue_email waits on the job database, not the CPU: four lanes enqueue a batch's e-mails
    # four at a time (one lane took 10 ms a job while the e-mails' own runs started).
    concurrency=4,
    tags=["documents"],
    doc=__doc__,
)
