"""Documents: Jinja2 HTML + CSS from include/templates/pdf/<name>/, rendered to PDF by WeasyPrint.

Rendering is safe by default: the URL fetcher serves only the template's own folder, the project's
fonts and `data:` URLs. Everything else (other local files, any network address, redirects) is
refused, left out of the PDF, and reported in the job's result. A render has a time limit and the
PDF a size limit; either fails the job with a message saying which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import decimal
import json
import mimetypes
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import pydantic

from jobqueue import paths, payloads, settings
from jobqueue.emails.model import Address
from jobqueue.exceptions import PermanentJobError, RetryableJobError, WorkerError

TEMPLATES_DIR = paths.INCLUDE_DIR / "templates" / "pdf"
FONTS_DIR = paths.INCLUDE_DIR / "fonts"
# What the trigger form offers.
FORM_TEMPLATES: list[Any] = sorted(folder.name for folder in TEMPLATES_DIR.iterdir() if folder.is_dir())


class EmailSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    to: Address | list[Address]
    template: Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)] = (
        "document_ready"
    )
    context: dict[str, Any] = {}
    locale: Literal["en", "fr"] | None = None
    cc: list[Address] = []
    bcc: list[Address] = []
    reply_to: Address | None = None


class DocumentPayload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    template: Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)] = (
        pydantic.Field(title="Template", json_schema_extra={"enum": FORM_TEMPLATES, "default": "invoice"})
    )
    context: dict[str, Any] = pydantic.Field({}, title="Document data")
    filename: Annotated[str, pydantic.StringConstraints(pattern=r"^[\w\-. ]+\.pdf$", max_length=200)] = (
        pydantic.Field(title="File name")
    )
    locale: Literal["en", "fr"] = pydantic.Field("fr", title="Language")
    email: EmailSpec | None = pydantic.Field(
        None, title="Mail it", description='{"to", "template", "context"}'
    )


parse_payload = payloads.parser(DocumentPayload)


# --- Invoices: money in Decimal, computed here, not in the template. ---------------------------

Money = decimal.Decimal


class InvoiceLine(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    description: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=500)]
    # Bounded: an amount like 1e999999 would overflow the decimal context when multiplied.
    quantity: decimal.Decimal = pydantic.Field(gt=0, le=10**9)
    unit_price: decimal.Decimal = pydantic.Field(ge=0, le=10**12)
    vat_rate: decimal.Decimal = pydantic.Field(default=decimal.Decimal("20"), ge=0, le=100)


class Party(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str
    address: list[str] = []


class InvoiceContext(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    number: str
    date: datetime.date
    due_date: datetime.date | None = None
    seller: Party
    customer: Party
    lines: list[InvoiceLine] = pydantic.Field(min_length=1)
    notes: str | None = None


def _cents(value: decimal.Decimal) -> decimal.Decimal:
    return value.quantize(decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP)


def invoice_context(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        invoice = InvoiceContext.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise PermanentJobError(
            payloads.describe_validation_error(exc).replace("payload.", "payload.context.")
        ) from exc
    lines = []
    by_rate: dict[decimal.Decimal, decimal.Decimal] = {}
    for line in invoice.lines:
        net = _cents(line.quantity * line.unit_price)
        by_rate[line.vat_rate] = by_rate.get(line.vat_rate, decimal.Decimal(0)) + net
        lines.append({**line.model_dump(), "net": net})
    vat = {rate: _cents(base * rate / 100) for rate, base in sorted(by_rate.items())}
    total_net = sum(by_rate.values(), decimal.Decimal(0))
    total_vat = sum(vat.values(), decimal.Decimal(0))
    return {
        **invoice.model_dump(),
        "lines": lines,
        "vat": [{"rate": rate, "base": by_rate[rate], "amount": amount} for rate, amount in vat.items()],
        "total_net": total_net,
        "total_vat": total_vat,
        "total": total_net + total_vat,
    }


CONTEXT_BUILDERS = {"invoice": invoice_context}


def percent(value: decimal.Decimal) -> str:
    """French percentage: 5,5 %."""
    return f"{decimal.Decimal(value).normalize():f}".replace(".", ",") + " %"


def euros(value: decimal.Decimal) -> str:
    """French money format: 1 234,50 €."""
    text = f"{_cents(decimal.Decimal(value)):,.2f}".replace(",", " ").replace(".", ",")
    return f"{text} €"


# --- Safe fetching ---------------------------------------------------------------------------------


def _allowed_file(url: str, roots: list[Path]) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    path = Path(urllib.parse.unquote(parsed.path)).resolve()
    return path if any(path.is_relative_to(root.resolve()) for root in roots) and path.is_file() else None


def make_url_fetcher(roots: list[Path], refused: list[str]) -> Any:
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class SafeURLFetcher(URLFetcher):
        """Serves `data:` URLs and files under `roots`; refuses and records everything else."""

        def __init__(self) -> None:
            super().__init__(allowed_protocols=("data", "file"), allow_redirects=False)

        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("data:"):
                return super().fetch(url, headers)
            path = _allowed_file(url, roots)
            if path is None:
                refused.append(url[:200])
                raise ValueError(f"refused to fetch {url[:200]}")
            # WeasyPrint only takes a stylesheet served as text/css.
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return URLFetcherResponse(path.as_uri(), path.read_bytes(), headers={"Content-Type": kind})

    return SafeURLFetcher()


# --- Rendering -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RenderedPdf:
    content: bytes
    refused_urls: list[str]


def render_html(payload: DocumentPayload, directory: Path = TEMPLATES_DIR) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["euros"] = euros
    environment.filters["percent"] = percent
    build = CONTEXT_BUILDERS.get(payload.template, lambda raw: raw)
    context = build(payload.context)
    try:
        template = environment.get_template(f"{payload.template}/{payload.locale}.html")
        return template.render(context)
    except jinja2.TemplateNotFound as exc:
        raise PermanentJobError(f"no document template {exc.name!r}") from exc
    except jinja2.UndefinedError as exc:
        raise PermanentJobError(f"document template {payload.template!r}: {exc.message}") from exc


_FONT_CONFIG: Any = None


def warm_up() -> None:
    """Imports WeasyPrint and loads the fonts (about a second, more on a busy machine)."""
    global _FONT_CONFIG
    import weasyprint  # noqa: F401
    from weasyprint.text.fonts import FontConfiguration

    if _FONT_CONFIG is None:
        _FONT_CONFIG = FontConfiguration()


def render_pdf(
    html: str, template: str, limits: settings.PdfLimits, directory: Path = TEMPLATES_DIR
) -> RenderedPdf:
    """Runs in a worker process: one FontConfiguration per process, reused for every render."""
    import weasyprint

    if len(html.encode()) > limits.max_html_bytes:
        raise PermanentJobError(
            f"the document's HTML is over the size limit of {limits.max_html_bytes} bytes"
        )
    warm_up()
    refused: list[str] = []
    template_dir = directory / template
    fetcher = make_url_fetcher([directory, FONTS_DIR], refused)
    document = weasyprint.HTML(string=html, base_url=template_dir.as_uri() + "/", url_fetcher=fetcher)
    content = document.write_pdf(font_config=_FONT_CONFIG)
    assert content is not None
    if len(content) > limits.max_bytes:
        raise PermanentJobError(
            f"the PDF is over the size limit of {limits.max_bytes} bytes ({len(content)} bytes)"
        )
    return RenderedPdf(content, refused)


class PdfRenderer:
    """Renders many documents on all cores: worker processes of our own (`python -m
    jobqueue.documents.worker`, a fresh interpreter, not a fork of the task process with its threads and
    log sockets), one render at a time each, with the time limit; a worker past its limit is killed
    and replaced."""

    def __init__(self, workers: int | None = None, limits: settings.PdfLimits | None = None) -> None:
        self.workers = workers or settings.pdf_workers()
        self.limits = limits or settings.pdf_limits()

    def render_all(self, jobs: dict[int, tuple[str, str]]) -> dict[int, RenderedPdf | WorkerError]:
        """{job_id: (html, template)} -> {job_id: the PDF, or why it failed}."""
        results: dict[int, RenderedPdf | WorkerError] = {}
        pending = queue.SimpleQueue[tuple[int, str, str]]()
        for job_id, (html, template) in jobs.items():
            pending.put((job_id, html, template))
        with tempfile.TemporaryDirectory(prefix="jobqueue-pdf-") as scratch:
            threads = [
                threading.Thread(target=self._drain, args=(pending, results, Path(scratch)), daemon=True)
                for _ in range(min(self.workers, len(jobs)))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return results

    def _drain(self, pending: queue.SimpleQueue[tuple[int, str, str]], results: dict, scratch: Path) -> None:
        worker: _Worker | None = None
        try:
            while True:
                try:
                    job_id, html, template = pending.get_nowait()
                except queue.Empty:
                    return
                worker = worker or _Worker(self.limits)
                results[job_id] = worker.render(job_id, html, template, scratch)
                if not worker.alive:
                    worker = None
        finally:
            if worker:
                worker.close()


class _Worker:
    """One `python -m jobqueue.documents.worker` process: a JSON line in, a JSON line out per render.
    It says when it is ready: its start-up never counts against a document's time limit."""

    STARTUP_TIMEOUT = 120.0

    def __init__(self, limits: settings.PdfLimits) -> None:
        self.limits = limits
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(paths.PROJECT_ROOT / "plugins"), os.environ.get("PYTHONPATH")])
            ),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.documents.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        self.ready = False

    def _wait_ready(self) -> WorkerError | None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], self.STARTUP_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line or not json.loads(line).get("ready"):
            self._kill()
            return RetryableJobError(f"the PDF worker process did not start in {self.STARTUP_TIMEOUT:g} s")
        self.ready = True
        return None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def render(self, job_id: int, html: str, template: str, scratch: Path) -> RenderedPdf | WorkerError:
        if not self.ready and (error := self._wait_ready()) is not None:
            return error
        output = scratch / f"{job_id}.pdf"
        request = {
            "html": html,
            "template": template,
            "output": str(output),
            "limits": dataclasses.asdict(self.limits),
        }
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return RetryableJobError("the PDF worker process died")
        ready, _, _ = select.select([self.process.stdout], [], [], self.limits.timeout_seconds)
        if not ready:
            self._kill()
            return RenderTimeout(f"rendering took longer than the limit of {self.limits.timeout_seconds:g} s")
        line = self.process.stdout.readline()
        if not line:
            self._kill()
            return RetryableJobError(f"the PDF worker process died (exit code {self.process.returncode})")
        answer = json.loads(line)
        if "error" in answer:
            error_type = PermanentJobError if answer["permanent"] else RetryableJobError
            return error_type(answer["error"])
        return RenderedPdf(output.read_bytes(), answer["refused_urls"])

    def close(self) -> None:
        """Lets the worker finish (end of its input), or kills it after 10 s."""
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._kill()

    def _kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(BrokenPipeError):
                pipe.close()  # type: ignore[union-attr]


class RenderTimeout(PermanentJobError):
    """The render ran past its time limit."""
