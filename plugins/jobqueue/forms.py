"""The trigger forms of the job DAGs: Airflow `params` with a JSON schema per payload field, so the UI
shows a real form and refuses what does not fit, naming the field. Every field may be empty (runs
started by the asset carry no payload); the payload's own validation names what is missing."""

from __future__ import annotations

from typing import Any

Fields = dict[str, dict[str, Any]]
ADDRESS = {"type": "string", "format": "email"}

EMAIL_FIELDS: Fields = {
    "to": {"type": ["null", "string", "array"], "title": "To", "description": "An address, or a list"},
    "template": {
        "default": "welcome",
        "type": "string",
        "enum": ["welcome", "password_reset", "document_ready", "daily_digest"],
        "title": "Template",
    },
    "context": {"default": {}, "type": "object", "title": "Template variables"},
    "locale": {"default": "en", "type": "string", "enum": ["en", "fr"], "title": "Language"},
    "cc": {"default": [], "type": "array", "items": ADDRESS, "title": "Cc"},
    "bcc": {"default": [], "type": "array", "items": ADDRESS, "title": "Bcc"},
    "reply_to": {"type": ["null", "string"], "title": "Reply-To"},
    "attachments": {
        "default": [],
        "type": "array",
        "title": "Attachments",
        "description": '[{"url", "filename"}]',
    },
}

DOCUMENT_FIELDS: Fields = {
    "template": {"default": "invoice", "type": "string", "enum": ["invoice", "letter"], "title": "Template"},
    "filename": {"type": ["null", "string"], "pattern": r"^[\w\-. ]+\.pdf$", "title": "File name"},
    "context": {"default": {}, "type": "object", "title": "Document data"},
    "locale": {"default": "fr", "type": "string", "enum": ["en", "fr"], "title": "Language"},
    "email": {"type": ["null", "object"], "title": "Mail it", "description": '{"to", "template", "context"}'},
}


def params(fields: Fields) -> dict[str, Any]:
    """Airflow Params from JSON-schema field specs."""
    from airflow.sdk import Param

    return {
        name: Param(spec.get("default"), **{k: v for k, v in spec.items() if k != "default"})
        for name, spec in fields.items()
    }


def defaults(fields: Fields) -> dict[str, Any]:
    """What the form holds when nobody typed anything: such a conf is no payload."""
    return {name: spec.get("default") for name, spec in fields.items()}
