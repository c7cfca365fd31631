"""Database roles: an application holding worker_app can enqueue, remove by key and read
worker.jobs, and nothing else; every function runs as its owner with a fixed search_path."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql


@contextlib.contextmanager
def logged_in_with(role: str, db_url: str, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A connection as a fresh login role that was granted `role`, dropped afterwards."""
    name = f"{role}_{secrets.token_hex(4)}"
    conn.execute(
        sql.SQL("create role {} login in role {}").format(sql.Identifier(name), sql.Identifier(role))
    )
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(db_url, user=name), autocommit=True) as session:
            yield session
    finally:
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@pytest.fixture
def app(db_url: str, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """As an application would be: granted worker_app."""
    with logged_in_with("worker_app", db_url, conn) as session:
        yield session


def test_an_application_enqueues_removes_by_key_and_reads_jobs(app):
    job_id = app.execute(
        "select id from worker.add_job('send_email', '{\"to\": \"a@example.com\"}')"
    ).fetchone()
    assert job_id is not None
    added = app.execute(
        """select count(*) from worker.add_jobs('[{"identifier": "x"}, {"identifier": "y"}]')"""
    )
    assert added.fetchone() == (2,)
    app.execute("select worker.add_job('x', job_key => 'k1')")
    assert app.execute("select status from worker.remove_job('k1')").fetchone() is not None
    assert app.execute("select status from worker.jobs where id = %s", job_id).fetchone() == ("queued",)


@pytest.mark.parametrize(
    "statement",
    [
        "select * from worker._jobs",
        "update worker._jobs set priority = 0",
        "delete from worker._jobs",
        "insert into worker._jobs (identifier) values ('sneaky')",
        "select * from worker.job_actions",
        "select worker.claim_jobs(array['send_email'], 'thief')",
        "select worker.complete_jobs(array[1::bigint])",
        "select worker.permanently_fail_jobs(array[1::bigint])",
        "select worker.reschedule_jobs(array[1::bigint])",
        "select worker.remove_jobs(array[1::bigint])",
        "select worker.force_unlock_workers(array['w'])",
        "select worker.fail_job(1, 'w', 'e')",
        "select worker.add_job_for_worker('x', '{}', 'w')",
        "select worker.pause_identifier('send_email')",
        "select worker.resume_queue('q')",
        "select worker.set_rate_limit('send_email', '1/h')",
        "select worker.declare_rate_limit('send_email', '1/h')",
        "select * from worker.paused",
        "select worker._add_job('x', '{}', null, null, null, null, null, null, 'replace')",
        "create function worker.add_job(text) returns int language sql as 'select 1'",
        "create table worker.mine (x int)",
    ],
)
def test_an_application_can_do_nothing_else(app, statement):
    with pytest.raises(errors.InsufficientPrivilege):
        app.execute(statement)


def test_every_function_runs_as_its_owner_with_a_fixed_search_path(conn):
    loose = conn.execute(
        """
        select p.oid::regprocedure::text
        from pg_proc p
        where p.pronamespace = 'worker'::regnamespace
          and not (p.prosecdef
                   and 'search_path=pg_catalog, worker, pg_temp' = any(coalesce(p.proconfig, '{}')))
        """
    ).fetchall()
    assert loose == []


def test_public_cannot_use_the_schema(db_url, conn):
    name = f"nobody_{secrets.token_hex(4)}"
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(db_url, user=name), autocommit=True) as other:
            for statement in ("select * from worker.jobs", "select worker.add_job('x')"):
                with pytest.raises(errors.InsufficientPrivilege):
                    other.execute(statement)
    finally:
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@pytest.fixture
def admin(db_url: str, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """As an operator would be: granted worker_admin."""
    with logged_in_with("worker_admin", db_url, conn) as session:
        yield session


def test_an_operator_pauses_resumes_and_sets_rate_limits_and_is_named_as_who_paused(admin):
    admin.execute("select worker.pause_identifier('send_email')")
    admin.execute("select worker.pause_queue('user:7')")
    admin.execute("select worker.set_rate_limit('send_email', '5/s')")
    paused = admin.execute("select kind, name, paused_by = session_user from worker.paused order by kind")
    assert paused.fetchall() == [("identifier", "send_email", True), ("queue", "user:7", True)]
    assert admin.execute("select rate_limit from worker.rate_limits").fetchall() == [("5/s",)]
    assert admin.execute("select worker.resume_identifier('send_email')").fetchone() == (True,)
    assert admin.execute("select count(*) from worker.jobs").fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "select * from worker._paused",
        "select worker.claim_jobs(array['send_email'], 'thief')",
        "select worker.declare_rate_limit('send_email', '1/h')",
        "select worker.add_job('x')",
    ],
)
def test_an_operator_does_not_work_jobs_or_enqueue(admin, statement):
    with pytest.raises(errors.InsufficientPrivilege):
        admin.execute(statement)
