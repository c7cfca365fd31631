"""A document's HTML (Jinja2, autoescaped, strict) and its PDF (WeasyPrint, with the safe fetcher and
the size limits)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jinja2

from jobqueue import settings
from jobqueue.documents.fetcher import make_url_fetcher
from jobqueue.documents.invoice import CONTEXT_BUILDERS, euros, percent
from jobqueue.documents.model import FONTS_DIR, TEMPLATES_DIR, DocumentPayload
from jobqueue.exceptions import PermanentJobError


@dataclasses.dataclass(frozen=True)
class RenderedPdf:
    content: bytes
    refused_urls: list[str]


@functools.cache
def _environment(directory: Path) -> jinja2.Environment:
    """One per template directory and process: it keeps each template compiled (compiling the
    invoice took 12 ms, rendering it takes well under one), and still sees a template file change."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["euros"] = euros
    environment.filters["percent"] = percent
    return environment


def render_html(payload: DocumentPayload, directory: Path = TEMPLATES_DIR) -> str:
    environment = _environment(directory)
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
