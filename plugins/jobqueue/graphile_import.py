"""Moves a database off graphile-worker: its waiting and failed jobs into schema worker, and its
enqueueing functions replaced by forwarders, so existing SQL triggers and functions keep working.

    python -m jobqueue.graphile_import [--dry-run] [URL]

Stop graphile-worker's workers first. Jobs they still hold (running) are left where they are and
counted; run the command again once they are done. Everything happens in one transaction: on any
error nothing has changed, and --dry-run rolls back after saying what it would do.
"""

from __future__ import annotations

import collections
import dataclasses
import sys

import psycopg

from jobqueue import paths, settings
from jobqueue.exceptions import MigrationError
from jobqueue.manager import JobManager
from jobqueue.migrations import apply_migrations

FORWARDERS = paths.SQL_DIR / "graphile_forwarders.sql"


@dataclasses.dataclass(frozen=True)
class ImportReport:
    waiting: int
    failed: int
    left_running: int
    moved_by_identifier: dict[str, int]
    functions_replaced: bool
    dry_run: bool

    def describe(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        lines = [
            f"{verb} {self.waiting} waiting and {self.failed} failed job(s) from graphile_worker to worker"
        ]
        lines += [
            f"  {identifier}: {count}" for identifier, count in sorted(self.moved_by_identifier.items())
        ]
        if self.left_running:
            lines.append(
                f"left {self.left_running} running job(s) to their graphile-worker workers: run again later"
            )
        if self.functions_replaced:
            replaced = "would replace" if self.dry_run else "replaced"
            lines.append(
                f"{replaced} graphile_worker.add_job, add_jobs and remove_job with forwarders to worker"
            )
        else:
            lines.append("graphile_worker.add_job already forwards to worker")
        if self.dry_run:
            lines.append("dry run: nothing was changed")
        return "\n".join(lines)


def import_graphile(database_url: str, dry_run: bool = False) -> ImportReport:
    apply_migrations(database_url)
    with psycopg.connect(database_url) as conn:
        jobs = JobManager(conn)
        if not jobs.graphile_schema_exists():
            raise MigrationError("no graphile-worker schema (graphile_worker._private_jobs) in this database")
        waiting, failed, running = jobs.graphile_summary()
        try:
            moved = jobs.move_graphile_jobs()
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail
            raise MigrationError(
                f"a job key is in both graphile_worker and worker (not completed): {detail}"
            ) from exc
        jobs.notify_identifiers(sorted(set(moved)))
        replace = not jobs.graphile_already_forwarded()
        if replace:
            jobs.run_script(FORWARDERS.read_text())
        if dry_run:
            jobs.rollback()
        else:
            jobs.commit()
    return ImportReport(
        waiting=waiting,
        failed=failed,
        left_running=running,
        moved_by_identifier=dict(collections.Counter(moved)),
        functions_replaced=replace,
        dry_run=dry_run,
    )


def main(argv: list[str]) -> int:
    dry_run = "--dry-run" in argv
    urls = [arg for arg in argv if arg != "--dry-run"]
    try:
        report = import_graphile(urls[0] if urls else settings.job_database_url(), dry_run=dry_run)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
