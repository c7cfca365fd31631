"""send_email: jobs `send_email` from the job table, as e-mails. prepare >> render >> send.

Runs when the trigger watching the job table says jobs wait; each run claims a batch. Triggered by
hand with a payload (the form, or `conf` over the REST API), the payload becomes a job of the run.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from jobqueue import email_chain, forms, runs


@dag(**runs.job_dag("send_email", "email"), params=forms.params(forms.EMAIL_FIELDS), doc_md=__doc__)
def send_email():
    @task
    def prepare(**context) -> list[dict]:
        with runs.job_database() as jobs:
            return email_chain.prepare(jobs, runs.worker_id(context), context["dag_run"].conf)

    @task
    def render(batch: list[dict], **context) -> list[dict]:
        with runs.job_database() as jobs:
            return email_chain.render(jobs, runs.worker_id(context), batch)

    @task
    def send(rendered: list[dict], **context) -> dict:
        result = email_chain.send_detached(runs.worker_id(context), rendered)
        return email_chain.summary(result)

    send(render(prepare()))


send_email()
