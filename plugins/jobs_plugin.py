"""Adds the Jobs page (and its REST API) to Airflow's UI: jobqueue.web, under /jobs."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from jobqueue.web import create_app


class JobsPlugin(AirflowPlugin):
    name = "jobqueue"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/jobs", "name": "Jobs"}]
    external_views = [{"name": "Jobs", "href": "/jobs/", "destination": "nav", "category": "browse"}]
