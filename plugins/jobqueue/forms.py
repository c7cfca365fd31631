"""The trigger forms of the job DAGs: Airflow `params` with a JSON schema per payload field, made
from the job type's payload model, so the UI shows a real form and refuses what does not fit,
naming the field. Every field may be empty (runs started by the asset carry no payload); the
payload's own validation names what is missing."""

from __future__ import annotations

from typing import Any

Fields = dict[str, dict[str, Any]]


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


_COPIED = (
    "title", "description", "format", "pattern", "minLength", "maxLength", "minimum", "maximum", "examples",
)  # fmt: skip


def model_fields(model: Any) -> Fields:
    """The trigger form's fields from a payload model (pydantic), through its JSON schema. As for
    the hand-written ones, every field may be empty; the model names what is missing."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    return {name: _field(spec, definitions) for name, spec in schema.get("properties", {}).items()}


def _field(spec: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    field = {key: spec[key] for key in _COPIED if key in spec}
    if "default" in spec:
        field["default"] = spec["default"]
    types = _types(spec, definitions)
    if types is not None:
        field["type"] = sorted(types | {"null"})
    if "enum" in spec:
        field["enum"] = [*spec["enum"], None]
    if "items" in spec and "$ref" not in str(spec["items"]):
        field["items"] = spec["items"]
    return field


def _types(spec: dict[str, Any], definitions: dict[str, Any]) -> set[str] | None:
    """The JSON types a field takes, or None when the schema does not say (no constraint)."""
    if "type" in spec:
        return {spec["type"]} if isinstance(spec["type"], str) else set(spec["type"])
    if "$ref" in spec:
        target = definitions.get(spec["$ref"].rpartition("/")[2], {})
        return _types(target, definitions) or {"object"}
    if "anyOf" in spec:
        found = [_types(option, definitions) for option in spec["anyOf"]]
        return None if any(option is None for option in found) else set().union(*found)  # type: ignore[arg-type]
    return None
