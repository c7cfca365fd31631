"""An e-mail's subject and bodies from its templates: <name>/<locale>/{subject.txt,body.txt,body.html}
in the project's templates/email (WORKER_PROJECT), else in include/templates/email; Jinja2 with
autoescaping for HTML and strict undefined variables."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import jinja2

from jobqueue import settings
from jobqueue.emails.model import NO_NEWLINES, EmailPayload
from jobqueue.exceptions import PermanentJobError
from jobqueue.templating import FolderLoader


@dataclasses.dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class EmailRenderer:
    """Templates <name>/<locale>/{subject.txt,body.txt,body.html} in the first of `directories`
    that has them (by default the project's, then ours)."""

    def __init__(self, directories: Sequence[Path] | None = None) -> None:
        self.environment = jinja2.Environment(
            loader=FolderLoader(directories or settings.template_dirs("email")),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            # A task process lives for one batch: no stat() of three files per e-mail to see
            # whether a template changed meanwhile.
            auto_reload=False,
        )

    def render(self, payload: EmailPayload) -> RenderedEmail:
        base = f"{payload.template}/{payload.locale}"
        try:
            subject = self.environment.get_template(f"{base}/subject.txt").render(payload.context).strip()
            text = self.environment.get_template(f"{base}/body.txt").render(payload.context)
            html = self.environment.get_template(f"{base}/body.html").render(payload.context)
        except jinja2.TemplateNotFound as exc:
            raise PermanentJobError(
                f"no template {exc.name!r} (template {payload.template!r}, locale {payload.locale!r})"
            ) from exc
        except jinja2.UndefinedError as exc:
            raise PermanentJobError(
                f"template {payload.template!r} ({payload.locale}): {exc.message}"
            ) from exc
        except jinja2.TemplateError as exc:
            raise PermanentJobError(
                f"template {payload.template!r} ({payload.locale}) failed: {exc}"
            ) from exc
        if not NO_NEWLINES.match(subject):
            raise PermanentJobError("the subject contains a line break (header injection refused)")
        return RenderedEmail(subject=subject, text=text, html=html)


@functools.cache
def renderer() -> EmailRenderer:
    """One per process: its Jinja environment caches the compiled templates."""
    return EmailRenderer()
