"""Applies include/sql/migrations/*.sql in name order, each once, under an advisory lock.

Each file records itself in worker.migrations (its last statement), so `psql -f` over the files in
name order and this runner give the same database.

    python -m jobqueue.migrations [--create-database] [URL]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import psycopg

from jobqueue import paths, settings
from jobqueue.exceptions import MigrationError
from jobqueue.manager import JobManager

_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")


def migration_files(directory: Path = paths.MIGRATIONS_DIR) -> list[Path]:
    files = sorted(directory.glob("*.sql"))
    for path in files:
        if not _NAME.match(path.name):
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
    return files


def apply_migrations(database_url: str, directory: Path = paths.MIGRATIONS_DIR) -> list[str]:
    """Applies what is missing; returns the names applied now. Safe to run twice or concurrently."""
    applied_now = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        schema = JobManager(conn)
        schema.lock_migrations()
        try:
            done = schema.migrations_applied()
            for path in migration_files(directory):
                if path.stem not in done:
                    _apply_one(conn, path)
                    applied_now.append(path.stem)
        finally:
            schema.unlock_migrations()
    return applied_now


def _apply_one(conn: psycopg.Connection, path: Path) -> None:
    try:
        with conn.transaction():
            schema = JobManager(conn)
            schema.run_script(path.read_text())
            if path.stem not in schema.migrations_applied():
                raise MigrationError(f"{path.name} does not record itself in worker.migrations")
    except psycopg.Error as exc:
        raise MigrationError(f"{path.name} failed: {exc}") from exc


def create_database(database_url: str) -> None:
    """Creates the URL's database, through the server's `postgres` database, if it is missing."""
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(database_url)
    name = str(info["dbname"])
    maintenance = psycopg.conninfo.make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--create-database"]:
        argv = argv[1:]
        create_database(argv[0] if argv else settings.job_database_url())
    url = argv[0] if argv else settings.job_database_url()
    for name in apply_migrations(url):
        print(f"applied {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
