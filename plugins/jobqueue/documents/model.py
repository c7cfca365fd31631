"""The document job's payload, and the e-mail that may send it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from jobqueue import paths, payloads
from jobqueue.emails.model import EmailBase, TemplateName, offered_templates

FONTS_DIR = paths.INCLUDE_DIR / "fonts"


class DocumentEmail(EmailBase):
    """The e-mail that sends a document (its attachment is the document)."""

    template: TemplateName = "document_ready"
    locale: Literal["en", "fr"] | None = None  # the document's


class DocumentPayload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    template: TemplateName = pydantic.Field(
        title="Template", json_schema_extra=offered_templates("pdf", default="invoice")
    )
    context: dict[str, Any] = pydantic.Field({}, title="Document data")
    filename: Annotated[str, pydantic.StringConstraints(pattern=r"^[\w\-. ]+\.pdf$", max_length=200)] = (
        pydantic.Field(title="File name")
    )
    locale: Literal["en", "fr"] = pydantic.Field("fr", title="Language")
    email: DocumentEmail | None = pydantic.Field(
        None, title="Mail it", description='{"to", "template", "context"}'
    )


parse_payload = payloads.parser(DocumentPayload)
