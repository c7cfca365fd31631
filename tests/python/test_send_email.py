"""The send_email job type (render >> send) against a real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import contextlib
import json
import smtplib
import threading

import psycopg
import pytest

from jobqueue.airflow_dag import run_task
from jobqueue.emails.steps import Sending
from jobqueue.exceptions import OutcomeNotRecorded, RunPayloadRefused
from tests.helpers import add, all_jobs, job, load_dag_file, run_steps, task_run
from tests.smtp import SmtpServer

WORKER = "send_email/manual__test"
SEND_EMAIL = load_dag_file("send_email").send_email
RENDER, SEND = range(1), range(1, 2)


def sending(server: SmtpServer, sessions: int = 4, connect=None) -> Sending:
    def session():
        return contextlib.closing(smtplib.SMTP("127.0.0.1", server.port, timeout=10))

    return Sending(connect or session, sessions, "jobs@localhost")


def run_chain(db_url, server, worker=WORKER, **kw) -> list[dict]:
    return run_steps(SEND_EMAIL, db_url, worker, prepared=kw.pop("prepared", None) or sending(server), **kw)


def welcome(n: int) -> dict:
    return {"to": f"user{n}@example.com", "template": "welcome", "context": {"name": f"User {n}"}}


def test_a_batch_is_delivered_and_completed(conn, db_url, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(20)]
    assert run_chain(db_url, smtp) == [{"jobs": 20, "handed_on": 20}, {"jobs": 20, "completed": 20}]
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
    done = job(conn, ids[0])
    assert done["result"] == {"message_id": f"<job-{ids[0]}@localhost>"}
    assert done["last_worker"] == WORKER
    recipients, message = smtp.messages[0]
    assert recipients == [message["To"]]


def test_bad_payloads_fail_for_good_and_the_batch_goes_on(conn, db_url, smtp):
    good = add(conn, "send_email", welcome(1))["id"]
    no_to = add(conn, "send_email", {"template": "welcome"})["id"]
    no_var = add(conn, "send_email", {"to": "a@example.com", "template": "password_reset"})["id"]
    injected = add(conn, "send_email", {**welcome(2), "context": {"name": "x\r\nBcc: victim@example.com"}})
    run_chain(db_url, smtp)
    assert job(conn, good)["status"] == "completed"
    for job_id, problem in [
        (no_to, "payload.to: Field required"),
        (no_var, "'name' is undefined"),
        (injected["id"], "line break"),
    ]:
        failed = job(conn, job_id)
        assert failed["status"] == "failed", failed
        assert problem in failed["last_error"]
        # Failed for good after one run, not retried: retrying cannot fix it, so no attempts are left.
        assert failed["attempts"] == failed["max_attempts"] == 25
    assert len(smtp.messages) == 1


def test_smtp_down_means_retry_then_delivery_once(conn, db_url, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(5)]
    smtp.stop()
    run_chain(db_url, smtp)
    for job_id in ids:
        waiting = job(conn, job_id)
        assert waiting["status"] == "scheduled"
        assert "SMTP server unreachable" in waiting["last_error"]
    smtp.start()
    conn.execute("update worker._jobs set run_at = now() where id = any(%s)", [ids])
    run_chain(db_url, smtp, worker="send_email/manual__2")
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)


def test_retried_tasks_take_back_what_they_held_and_never_send_twice(conn, db_url, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(3)]
    assert run_chain(db_url, smtp, steps=RENDER) == [{"jobs": 3, "handed_on": 3}]
    assert run_chain(db_url, smtp, steps=RENDER) == [{"jobs": 0}]  # the render task retried
    assert run_chain(db_url, smtp, steps=SEND) == [{"jobs": 3, "completed": 3}]
    assert run_chain(db_url, smtp, steps=SEND) == [{"jobs": 0}]  # the send task retried
    assert len(smtp.messages) == len(ids)


def test_a_large_batch_goes_over_several_sessions_each_message_once(conn, db_url, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(120)]
    run_chain(db_url, smtp, prepared=sending(smtp, sessions=4))
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)
    assert len(smtp.handler.peers) == 4
    done = conn.execute(
        "select count(*) from worker.jobs where id = any(%s) and status = 'completed'"
        " and result->>'message_id' = '<job-' || id || '@localhost>'",
        [ids],
    ).fetchone()[0]
    assert done == len(ids)


def test_a_session_that_loses_its_connection_leaves_its_messages_to_the_others(conn, db_url, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(90)]
    opened = []

    @contextlib.contextmanager
    def connect():
        client = smtplib.SMTP("127.0.0.1", smtp.port, timeout=10)
        opened.append(client)
        if len(opened) == 1:
            client.close()  # this session is dead from the start
        try:
            yield client
        finally:
            client.close()

    [_, summary] = run_chain(db_url, smtp, prepared=sending(smtp, sessions=3, connect=connect))
    assert summary == {"jobs": 90, "completed": 89, "retry": 1}  # the message the dead session took
    assert len(smtp.messages) == len(ids) - 1
    [retried] = [j for j in all_jobs(conn) if j["status"] != "completed"]
    assert retried["status"] == "scheduled"
    assert "SMTP connection lost" in retried["last_error"]


def test_every_session_lost_means_the_rest_waits_for_a_retry(conn, db_url, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(5)]

    @contextlib.contextmanager
    def connect():
        client = smtplib.SMTP("127.0.0.1", smtp.port, timeout=10)
        client.close()
        yield client

    run_chain(db_url, smtp, prepared=sending(smtp, connect=connect))
    assert {job(conn, i)["status"] for i in ids} == {"scheduled"}
    assert smtp.messages == []


def test_a_refused_recipient_fails_only_that_job(conn, db_url, smtp):
    ok = add(conn, "send_email", welcome(1))["id"]
    refused = add(conn, "send_email", {**welcome(2), "to": "nobody@refused.example"})["id"]

    async def handle_rcpt(server, session, envelope, address, options):
        if address.endswith("@refused.example"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    smtp.handler.handle_RCPT = handle_rcpt
    run_chain(db_url, smtp)
    assert job(conn, ok)["status"] == "completed"
    failed = job(conn, refused)
    assert failed["status"] == "failed"
    assert "nobody@refused.example (550" in failed["last_error"]


def test_text_handed_on_without_its_envelope_is_still_sent(conn, db_url, smtp):
    """What a render step of the version before handed on: the text alone (the envelope is then
    read from the payload)."""
    add(conn, "send_email", {**welcome(1), "cc": ["cc@example.com"]})
    run_chain(db_url, smtp, steps=RENDER)
    conn.execute("update worker._job_steps set value = value -> 'rendered'")
    run_chain(db_url, smtp, steps=SEND)
    [(recipients, message)] = smtp.messages
    assert recipients == ["user1@example.com", "cc@example.com"]
    assert message["Subject"] and message["Cc"] == "cc@example.com"


def test_a_full_batch_asks_for_another_run(conn, db_url, smtp, monkeypatch):
    monkeypatch.setenv("WORKER_BATCH_SIZE", "2")
    for n in range(3):
        add(conn, "send_email", welcome(n))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen worker_jobs")
        assert run_chain(db_url, smtp, steps=RENDER) == [{"jobs": 2, "handed_on": 2}]
        notes = [json.loads(n.payload) for n in listener.notifies(timeout=0.3)]
    assert notes == [["send_email"]]
    assert sum(1 for j in all_jobs(conn) if j["status"] == "queued") == 1


def test_attachment_from_storage(conn, db_url, smtp, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_STORAGE_URL", f"file://{tmp_path}")
    (tmp_path / "invoices").mkdir()
    (tmp_path / "invoices" / "f-42.pdf").write_bytes(b"%PDF-1.7 test")
    payload = {**welcome(1), "attachments": [{"url": "invoices/f-42.pdf", "filename": "facture-42.pdf"}]}
    escape = {**welcome(2), "attachments": [{"url": "../../etc/passwd", "filename": "passwd.txt"}]}
    ok, bad = add(conn, "send_email", payload)["id"], add(conn, "send_email", escape)["id"]
    run_chain(db_url, smtp)
    assert job(conn, ok)["status"] == "completed"
    [attachment] = list(smtp.messages[0][1].iter_attachments())
    assert (attachment.get_content_type(), attachment.get_content()) == ("application/pdf", b"%PDF-1.7 test")
    assert job(conn, bad)["status"] == "failed"
    assert "outside the document storage" in job(conn, bad)["last_error"]


FORM_UNTOUCHED: dict = {"to": None, "template": "welcome", "context": {}, "locale": "en", "cc": [], "bcc": [],
                  "reply_to": None, "attachments": []}  # fmt: skip


def test_the_trigger_form_is_made_from_the_payload_model():
    params = SEND_EMAIL.dag.params
    assert set(params) == set(FORM_UNTOUCHED)
    assert {name: params[name] for name in params} == FORM_UNTOUCHED
    template = params.get_param("template")
    # The templates found are offered, not imposed: one added after the DAG file was parsed is
    # taken from the form and the REST API (Airflow validates a run's conf against this schema).
    assert {"welcome", "password_reset", "document_ready", "daily_digest"} <= set(template.schema["examples"])
    assert "enum" not in template.schema
    assert template.resolve("added_since") == "added_since"


def test_a_manual_run_records_its_payload_as_a_job(conn, db_url, smtp):
    waiting = add(conn, "send_email", welcome(1))["id"]
    conf = {**FORM_UNTOUCHED, "to": "ana@example.com", "context": {"name": "Ana"}, "locale": "fr"}
    assert run_chain(db_url, smtp, conf=conf, steps=RENDER) == [{"jobs": 2, "handed_on": 2}]
    manual = next(j for j in all_jobs(conn) if j["id"] != waiting)
    assert (manual["status"], manual["last_worker"], manual["job_key"]) == (
        "running",
        WORKER,
        f"run:{WORKER}",
    )
    assert manual["payload"]["to"] == "ana@example.com"
    # A retried first step adds no second job.
    assert run_chain(db_url, smtp, conf=conf, steps=RENDER) == [{"jobs": 0}]
    run_chain(db_url, smtp, conf=conf, steps=SEND)
    assert len(all_jobs(conn)) == 2
    assert job(conn, manual["id"])["status"] == "completed"


def test_a_manual_run_with_only_the_form_defaults_adds_no_job(conn, db_url, smtp):
    assert run_chain(db_url, smtp, conf=FORM_UNTOUCHED) == [{"jobs": 0}, {"jobs": 0}]
    assert all_jobs(conn) == []


def test_a_manual_run_with_a_bad_payload_fails_and_leaves_a_failed_job(conn, db_url, smtp):
    waiting = add(conn, "send_email", welcome(1))["id"]
    with pytest.raises(RunPayloadRefused, match=r"payload\.to: Field required"):
        run_chain(db_url, smtp, conf={"template": "welcome", "context": {"name": "Ana"}})
    failed = next(j for j in all_jobs(conn) if j["id"] != waiting)
    assert (failed["status"], failed["last_worker"]) == ("failed", WORKER)
    assert "payload.to: Field required" in failed["last_error"]
    assert job(conn, waiting)["status"] == "queued"  # not taken by a run that is failing


def test_a_rest_conf_with_only_some_fields_is_a_payload(conn, db_url, smtp, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    # REST sends only what the caller wrote, even if it equals a form default. The task fails with
    # no retry (AirflowFailException): none could help.
    monkeypatch.setenv("AIRFLOW_CONN_WORKER_DB", db_url)
    run = task_run(WORKER.partition("/")[2], "render", conf={"template": "welcome"})
    with pytest.raises(AirflowFailException, match=r"payload\.to: Field required"):
        run_task(SEND_EMAIL, 0, run)
    assert [j["status"] for j in all_jobs(conn)] == ["failed"]


def test_outcomes_wait_for_a_restarted_database_and_nothing_is_sent_twice(conn, db_url, smtp):
    """The job database drops every connection while messages are being accepted (a restart): the
    outcomes are written on a new connection instead of failing the task, whose retry would send
    again."""
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(30)]
    run_chain(db_url, smtp, steps=RENDER)
    accepted = threading.Event()
    original = smtp.handler.handle_DATA

    async def handle_data(server, session, envelope):
        answer = await original(server, session, envelope)
        if len(smtp.messages) == 10 and not accepted.is_set():
            accepted.set()
            with psycopg.connect(db_url, autocommit=True) as admin:
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = current_database() and pid not in (pg_backend_pid(), %s)",
                    [conn.info.backend_pid],  # the test's own connection stays
                )
        return answer

    smtp.handler.handle_DATA = handle_data
    [summary] = run_chain(db_url, smtp, steps=SEND)
    assert accepted.is_set()
    assert summary == {"jobs": 30, "completed": 30}
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)


def test_a_real_sql_error_while_recording_stops_the_sending(conn, db_url, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(60)]
    run_chain(db_url, smtp, steps=RENDER)
    conn.execute("alter function worker.complete_jobs_each(jsonb, boolean) rename to gone")
    smtp.handler.delay = 0.02  # the first outcomes fail to be written while few messages are out
    with pytest.raises(OutcomeNotRecorded, match="outcome not recorded") as error:
        run_chain(db_url, smtp, steps=SEND, prepared=sending(smtp, sessions=1))
    assert isinstance(error.value.__cause__, psycopg.errors.UndefinedFunction)
    assert 1 <= len(smtp.messages) < len(ids) // 2  # sending stopped once outcomes could not be written
    assert {j["status"] for j in all_jobs(conn)} == {"running"}  # held for the task's retry
