"""The e-mail job's payload: defined once, validated once, and the trigger form made from it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pydantic

from jobqueue import payloads, settings
from jobqueue.project import template_names


def offered_templates(kind: str, default: str) -> Callable[[dict[str, Any]], None]:
    """What the trigger form offers for a template field: the templates found when the DAG file is
    parsed (the project's and ours) as proposals, not a closed list, so a template added since is
    taken from the form and the REST API at once, and one that does not exist fails its job naming
    it. The dag-processor parses the file again when a template folder comes or goes (reparse.py)."""

    def extra(schema: dict[str, Any]) -> None:
        schema["examples"] = template_names(settings.template_dirs(kind))
        schema["default"] = default

    return extra


# A header value holds no line break, as Python's email package counts them (str.splitlines: CR, LF,
# and also VT, FF, FS, GS, RS, NEL, U+2028, U+2029) and no other control character but tab.
NO_NEWLINES = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]*$")
SafeText = Annotated[str, pydantic.StringConstraints(pattern=NO_NEWLINES, min_length=1, max_length=998)]


# The plain addresses most jobs carry (dotted atoms of letters, digits, _+-, at a domain of LDH
# labels under a letters-only TLD, no IDNA "--"), which email_validator accepts with nothing to
# change but the domain's case: answered without it, ten times faster. Anything else, and the
# special-use names it refuses, goes through email_validator (tests/python/test_emails.py holds the
# two together).
PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]+)*@(?!.*--)"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")  # email_validator's


def _plain_address(value: str) -> str | None:
    match = PLAIN_ADDRESS.fullmatch(value)
    if match is None or len(value) > 254 or len(value.partition("@")[0]) > 64:
        return None
    domain = match.group(1).lower()
    if domain.rpartition(".")[2] in SPECIAL_USE or len(domain) > 253:
        return None
    return f"{value.partition('@')[0]}@{domain}"


def _ascii_address(value: str) -> str:
    """An address as a header and the SMTP envelope can carry it without SMTPUTF8: its domain in
    ASCII (IDNA) form. Python's email package would put a Unicode domain in the To header as an
    RFC 2047 encoded word, folded mid-address: a broken header. A local part outside ASCII would
    need SMTPUTF8, which not every server speaks: refused."""
    plain = _plain_address(value)
    if plain is not None:
        return plain
    import email_validator

    try:
        checked = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from exc
    if checked.ascii_email is None:
        raise ValueError("value is not a valid email address: the part before the @ must be ASCII")
    return str(checked.ascii_email)


Address = Annotated[str, pydantic.AfterValidator(_ascii_address)]


class Attachment(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, pydantic.StringConstraints(min_length=1)]
    filename: Annotated[
        SafeText,
        pydantic.StringConstraints(pattern=r"^[^/\\\x00-\x1f\x7f\x85\u2028\u2029]+$", max_length=255),
    ]


TemplateName = Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)]


class EmailBase(pydantic.BaseModel):
    """What every e-mail a job asks for has: its recipients and its template's variables. The
    e-mail job's payload adds the template and attachments; a document's `email` its defaults."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    to: Address | list[Address] = pydantic.Field(title="To", description="An address, or a list")
    context: dict[str, Any] = pydantic.Field({}, title="Template variables")
    cc: list[Address] = pydantic.Field([], title="Cc")
    bcc: list[Address] = pydantic.Field([], title="Bcc")
    reply_to: Address | None = pydantic.Field(None, title="Reply-To")

    @property
    def recipients(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)

    @pydantic.field_validator("to")
    @classmethod
    def _at_least_one(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one recipient")
        return value


class EmailPayload(EmailBase):
    template: TemplateName = pydantic.Field(
        title="Template", json_schema_extra=offered_templates("email", default="welcome")
    )
    locale: Literal["en", "fr"] = pydantic.Field("en", title="Language")
    attachments: list[Attachment] = pydantic.Field(
        [], title="Attachments", description='[{"url", "filename"}]'
    )


parse_payload = payloads.parser(EmailPayload)
