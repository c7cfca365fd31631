"""Moving off graphile-worker, against graphile-worker 0.18.0's real schema (installed from npm by
tests/graphile's lock)."""

from __future__ import annotations

import datetime

import psycopg
import pytest

from jobqueue.exceptions import MigrationError
from jobqueue.graphile_import import import_graphile, main
from tests.graphile import install_schema
from tests.helpers import rows

FUTURE = datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture
def gw_db(empty_db, graphile_worker):
    install_schema(graphile_worker, empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        gw_add = "select id from graphile_worker.add_job(%s, %s::json, queue_name => %s, run_at => %s, " \
                 "max_attempts => %s, job_key => %s, priority => %s, flags => %s)"  # fmt: skip
        jobs = {
            "plain": ("send_email", '{"to": "a@example.com"}', None, None, None, None, None, None),
            "keyed": ("send_email", '{"to": "b@example.com"}', None, None, None, "welcome:b", None, None),
            "queued": ("generate_pdf", '{"n": 1}', "customer:7", None, None, None, None, None),
            "scheduled": ("send_email", '{"n": 2}', None, FUTURE, 5, None, -3, ["slow"]),
            "failed": ("send_email", '{"n": 3}', None, None, 3, None, None, None),
            "running": ("send_email", '{"n": 4}', None, None, None, None, None, None),
        }
        ids = {name: rows(conn, gw_add, args)[0]["id"] for name, args in jobs.items()}
        update = "update graphile_worker._private_jobs set "
        conn.execute(update + "attempts = 3, last_error = 'SMTP said no' where id = %s", [ids["failed"]])
        conn.execute(
            update + "locked_at = now(), locked_by = 'gw-1', attempts = 1 where id = %s", [ids["running"]]
        )
        # The application's own trigger, calling graphile-worker as it does today.
        conn.execute("""
            create table signups (id serial primary key, email text not null);
            create function signups_welcome() returns trigger language plpgsql as $$
            begin
                perform graphile_worker.add_job(
                    'send_email',
                    json_build_object('to', new.email, 'template', 'welcome'),
                    job_key => 'welcome:' || new.email
                );
                return new;
            end;
            $$;
            create trigger signups_welcome after insert on signups
                for each row execute function signups_welcome();
        """)
    return empty_db


def worker_jobs(conn) -> dict:
    return {
        (r["identifier"], r["payload"].get("n"), r["payload"].get("to")): r
        for r in rows(conn, "select * from worker.jobs")
    }


def test_dry_run_says_what_it_would_do_and_changes_nothing(gw_db):
    report = import_graphile(gw_db, dry_run=True)
    assert (report.waiting, report.failed, report.left_running) == (4, 1, 1)
    assert report.moved_by_identifier == {"send_email": 4, "generate_pdf": 1}
    assert "would move 4 waiting and 1 failed" in report.describe()
    assert "dry run: nothing was changed" in report.describe()
    with psycopg.connect(gw_db) as conn:
        assert conn.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (6,)
        assert conn.execute("select count(*) from worker.jobs").fetchone() == (0,)
        returns = conn.execute("select prorettype::regtype::text from pg_proc where proname = 'add_job' "
                               "and pronamespace = 'graphile_worker'::regnamespace").fetchone()  # fmt: skip
        assert returns == ("graphile_worker._private_jobs",)


def test_jobs_move_with_everything_kept_and_old_calls_keep_working(gw_db):
    report = import_graphile(gw_db)
    assert (report.waiting, report.failed, report.left_running) == (4, 1, 1)
    with psycopg.connect(gw_db, autocommit=True) as conn:
        moved = worker_jobs(conn)
        assert moved[("send_email", None, "b@example.com")]["job_key"] == "welcome:b"
        assert moved[("generate_pdf", 1, None)]["queue_name"] == "customer:7"
        scheduled = moved[("send_email", 2, None)]
        assert (scheduled["status"], scheduled["run_at"], scheduled["priority"], scheduled["max_attempts"],
                scheduled["flags"]) == ("scheduled", FUTURE, -3, 5, ["slow"])  # fmt: skip
        failed = moved[("send_email", 3, None)]
        assert (failed["status"], failed["attempts"], failed["last_error"]) == ("failed", 3, "SMTP said no")
        assert moved[("send_email", None, "a@example.com")]["status"] == "queued"
        # The running job stays with the worker that holds it.
        assert conn.execute("select locked_by from graphile_worker._private_jobs").fetchall() == [("gw-1",)]

        # Existing SQL keeps working, unchanged, and now lands in worker.jobs.
        conn.execute("insert into signups (email) values ('c@example.com')")
        welcome = rows(conn, "select * from worker.jobs where job_key = 'welcome:c@example.com'")[0]
        assert welcome["payload"] == {"to": "c@example.com", "template": "welcome"}
        spec = "('send_email', '{\"n\": 9}', null, null, null, 'nine', null, null)::graphile_worker.job_spec"
        many = rows(conn, f"select * from graphile_worker.add_jobs(array[{spec}])")  # noqa: S608
        assert (many[0]["identifier"], many[0]["job_key"]) == ("send_email", "nine")
        assert rows(conn, "select id from graphile_worker.remove_job('nine')")[0]["id"] == many[0]["id"]
        assert rows(conn, "select * from worker.jobs where job_key = 'nine'") == []

    # Running it again moves what is left and replaces nothing twice.
    again = import_graphile(gw_db)
    assert (again.waiting, again.failed, again.functions_replaced) == (0, 0, False)


def test_a_key_in_both_stops_the_import_and_changes_nothing(gw_db):
    import_graphile(gw_db, dry_run=True)  # creates schema worker
    with psycopg.connect(gw_db, autocommit=True) as conn:
        conn.execute("select worker.add_job('send_email', job_key => 'welcome:b')")
    with pytest.raises(MigrationError, match="job key is in both graphile_worker and worker"):
        import_graphile(gw_db)
    with psycopg.connect(gw_db) as conn:
        assert conn.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (6,)


def test_without_graphile_worker_the_command_says_so(db_url, capsys):
    assert main([db_url]) == 1
    assert "no graphile-worker schema" in capsys.readouterr().err
