"""Puts the job queue inside Airflow's UI (jobqueue.web, mounted at /job-queue).

Browse > Job queue renders the queue inside Airflow's shell (an iframe at /plugin/job-queue), and
every DAG run's page gets a Jobs tab listing the jobs that run worked on. Named "Job queue" and
mounted off /jobs: Airflow's own Browse > Jobs (its scheduler and triggerer jobs) lives there.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from jobqueue.web import create_app

MOUNT = "/job-queue"


class JobsPlugin(AirflowPlugin):
    name = "jobqueue"
    fastapi_apps = [{"app": create_app(), "url_prefix": MOUNT, "name": "Job queue"}]
    external_views = [
        {
            "name": "Job queue",
            "href": f"{MOUNT}/",
            "url_route": "job-queue",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Jobs",
            "href": f"{MOUNT}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "url_route": "job-queue-run",
            "destination": "dag_run",
        },
    ]
