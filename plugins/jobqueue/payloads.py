"""A job's payload checked against its job type's model, and errors worded for a job's last_error.

A handler annotated with a pydantic model gets the payload validated before it runs; a refusal
names each field (`payload.to: value is not a valid email address`) and fails the job for good.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import pydantic
import pydantic_core

from jobqueue.exceptions import InvalidPayload, PermanentJobError

Parse = Callable[[Any], Any]


def parser(model: type[pydantic.BaseModel] | None) -> Parse:
    """The payload as the handler takes it: an instance of `model`, or the JSON as is."""
    if model is None:
        return _as_is

    def parse(payload: Any) -> Any:
        try:
            return model.model_validate(payload)
        except pydantic.ValidationError as exc:
            raise PermanentJobError(describe_validation_error(exc)) from exc

    return parse


def _as_is(payload: Any) -> Any:
    return payload


def to_json(value: Any) -> Any:
    """What a handler returns, as the job table keeps it: models and dataclasses as JSON."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    return _adapter(type(value)).dump_python(value, mode="json")


def json_text(value: Any, where: str) -> str:
    """`value` (a payload, a result) as the JSON text the job table keeps. What SQL and Python hand
    back is written as pydantic writes a handler's result (`to_json`), the way a payload reads it
    back into a model: a `Decimal` as a string of its exact digits ("1234.50"), a date, a time or
    a date-time as ISO 8601, a UUID as its string; a model or a dataclass as its fields. Anything
    JSON cannot hold (an object of no such kind, NaN, an infinity) is refused, naming the field:
    `payload.lines.2.total: float('nan') is not JSON`."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_json_value(value, where), allow_nan=False)


def _json_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise InvalidPayload(f"{where}: float({str(value)!r}) is not JSON")
    if isinstance(value, dict):
        return {str(key): _json_value(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{where}.{index}") for index, item in enumerate(value)]
    try:
        converted = pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        raise InvalidPayload(
            f"{where}: {type(value).__name__} is not JSON (give a string, a number, a boolean, a list, "
            "a dict, or a Decimal, date, datetime, UUID, model or dataclass)"
        ) from None
    return _json_value(converted, where)


_ADAPTERS: dict[type, pydantic.TypeAdapter[Any]] = {}


def _adapter(kind: type) -> pydantic.TypeAdapter[Any]:
    # Building an adapter costs about half a millisecond: once per type, not once per job.
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = pydantic.TypeAdapter(kind)
    return adapter


def unexpected(exc: BaseException, doing: str) -> str:
    """The job's error for an exception no check foresaw: what failed, and how, on one line."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{doing} failed: {type(exc).__name__}: {first}"[:500]


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """The problems, each naming the field: `payload.to: value is not a valid email address`.

    For a field that takes one of several types (`to`: an address or a list of them), pydantic
    reports every alternative under internal names: those names are dropped, and an alternative's
    mere type mismatch is left out when another says what is wrong."""
    found = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if isinstance(part, int) or not re.search(r"[\[(]", part))
        found.append((loc, item))

    def outdone(loc: tuple, item: Any) -> bool:
        return item["type"].endswith("_type") and any(
            other is not item and other_loc[: len(loc)] == loc
            and (len(other_loc) > len(loc) or not other["type"].endswith("_type"))
            for other_loc, other in found
        )  # fmt: skip

    problems: dict[str, list[str]] = {}
    for loc, item in found:
        if not outdone(loc, item):
            field = "payload" + "".join(
                f".{part}" if isinstance(part, int) or re.fullmatch(r"\w+", part) else f"[{part!r}]"
                for part in loc
            )
            problems.setdefault(field, [])
            if item["msg"] not in problems[field]:
                problems[field].append(item["msg"])
    return "invalid payload: " + "; ".join(
        f"{field}: {' or '.join(msgs)}" for field, msgs in problems.items()
    )
