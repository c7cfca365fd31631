"""The migration runner: idempotent, safe from two processes, equal to `psql -f` in name order."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from devtools.localpg import find_bin_dir
from devtools.schema import SCHEMA_FILE, dump
from jobqueue import paths
from jobqueue.exceptions import MigrationError
from jobqueue.migrations import apply_migrations, migration_files

ALL = [path.stem for path in migration_files()]


def applied(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("select name from worker.migrations order by name")]


def test_applies_everything_once(empty_db):
    assert apply_migrations(empty_db) == ALL
    assert apply_migrations(empty_db) == []
    assert applied(empty_db) == ALL


def test_two_processes_at_once(empty_db):
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT / "plugins")}
    command = [sys.executable, "-m", "jobqueue.migrations", empty_db]
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    printed = b"".join(out for out, _ in outputs).decode().split()
    assert printed.count("applied") == len(ALL)
    assert applied(empty_db) == ALL


def psql_file(path, url: str) -> None:
    psql = find_bin_dir() / "psql"
    command = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path), url]
    subprocess.run(command, check=True, capture_output=True)


def test_psql_in_name_order_gives_the_same_schema(server_url, empty_db, db_url):
    for path in migration_files():
        psql_file(path, empty_db)
    assert applied(empty_db) == applied(db_url) == ALL
    assert dump(empty_db) == dump(db_url)


def test_the_schema_file_is_what_the_migrations_make(empty_db, db_url):
    psql_file(SCHEMA_FILE, empty_db)
    assert dump(empty_db) == dump(db_url), "include/sql/schema.sql is out of date: run `make schema`"


def test_a_function_changed_by_a_migration_alone_is_a_difference(empty_db, db_url):
    psql_file(SCHEMA_FILE, empty_db)
    with psycopg.connect(db_url, autocommit=True) as conn:
        [definition] = conn.execute(
            "select pg_get_functiondef('worker.claim_jobs(text[], text, integer, text[])'::regprocedure)"
        ).fetchone() or [""]
        conn.execute(definition.replace("max_jobs * 4 + 100", "max_jobs * 4 + 200"))  # as a migration might
    changed = dump(db_url)
    assert "max_jobs * 4 + 200" in changed
    assert dump(empty_db) != changed


def test_a_migration_that_does_not_record_itself_is_refused(empty_db, tmp_path):
    for path in migration_files():
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "9999_forgetful.sql").write_text("create table worker.forgotten (id int);")
    with pytest.raises(MigrationError, match=r"9999_forgetful\.sql does not record itself"):
        apply_migrations(empty_db, tmp_path)
    # Nothing of the refused file is left behind.
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("select to_regclass('worker.forgotten')").fetchone() == (None,)


def test_0004_leaves_failed_jobs_no_attempts_left(empty_db, tmp_path):
    # Before 0004 a job failed by hand kept its attempts, and reschedule_jobs revived it.
    for path in migration_files():
        if path.name < "0004":
            (tmp_path / path.name).write_text(path.read_text())
    apply_migrations(empty_db, tmp_path)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("select worker.add_job('a', max_attempts => 5)")
        conn.execute("select worker.permanently_fail_jobs(array[1], 'by hand')")
        assert conn.execute("select state, attempts from worker._jobs").fetchone() == ("failed", 0)
        apply_migrations(empty_db)
        assert conn.execute("select state, attempts, last_error from worker._jobs").fetchone() == (
            "failed",
            5,
            "by hand",
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("update worker._jobs set attempts = 1")


def test_a_failing_migration_names_itself(empty_db, tmp_path):
    (tmp_path / "0001_broken.sql").write_text("create tabel oops;")
    with pytest.raises(MigrationError, match=r"0001_broken\.sql failed: .*syntax error"):
        apply_migrations(empty_db, tmp_path)


def test_badly_named_file_is_refused(tmp_path):
    (tmp_path / "initial.sql").write_text("")
    with pytest.raises(MigrationError, match=r"must look like 0001_name\.sql: initial\.sql"):
        migration_files(tmp_path)


def test_create_database_then_migrate(server_url):
    import uuid

    from jobqueue.migrations import main

    name = f"worker_created_{uuid.uuid4().hex[:8]}"
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        assert main(["--create-database", url]) == 0
        assert main(["--create-database", url]) == 0  # twice is fine
        assert applied(url) == ALL
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
