"""The job queue's pages and REST API, served by Airflow's api-server under /job-queue and shown
inside Airflow's UI (see plugins/jobs_plugin.py): the queue (Browse > Job queue), one job, the live
view, and the Jobs tab of every DAG run's page.

    queue.py   the queue as one user may see and steer it: every read and change of the routes goes
               through it, and it asks Airflow's auth manager (jobqueue/access.py) first
    models.py  what the API takes and answers, and the links into Airflow's UI
    api.py     the REST routes (/api/...)
    pages.py   the HTML pages, rendered on the server from include/templates/web

Every route requires Airflow's authentication (a Bearer token, or the UI's session cookie): plugin
routes get none by themselves. A refusal is a 403 that changes nothing; lists and counts hold only
what the user may read, and the pages offer only the actions the user may take. Actions sent with
the cookie must also carry the header `X-Requested-With: jobs-page`, which a cross-site form cannot
send (no CSRF). Each action goes through the SQL admin functions, in one transaction with its record
in worker.job_actions (who, and the reason given).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from jobqueue.exceptions import AccessRefused, JobNotFound, JobQueueError
from jobqueue.web import api, pages
from jobqueue.web.queue import current_access, current_user

__all__ = ["create_app", "current_access"]


def create_app() -> FastAPI:
    app = FastAPI(
        title="Job queue",
        description="The job table (schema worker) of jobqueue: list, inspect, enqueue and act on jobs.",
        dependencies=[Depends(current_user())],
        # FastAPI's own schema and docs routes would skip the app's dependencies: ours below do not.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(AccessRefused, _answer(403))
    app.add_exception_handler(JobNotFound, _answer(404))
    app.add_exception_handler(JobQueueError, _answer(422))  # the job database refused the change

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    app.include_router(api.router, prefix="/api")
    app.include_router(pages.router)  # last: its catch-all /{job_id} after every fixed path
    return app


def _answer(status: int) -> Any:
    def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler
