"""The operator of a job type's step: Airflow's PythonOperator, less two calls to the API server per
task that tell nothing.

A step's task takes its jobs from the job database and writes their outcomes there; what it returns
is only its counts (`{"jobs": 500, "completed": 499, "failed": 1}`), which its log says. Pushed as
an XCom, and with the PythonOperator's templated arguments (empty here) stored as rendered fields,
they cost a task two requests through its supervisor (13 ms each in py-spy of 40 e-mail tasks,
besides the API server's CPU and two rows in the metadata database), paid twice per e-mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.providers.standard.operators.python import PythonOperator


class StepOperator(PythonOperator):
    template_fields: Sequence[str] = ()
    template_fields_renderers: ClassVar[dict[str, str]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(do_xcom_push=False, **kwargs)
