"""The named queries of include/sql/queries.sql, loaded once."""

from __future__ import annotations

import functools
import re

from jobqueue import paths

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def load_queries() -> dict[str, str]:
    text = (paths.SQL_DIR / "queries.sql").read_text()
    parts = _HEADER.split(text)[1:]
    return {name: body.strip() for name, body in zip(parts[::2], parts[1::2], strict=True)}


def query(name: str) -> str:
    return load_queries()[name]
