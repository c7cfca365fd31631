"""include/sql/schema.sql: today's schema in one file, the migrations' result as PostgreSQL dumps it.

    python -m devtools.schema          (make schema) writes the file from a throwaway cluster
    python -m devtools.schema --check  exits 1 when the file is not the migrations' result

The migrations stay the way a database gets there (each applied once, in name order); this file is
where a reader finds the current `claim_jobs` without looking for the latest of three migrations.
tests/sql/test_migrations.py applies it to an empty database and compares that with the migrations,
so a migration that changes a function the file does not fails the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devtools.harness import free_port
from devtools.localpg import LocalCluster, find_bin_dir
from jobqueue import paths
from jobqueue.migrations import apply_migrations

SCHEMA_FILE = paths.SQL_DIR / "schema.sql"

HEADER = """\
-- The job queue's schema as the migrations leave it (include/sql/migrations, applied in name order).
-- Generated: `make schema` rewrites this file after a migration is added. Read it to see what is
-- there today; change the schema with a new migration, never here (tests/sql/test_migrations.py
-- fails when the two differ). The roles worker_app and worker_admin are made by 0002 and 0007
-- (roles belong to the server, not to a schema): this file only grants to them.
"""


def dump(url: str) -> str:
    """pg_dump's schema-only text of the `worker` schema, without what changes from dump to dump."""
    result = subprocess.run(
        [str(find_bin_dir() / "pg_dump"), "--schema-only", "--no-owner", "--schema=worker", url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    # The version banner names the server; \restrict and \unrestrict carry a random key per dump.
    noise = ("-- Dumped from", "-- Dumped by", "\\restrict", "\\unrestrict")
    lines = [line for line in result.stdout.splitlines() if not line.startswith(noise)]
    return "\n".join(lines).strip() + "\n"


def schema_text(url: str) -> str:
    """What include/sql/schema.sql holds for the database at `url` (migrated)."""
    return HEADER + "\n" + dump(url)


def migrated_schema() -> str:
    """schema_text of a throwaway database that got every migration."""
    folder = Path(tempfile.mkdtemp(prefix="worker-schema-"))
    folder.chmod(0o755)  # the server may run as another user (we are root)
    cluster = LocalCluster(folder / "pg", free_port(), durable=False)
    try:
        cluster.start()
        cluster.create_database("worker")
        apply_migrations(cluster.url("worker"))
        return schema_text(cluster.url("worker"))
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    text = migrated_schema()
    if argv == ["--check"]:
        if SCHEMA_FILE.read_text() != text:
            print(f"{SCHEMA_FILE} is not the migrations' result: run `make schema`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(text)
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
