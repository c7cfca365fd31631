"""The three steps of the `generate_pdf` DAG: prepare >> render_pdf >> send.

`send` does not mail the PDF itself: it enqueues a `send_email` job with the PDF as attachment, in the
same transaction that completes the document job. So there is one e-mail code path (templates,
Message-ID, retries, the SMTP session), a document is rendered once even when the SMTP server is
down for an hour, and the e-mail shows in worker.jobs on its own.
"""

from __future__ import annotations

import logging
from typing import Any

from jobqueue import forms, payloads, pdf, runs, storage
from jobqueue.exceptions import PermanentJobError, WorkerError
from jobqueue.manager import JobManager

log = logging.getLogger(__name__)
IDENTIFIER = "generate_pdf"


def prepare(jobs: JobManager, worker: str, conf: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Claims a batch and keeps the jobs whose payload is valid; the others fail for good. A manual
    run's payload (its conf) becomes a job of the batch first."""
    runs.adopt_manual_job(
        jobs, IDENTIFIER, worker, conf, pdf.parse_payload, forms.defaults(forms.DOCUMENT_FIELDS)
    )
    return runs.claim_valid(jobs, IDENTIFIER, worker, pdf.parse_payload)


def render_pdf(jobs: JobManager, worker: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Renders the batch on all cores and stores each PDF; returns where each one is."""
    html: dict[int, tuple[str, str]] = {}
    documents = {}
    for item in batch:
        payload = pdf.DocumentPayload.model_validate(item["payload"])
        try:
            html[item["job_id"]] = (pdf.render_html(payload), payload.template)
            documents[item["job_id"]] = payload
        except PermanentJobError as exc:
            jobs.fail_job(item["job_id"], worker, str(exc), retry=False)
        except Exception as exc:  # a bug shown by one job's data fails that job, not the batch
            log.exception("job %d: rendering the HTML failed", item["job_id"])
            jobs.fail_job(
                item["job_id"], worker, payloads.unexpected(exc, "rendering the document"), retry=False
            )
    rendered = []
    for job_id, outcome in pdf.PdfRenderer().render_all(html).items():
        if isinstance(outcome, WorkerError):
            jobs.fail_job(job_id, worker, str(outcome), retry=not isinstance(outcome, PermanentJobError))
            continue
        document = storage.write_document(f"{job_id}/{documents[job_id].filename}", outcome.content)
        if outcome.refused_urls:
            log.warning("job %d: refused to fetch %s", job_id, outcome.refused_urls)
        rendered.append(
            {
                "job_id": job_id,
                "document": document,
                "refused_urls": outcome.refused_urls,
                "payload": documents[job_id].model_dump(mode="json"),
            }
        )
    return rendered


def email_payload(payload: pdf.DocumentPayload, document: str) -> dict[str, Any] | None:
    if payload.email is None:
        return None
    spec = payload.email.model_dump(mode="json", exclude_none=True)
    spec.setdefault("locale", payload.locale)
    spec["attachments"] = [{"url": document, "filename": payload.filename}]
    return spec


def send(jobs: JobManager, worker: str, rendered: list[dict[str, Any]]) -> dict[str, int]:
    """For each document still held: enqueue its e-mail and complete the job, in one transaction."""
    held = {job.id for job in jobs.held_jobs(worker)}
    jobs.conn.commit()
    done = 0
    for item in rendered:
        job_id = item["job_id"]
        if job_id not in held:
            continue
        payload = pdf.DocumentPayload.model_validate(item["payload"])
        result: dict[str, Any] = {"document": item["document"], "refused_urls": item["refused_urls"]}
        email = email_payload(payload, item["document"])
        if email is not None:
            result["email_job"] = jobs.add_job("send_email", email, job_key=f"document:{job_id}").id
        jobs.complete_jobs([job_id], result)
        jobs.conn.commit()
        done += 1
    log.info("completed %d document job(s): %s", done, [item["job_id"] for item in rendered])
    return {"completed": done}
