"""The steps of the `generate_pdf` job type: render_pdf >> enqueue_email.

`render_pdf` takes the batch at once, to render it on all cores, and stores each PDF and hands it on
as soon as it is ready, so a task killed half-way renders again only what was in flight. `enqueue_email`
does not mail the PDF itself: it enqueues a `send_email` job with the PDF as attachment, committed
with the document job's completion. So there is one e-mail code path (templates, Message-ID,
retries, the SMTP session), a document is rendered once even when the SMTP server is down for an
hour, and the e-mail shows in worker.jobs on its own.
"""

from __future__ import annotations

import logging
from typing import Any

from jobqueue import payloads, storage
from jobqueue.context import BatchItem, JobContext, StepContext
from jobqueue.documents import model, pool, rendering
from jobqueue.exceptions import PermanentJobError

log = logging.getLogger(__name__)


def render_pdf(items: list[BatchItem], ctx: StepContext) -> None:
    """Each document's HTML, then the PDFs on all cores; hands on where each is as it is stored."""
    html: dict[int, rendering.DocumentHtml] = {}
    by_id = {item.job.id: item for item in items}
    for item in items:
        try:
            html[item.job.id] = rendering.render_html(item.value)
        except PermanentJobError as exc:
            item.fail(str(exc))
        except Exception as exc:  # a bug shown by one job's data: retrying the same data cannot help
            log.exception("job %d: rendering the HTML failed", item.job.id)
            item.fail(payloads.unexpected(exc, "rendering the document"))
    for job_id, rendered in pool.PdfRenderer().render_each(html):
        item = by_id[job_id]
        if not isinstance(rendered, rendering.RenderedPdf):
            item.report(rendered)
            continue
        try:
            document = storage.write_document(f"{job_id}/{item.value.filename}", rendered.content)
        except OSError as exc:  # a full disk, an object store away: the others go on
            item.retry(f"storing the document failed: {type(exc).__name__}: {exc}")
            continue
        if rendered.refused_urls:
            item.ctx.log.warning("refused to fetch %s", rendered.refused_urls)
        item.done({"document": document, "refused_urls": rendered.refused_urls})


def enqueue_email(rendered: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The document's e-mail, when its payload asks for one; the job's result says where all is."""
    result = dict(rendered)
    email = email_payload(ctx.payload, rendered["document"])
    if email is not None:
        result["email_job"] = ctx.add_job("send_email", email, job_key=f"document:{ctx.job.id}").id
    return result


def email_payload(payload: model.DocumentPayload, document: str) -> dict[str, Any] | None:
    if payload.email is None:
        return None
    spec = payload.email.model_dump(mode="json", exclude_none=True)
    spec.setdefault("locale", payload.locale)
    spec["attachments"] = [{"url": document, "filename": payload.filename}]
    return spec
