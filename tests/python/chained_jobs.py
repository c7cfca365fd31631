"""A job type for the kill -9 test of test_job_types: each job enqueues a child, then takes a while."""

from __future__ import annotations

import time

from jobqueue import job_type


@job_type("parent")
def parent(payload: dict, ctx) -> dict:
    child = ctx.add_job("child", {"parent": ctx.job.id}, job_key=f"child:{ctx.job.id}")
    time.sleep(payload.get("pause", 0.05))
    return {"child": child.id}
