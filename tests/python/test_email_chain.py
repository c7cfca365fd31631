"""The send_email steps against a real PostgreSQL and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import contextlib
import json
import smtplib

import psycopg
import pytest

from jobqueue import email_chain
from jobqueue.manager import JobManager
from tests.helpers import add, all_jobs, job
from tests.smtp import SmtpServer

WORKER = "send_email/manual__test"


@pytest.fixture
def jobs(conn):
    return JobManager(conn)


def connect_to(server: SmtpServer):
    return lambda: contextlib.closing(smtplib.SMTP("127.0.0.1", server.port, timeout=10))


def run_chain(jobs, server):
    batch = email_chain.prepare(jobs, WORKER)
    rendered = email_chain.render(jobs, WORKER, batch)
    return email_chain.send_batch(jobs, WORKER, rendered, connect=connect_to(server))


def welcome(n: int) -> dict:
    return {"to": f"user{n}@example.com", "template": "welcome", "context": {"name": f"User {n}"}}


def test_a_batch_is_delivered_and_completed(conn, jobs, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(20)]
    result = run_chain(jobs, smtp)
    assert sorted(result.sent) == ids
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
    done = job(conn, ids[0])
    assert done["result"] == {"message_id": f"<job-{ids[0]}@localhost>"}
    assert done["last_worker"] == WORKER
    recipients, message = smtp.messages[0]
    assert recipients == [message["To"]]


def test_bad_payloads_fail_for_good_and_the_batch_goes_on(conn, jobs, smtp):
    good = add(conn, "send_email", welcome(1))["id"]
    no_to = add(conn, "send_email", {"template": "welcome"})["id"]
    no_var = add(conn, "send_email", {"to": "a@example.com", "template": "password_reset"})["id"]
    injected = add(conn, "send_email", {**welcome(2), "context": {"name": "x\r\nBcc: victim@example.com"}})[
        "id"
    ]
    run_chain(jobs, smtp)
    assert job(conn, good)["status"] == "completed"
    for job_id, problem in [
        (no_to, "payload.to: Field required"),
        (no_var, "'name' is undefined"),
        (injected, "line break"),
    ]:
        failed = job(conn, job_id)
        assert failed["status"] == "failed", failed
        assert problem in failed["last_error"]
        # Failed for good after one run, not retried: retrying cannot fix it, so no attempts are left.
        assert failed["attempts"] == failed["max_attempts"] == 25
    assert len(smtp.messages) == 1


def test_smtp_down_means_retry_then_delivery_once(conn, jobs, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(5)]
    smtp.stop()
    run_chain(jobs, smtp)
    for job_id in ids:
        waiting = job(conn, job_id)
        assert waiting["status"] == "scheduled"
        assert "SMTP server unreachable" in waiting["last_error"]
    smtp.start()
    conn.execute("update worker._jobs set run_at = now() where id = any(%s)", [ids])
    run_chain(jobs, smtp)
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)


def test_a_retried_send_task_never_sends_twice(conn, jobs, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(3)]
    rendered = email_chain.render(jobs, WORKER, email_chain.prepare(jobs, WORKER))
    email_chain.send_batch(jobs, WORKER, rendered, connect=connect_to(smtp))
    again = email_chain.send_batch(jobs, WORKER, rendered, connect=connect_to(smtp))
    assert again.sent == []
    assert len(smtp.messages) == len(ids)


def test_a_large_batch_goes_over_several_sessions_each_message_once(conn, jobs, smtp, monkeypatch):
    monkeypatch.setenv("WORKER_SMTP_SESSIONS", "4")
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(120)]
    result = run_chain(jobs, smtp)
    assert sorted(result.sent) == ids
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)
    assert len(smtp.handler.peers) == 4
    done = conn.execute(
        "select count(*) from worker.jobs where id = any(%s) and status = 'completed'"
        " and result->>'message_id' = '<job-' || id || '@localhost>'",
        [ids],
    ).fetchone()[0]
    assert done == len(ids)


def test_a_session_that_loses_its_connection_leaves_its_messages_to_the_others(conn, jobs, smtp, monkeypatch):
    monkeypatch.setenv("WORKER_SMTP_SESSIONS", "3")
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

    batch = email_chain.prepare(jobs, WORKER)
    rendered = email_chain.render(jobs, WORKER, batch)
    result = email_chain.send_batch(jobs, WORKER, rendered, connect=connect)
    assert len(result.retry) == 1  # the message the dead session had taken
    assert sorted(result.sent + list(result.retry)) == ids
    assert len(smtp.messages) == len(ids) - 1
    (retried,) = result.retry
    assert job(conn, retried)["status"] == "scheduled"
    assert "SMTP connection lost" in job(conn, retried)["last_error"]


def test_every_session_lost_means_the_rest_waits_for_a_retry(conn, jobs, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(5)]

    @contextlib.contextmanager
    def connect():
        client = smtplib.SMTP("127.0.0.1", smtp.port, timeout=10)
        client.close()
        yield client

    rendered = email_chain.render(jobs, WORKER, email_chain.prepare(jobs, WORKER))
    result = email_chain.send_batch(jobs, WORKER, rendered, connect=connect)
    assert sorted(result.retry) == ids
    assert {job(conn, i)["status"] for i in ids} == {"scheduled"}
    assert smtp.messages == []


def test_a_retried_prepare_takes_back_what_it_held(conn, jobs, smtp):
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(3)]
    first = email_chain.prepare(jobs, WORKER)
    second = email_chain.prepare(jobs, WORKER)  # the task retried: XCom of the first try is lost
    assert [item["job_id"] for item in second] == [item["job_id"] for item in first] == ids


def test_a_refused_recipient_fails_only_that_job(conn, jobs, smtp, monkeypatch):
    ok = add(conn, "send_email", welcome(1))["id"]
    refused = add(conn, "send_email", {**welcome(2), "to": "nobody@refused.example"})["id"]

    original = smtp.handler.handle_DATA

    async def handle_rcpt(server, session, envelope, address, options):
        if address.endswith("@refused.example"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    smtp.handler.handle_RCPT = handle_rcpt
    smtp.handler.handle_DATA = original
    run_chain(jobs, smtp)
    assert job(conn, ok)["status"] == "completed"
    failed = job(conn, refused)
    assert failed["status"] == "failed"
    assert "nobody@refused.example (550" in failed["last_error"]


def test_a_full_batch_asks_for_another_run(conn, jobs, db_url, monkeypatch):
    monkeypatch.setenv("WORKER_BATCH_SIZE", "2")
    for n in range(3):
        add(conn, "send_email", welcome(n))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen worker_jobs")
        assert len(email_chain.prepare(jobs, WORKER)) == 2
        notes = [json.loads(n.payload) for n in listener.notifies(timeout=0.3)]
    assert notes == [["send_email"]]
    assert sum(1 for j in all_jobs(conn) if j["status"] == "queued") == 1


def test_attachment_from_storage(conn, jobs, smtp, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_STORAGE_URL", f"file://{tmp_path}")
    (tmp_path / "invoices").mkdir()
    (tmp_path / "invoices" / "f-42.pdf").write_bytes(b"%PDF-1.7 test")
    payload = {**welcome(1), "attachments": [{"url": "invoices/f-42.pdf", "filename": "facture-42.pdf"}]}
    escape = {**welcome(2), "attachments": [{"url": "../../etc/passwd", "filename": "passwd.txt"}]}
    ok, bad = add(conn, "send_email", payload)["id"], add(conn, "send_email", escape)["id"]
    run_chain(jobs, smtp)
    assert job(conn, ok)["status"] == "completed"
    [attachment] = list(smtp.messages[0][1].iter_attachments())
    assert (attachment.get_content_type(), attachment.get_content()) == ("application/pdf", b"%PDF-1.7 test")
    assert job(conn, bad)["status"] == "failed"
    assert "outside the document storage" in job(conn, bad)["last_error"]


def test_a_manual_run_records_its_payload_as_a_job(conn, jobs, smtp):
    waiting = add(conn, "send_email", welcome(1))["id"]
    conf: dict = {"to": "ana@example.com", "template": "welcome", "context": {"name": "Ana"}, "locale": "fr",
            "cc": [], "bcc": [], "reply_to": None, "attachments": []}  # fmt: skip
    batch = email_chain.prepare(jobs, WORKER, conf)
    manual = job(conn, next(item["job_id"] for item in batch if item["job_id"] != waiting))
    assert (manual["status"], manual["last_worker"], manual["job_key"]) == (
        "running",
        WORKER,
        f"run:{WORKER}",
    )
    assert manual["payload"]["to"] == "ana@example.com"
    # The run takes the waiting jobs too, and a retried prepare adds no second job.
    assert len(batch) == 2
    assert len(email_chain.prepare(jobs, WORKER, conf)) == 2
    assert len(all_jobs(conn)) == 2


def test_a_manual_run_with_only_the_form_defaults_adds_no_job(conn, jobs):
    conf: dict = {"to": None, "template": "welcome", "context": {}, "locale": "en", "cc": [], "bcc": [],
            "reply_to": None, "attachments": []}  # fmt: skip
    assert email_chain.prepare(jobs, WORKER, conf) == []
    assert all_jobs(conn) == []


def test_a_manual_run_with_a_bad_payload_fails_and_leaves_a_failed_job(conn, jobs):
    from airflow.sdk.exceptions import AirflowFailException

    waiting = add(conn, "send_email", welcome(1))["id"]
    with pytest.raises(AirflowFailException, match=r"payload\.to: Field required"):
        email_chain.prepare(jobs, WORKER, {"template": "welcome", "context": {"name": "Ana"}})
    failed = next(j for j in all_jobs(conn) if j["id"] != waiting)
    assert (failed["status"], failed["last_worker"]) == ("failed", WORKER)
    assert "payload.to: Field required" in failed["last_error"]
    assert job(conn, waiting)["status"] == "queued"  # not taken by a run that is failing


def test_a_rest_conf_with_only_some_fields_is_a_payload(conn, jobs):
    from airflow.sdk.exceptions import AirflowFailException

    # REST sends only what the caller wrote, even if it equals a form default.
    with pytest.raises(AirflowFailException, match=r"payload\.to: Field required"):
        email_chain.prepare(jobs, WORKER, {"template": "welcome"})
    assert [j["status"] for j in all_jobs(conn)] == ["failed"]


def test_completions_wait_for_a_restarted_database_and_nothing_is_sent_twice(conn, jobs, smtp, db_url):
    """The job database goes away while messages are being accepted (a restart): the completions
    are retried on a new connection instead of failing the task, whose retry would send again."""
    ids = [add(conn, "send_email", welcome(n))["id"] for n in range(30)]
    rendered = email_chain.render(jobs, WORKER, email_chain.prepare(jobs, WORKER))

    class Restarting(JobManager):
        failures = 1

        def complete_each(self, results):
            if Restarting.failures:
                Restarting.failures -= 1
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return super().complete_each(results)

    reconnected = []

    @contextlib.contextmanager
    def reconnect():
        with psycopg.connect(db_url, autocommit=True) as fresh:
            reconnected.append(fresh)
            yield JobManager(fresh)

    result = email_chain.send_batch(
        Restarting(conn), WORKER, rendered, connect=connect_to(smtp), reconnect=reconnect
    )
    assert sorted(result.sent) == ids
    assert len(reconnected) == 1
    assert {job(conn, i)["status"] for i in ids} == {"completed"}
    assert sorted(smtp.message_ids()) == sorted(f"<job-{i}@localhost>" for i in ids)


def test_a_real_sql_error_in_completions_is_not_retried(conn, jobs, smtp):
    add(conn, "send_email", welcome(1))
    rendered = email_chain.render(jobs, WORKER, email_chain.prepare(jobs, WORKER))

    class Broken(JobManager):
        def complete_each(self, results):
            raise psycopg.errors.UndefinedFunction("worker.complete_jobs does not exist")

    with pytest.raises(psycopg.errors.UndefinedFunction):
        email_chain.send_batch(Broken(conn), WORKER, rendered, connect=connect_to(smtp), reconnect=None)
