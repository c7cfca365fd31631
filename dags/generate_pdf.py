"""generate_pdf: jobs `generate_pdf` from the job table, as PDF documents. prepare >> render_pdf >> send.

`send` enqueues the `send_email` job that mails the PDF (when the payload asks for an e-mail).
"""

from __future__ import annotations

from airflow.sdk import dag, task

from jobqueue import document_chain, forms, runs


@dag(**runs.job_dag("generate_pdf", "documents"), params=forms.params(forms.DOCUMENT_FIELDS), doc_md=__doc__)
def generate_pdf():
    @task
    def prepare(**context) -> list[dict]:
        with runs.job_database() as jobs:
            return document_chain.prepare(jobs, runs.worker_id(context), context["dag_run"].conf)

    @task
    def render_pdf(batch: list[dict], **context) -> list[dict]:
        with runs.job_database() as jobs:
            return document_chain.render_pdf(jobs, runs.worker_id(context), batch)

    @task
    def send(rendered: list[dict], **context) -> dict:
        with runs.job_database(autocommit=False) as jobs:
            return document_chain.send(jobs, runs.worker_id(context), rendered)

    send(render_pdf(prepare()))


generate_pdf()
