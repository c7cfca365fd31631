"""A team's own job type on the real stack: one DAG file of a few lines, using only the public
contract (`job_type`, `PermanentJobError`, `ctx`), dropped into the DAG folder, runs its jobs: a
result kept, a plain exception retried (attempts 2), PermanentJobError failing for good with its
message, and a job enqueued through ctx.add_job exactly when its parent completed. The child's
identifier has no job type: the Jobs page says so. A change to the file is parsed again at once.
On the shared stack of tests/e2e/conftest.py."""

from __future__ import annotations

import os
import time
import urllib.request

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.e2e.conftest import API_TIMEOUT, RESIZE_IMAGE, access_token, wait_for

pytestmark = pytest.mark.e2e

JOB = "select status, attempts, last_error, result from worker.jobs where id = %s"
CHILDREN = "select payload->>'image' from worker.jobs where identifier = 'notify' order by id"


def test_a_dag_file_of_a_few_lines_is_a_working_job_type(shared_stack):
    assert len(RESIZE_IMAGE.splitlines()) < 15
    stack, database = shared_stack.stack, shared_stack.database
    with psycopg.connect(database, autocommit=True) as conn:

        def add(payload: dict) -> int:
            return conn.execute(
                "select id from worker.add_job('resize_image', %s)", [Jsonb(payload)]
            ).fetchone()[0]  # type: ignore[index]

        ok = add({"url": "a.png", "width": 800})
        too_wide = add({"url": "b.png", "width": 20_000})
        flaky = add({"url": "flaky", "width": 64})
        first_try = wait_for(
            conn, JOB, [flaky], lambda v: v[0][1] == 1 and v[0][0] == "scheduled", 180, "a retry"
        )
        assert "ConnectionError: image server went away" in first_try[0][2]
        assert "flaky" not in [image for (image,) in conn.execute(CHILDREN).fetchall()]

        done = wait_for(conn, JOB, [flaky], lambda v: v[0][0] == "completed", 120, "the retried job")
        assert done[0][1] == 2 and done[0][3] == {"width": 64, "attempts": 2}
        assert conn.execute(JOB, [ok]).fetchone() == ("completed", 1, None, {"width": 800, "attempts": 1})
        assert conn.execute(JOB, [too_wide]).fetchone()[:3] == ("failed", 25, "width over 10000")  # type: ignore[index]
        # One child for each completed parent, none for the one that failed for good.
        assert sorted(image for (image,) in conn.execute(CHILDREN).fetchall()) == ["a.png", "flaky"]

        # Nothing consumes `notify`: the Jobs page says so, once its jobs have waited a while.
        api = shared_stack.api
        request = urllib.request.Request(
            f"{api}/job-queue/", headers={"Authorization": f"Bearer {access_token(api, stack.password)}"}
        )
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
                page = response.read().decode()
            if "no job type consumes 'notify'" in page or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "no job type consumes 'notify': 2 job(s) waiting" in page
        # Its own trigger says it watches resize_image.
        watched = "select count(*) from worker._consumers where identifier = 'resize_image'"
        assert conn.execute(watched).fetchone() == (1,)

    # A changed DAG file is parsed again at the dag-processor's next look (it goes by the
    # file's mtime), though unchanged files wait min_file_process_interval (600 s). Airflow
    # compares the mtime with the end of the file's last parse: a change written while the file
    # is being parsed (here, likely: the run that failed the too-wide job has its DAG callback
    # run by the dag-processor) is seen only at the file's next change, so it is touched again.
    tagged = RESIZE_IMAGE.replace('@job_type("resize_image")', '@job_type("resize_image", tags=["images"])')
    assert tagged != RESIZE_IMAGE
    changed = shared_stack.tasks / "resize_image.py"
    changed.write_text(tagged)
    metadata = shared_stack.database.replace("/worker", "/airflow")
    with psycopg.connect(metadata, autocommit=True) as meta:
        tags = "select count(*) from dag_tag where dag_id = 'resize_image' and name = 'images'"
        try:
            wait_for(meta, tags, [], lambda v: v[0][0] == 1, 60, "the changed DAG file parsed again")
        except AssertionError:
            os.utime(changed)
            wait_for(meta, tags, [], lambda v: v[0][0] == 1, 60, "the file parsed again, once touched")
