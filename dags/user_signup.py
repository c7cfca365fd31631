"""user_signup: an example of chaining. Each signup job enqueues a `send_email` job (the welcome
e-mail) with jobqueue's Python add_job, in the same transaction that completes it.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from jobqueue import runs, signup


@dag(**runs.job_dag("user_signup", "example"), doc_md=__doc__)
def user_signup():
    @task
    def enqueue_welcome(**context) -> list[int]:
        with runs.job_database(autocommit=False) as jobs:
            return signup.enqueue_welcome(jobs, runs.worker_id(context))

    enqueue_welcome()


user_signup()
