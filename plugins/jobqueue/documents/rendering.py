"""A document's HTML (Jinja2, autoescaped, strict) and its PDF (WeasyPrint, with the safe fetcher and
the size limits)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from jobqueue import paths, settings
from jobqueue.documents.fetcher import make_url_fetcher
from jobqueue.documents.invoice import CONTEXT_BUILDERS, euros, percent
from jobqueue.documents.model import FONTS_DIR, DocumentPayload
from jobqueue.exceptions import PermanentJobError
from jobqueue.templating import FolderLoader


@dataclasses.dataclass(frozen=True)
class RenderedPdf:
    content: bytes
    refused_urls: list[str]


@dataclasses.dataclass(frozen=True)
class DocumentHtml:
    """A document's HTML, and its template's own folder: where its CSS and images are, the base of
    its relative URLs (the project's folder for a team's template, ours for ours)."""

    html: str
    folder: Path


@functools.cache
def _environment(directories: tuple[Path, ...]) -> jinja2.Environment:
    """One per template search path and process: it keeps each template compiled (compiling the
    invoice took 12 ms, rendering it takes well under one), and still sees a template file change."""
    environment = jinja2.Environment(
        loader=FolderLoader(directories),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["euros"] = euros
    environment.filters["percent"] = percent
    # The shipped fonts ("Doc Sans", include/fonts), for a template of the project's own to link:
    # <link rel="stylesheet" href="{{ fonts_css }}">; the fetcher serves it and the fonts it names.
    environment.globals["fonts_css"] = (paths.INCLUDE_DIR / "templates" / "pdf" / "fonts.css").as_uri()
    return environment


def render_html(payload: DocumentPayload, directories: Sequence[Path] | None = None) -> DocumentHtml:
    """The document's HTML from the first of `directories` (by default the project's templates, then
    ours) that has `<template>/<locale>.html`."""
    environment = _environment(tuple(directories or settings.template_dirs("pdf")))
    build = CONTEXT_BUILDERS.get(payload.template, lambda raw: raw)
    context = build(payload.context)
    try:
        template = environment.get_template(f"{payload.template}/{payload.locale}.html")
        html = template.render(context)
    except jinja2.TemplateNotFound as exc:
        raise PermanentJobError(f"no document template {exc.name!r}") from exc
    except jinja2.UndefinedError as exc:
        raise PermanentJobError(f"document template {payload.template!r}: {exc.message}") from exc
    assert template.filename is not None, "a FileSystemLoader's template has a file"
    return DocumentHtml(html, Path(template.filename).parent)


_FONT_CONFIG: Any = None


def warm_up() -> None:
    """Imports WeasyPrint and loads the fonts (about a second, more on a busy machine)."""
    global _FONT_CONFIG
    import weasyprint  # noqa: F401
    from weasyprint.text.fonts import FontConfiguration

    if _FONT_CONFIG is None:
        _FONT_CONFIG = FontConfiguration()


def render_pdf(document: DocumentHtml, limits: settings.PdfLimits, roots: Sequence[Path]) -> RenderedPdf:
    """Runs in a worker process: one FontConfiguration per process, reused for every render. What
    the document may fetch: files under `roots` (the template folders) and the shipped fonts."""
    import weasyprint

    if len(document.html.encode()) > limits.max_html_bytes:
        raise PermanentJobError(
            f"the document's HTML is over the size limit of {limits.max_html_bytes} bytes"
        )
    warm_up()
    refused: list[str] = []
    fetcher = make_url_fetcher([*roots, FONTS_DIR], refused)
    base_url = document.folder.as_uri() + "/"
    content = weasyprint.HTML(string=document.html, base_url=base_url, url_fetcher=fetcher).write_pdf(
        font_config=_FONT_CONFIG
    )
    assert content is not None
    if len(content) > limits.max_bytes:
        raise PermanentJobError(
            f"the PDF is over the size limit of {limits.max_bytes} bytes ({len(content)} bytes)"
        )
    return RenderedPdf(content, refused)
