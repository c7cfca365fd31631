"""Bad input at enqueue: every refusal is a named error (SQLSTATE WK001-WK008) whose message names the
field or the spec, nothing is half-written, and what is accepted is accepted whole.

Two sources: the corpus kept in tests/corpus/add_jobs.json (every case runs, every time), and
hypothesis generating specs from the same kinds of values and from arbitrary JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

CORPUS = json.loads((Path(__file__).parent.parent / "corpus" / "add_jobs.json").read_text())
FIELDS = ["identifier", "payload", "queue_name", "run_at", "max_attempts", "job_key", "priority", "flags",
          "job_key_mode"]  # fmt: skip
NAMED = {f"WK00{n}" for n in range(1, 9)}


def count(conn: psycopg.Connection) -> int:
    return int(conn.execute("select count(*) from worker._jobs").fetchone()[0])  # type: ignore[index]


def refused_clearly(exc: psycopg.Error, words: list[str]) -> None:
    message = str(exc)
    assert exc.sqlstate in NAMED, f"unnamed error {exc.sqlstate}: {message}"
    assert any(word in message for word in words), f"the message names none of {words}: {message}"


def check_add_jobs(conn: psycopg.Connection, specs: Any) -> None:
    before = count(conn)
    try:
        rows = conn.execute("select identifier from worker.add_jobs(%s)", [Jsonb(specs)]).fetchall()
    except psycopg.Error as exc:
        refused_clearly(exc, ["spec", *FIELDS])
        assert count(conn) == before, "a refused add_jobs wrote something"
        return
    assert isinstance(specs, list) and len(rows) == len(specs)
    assert [row[0] for row in rows] == [spec["identifier"] for spec in specs]


def check_add_job(conn: psycopg.Connection, args: dict[str, Any]) -> None:
    before = count(conn)
    values = {**args, "payload": Jsonb(args["payload"])} if "payload" in args else args
    names = ", ".join(f"{name} => %({name})s" for name in values)
    try:
        row = conn.execute(f"select identifier from worker.add_job({names})", values).fetchone()  # noqa: S608
    except psycopg.Error as exc:
        refused_clearly(exc, list(args))
        assert count(conn) == before, "a refused add_job wrote something"
        return
    assert row == (args["identifier"],)


def test_the_corpus_is_big_enough():
    assert len(CORPUS["cases"]) + len(CORPUS["add_job_cases"]) >= 200


def run_corpus(cases: list[dict], check: Any) -> list[str]:
    """Every case, on one database (a fresh one per case would cost a minute); the failures named."""
    failures = []
    for case in cases:
        try:
            check(case)
        except AssertionError as exc:
            failures.append(f"{case['name']}: {exc}")
    return failures


def test_add_jobs_corpus(conn):
    assert run_corpus(CORPUS["cases"], lambda case: check_add_jobs(conn, case["specs"])) == []


def test_add_job_corpus(conn):
    assert run_corpus(CORPUS["add_job_cases"], lambda case: check_add_job(conn, case["args"])) == []


# PostgreSQL's text cannot hold NUL, and jsonb refuses \u0000 before any function runs (22P05,
# "unsupported Unicode escape sequence"): a clear error, but not ours to name.
text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=140)
scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | text
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=6,
)  # fmt: skip
field_values = {
    "identifier": st.one_of(st.sampled_from(["send_email", "x", ""]), text, json_values),
    "payload": json_values,
    "queue_name": st.one_of(st.none(), st.sampled_from(["q", ""]), text, json_values),
    "run_at": st.one_of(st.none(), st.sampled_from(["2026-11-28T08:00:00Z", "tomorrow", "x"]), json_values),
    "max_attempts": st.one_of(st.none(), st.integers(-3, 2**33), json_values),
    "job_key": st.one_of(st.none(), st.sampled_from(["k", "k2", ""]), json_values),
    "priority": st.one_of(st.none(), st.integers(-(2**33), 2**33), json_values),
    "flags": st.one_of(st.none(), st.lists(st.one_of(text, st.none()), max_size=3), json_values),
    "job_key_mode": st.one_of(
        st.none(), st.sampled_from(["replace", "preserve_run_at", "unsafe_dedupe", "x"])
    ),
}
optional = {name: values for name, values in field_values.items() if name != "identifier"}
specs = st.lists(
    st.fixed_dictionaries({"identifier": field_values["identifier"]}, optional=optional), max_size=4
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.one_of(specs, json_values))
def test_add_jobs_refuses_clearly_or_accepts_whole(conn, specs):
    check_add_jobs(conn, specs)
