"""Who may do what in the job queue: Airflow's auth manager decides, whichever is configured (the
Simple one's roles, FAB's per-DAG permissions, another), with the meaning it gives its own resources.

A job belongs to the DAG that consumes its identifier: its job type's DAG, named after it.

| in the job queue | asked of the auth manager as |
|---|---|
| read a job and its attempts, lists, counts, a run's tab, live view, charts | reading its runs (GET, RUN) |
| enqueue a job | creating a run of that DAG (POST, RUN) |
| retry, reschedule, cancel (running too), fail: by id or filter | editing that DAG's runs (PUT, RUN) |
| pause, resume, set a rate limit | editing that DAG (PUT) |

Jobs of an identifier that no DAG consumes, and named queues (which may mix identifiers), belong to
no one DAG: they take the right on every DAG Airflow knows. Rights on one DAG cannot cover them, and
an identifier nothing consumes needs someone who sees the whole installation. (Asking with no DAG,
`DagDetails(id=None)`, would not do: to FAB's auth manager a GET without a DAG means "may list the
DAGs", which a user of one DAG may.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from jobqueue.exceptions import AccessRefused

GET, POST, PUT = "GET", "POST", "PUT"


@dataclasses.dataclass(frozen=True)
class Need:
    """What an action needs of the DAG a job belongs to: a method, on its runs or on itself."""

    method: str
    on_runs: bool
    verb: str  # for the refusal: "read", "enqueue", ...


READ = Need(GET, True, "read")
ENQUEUE = Need(POST, True, "enqueue")
ACT = Need(PUT, True, "act on")
CONTROL = Need(PUT, False, "pause, resume or limit")


class Access:
    """One user's rights, asked of the auth manager once per question in a request."""

    def __init__(self, user: Any, auth_manager: Any, dag_ids: frozenset[str]) -> None:
        self.user = user
        self.auth_manager = auth_manager
        self.dag_ids = dag_ids  # the DAGs Airflow knows: an identifier outside them has none
        self.answers: dict[tuple[Need, str | None], bool] = {}

    @classmethod
    def of(cls, user: Any) -> Access:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            dag_ids = frozenset(session.scalars(select(DagModel.dag_id)))
        return cls(user, get_auth_manager(), dag_ids)

    @property
    def name(self) -> str:
        return str(self.user.get_name())

    def may(self, need: Need, identifier: str | None) -> bool:
        """Whether the user may do `need` to jobs of `identifier` (None: a named queue's, which may
        be any DAG's)."""
        if identifier is not None and identifier in self.dag_ids:
            return self._answer(need, identifier)
        return self.everything(need)

    def everything(self, need: Need) -> bool:
        """Whether the user may `need` the jobs of every DAG Airflow knows, and so those of none."""
        if not self.dag_ids:  # nothing to go by but the auth manager's answer for no DAG in particular
            return self._answer(need, None)
        return all(self._answer(need, dag_id) for dag_id in self.dag_ids)

    def _answer(self, need: Need, dag_id: str | None) -> bool:
        if (need, dag_id) not in self.answers:
            self.answers[need, dag_id] = self._ask(need, dag_id)
        return self.answers[need, dag_id]

    def _ask(self, need: Need, dag_id: str | None) -> bool:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

        return bool(
            self.auth_manager.is_authorized_dag(
                method=need.method,
                access_entity=DagAccessEntity.RUN if need.on_runs else None,
                details=DagDetails(id=dag_id),
                user=self.user,
            )
        )

    def require(self, need: Need, identifiers: Iterable[str | None]) -> None:
        """Raises AccessRefused, naming the first identifier the user may not `need`."""
        for identifier in dict.fromkeys(identifiers):
            if self.may(need, identifier):
                continue
            if identifier is None:
                what = "a named queue, whose jobs may be any DAG's: that takes rights on every DAG"
            elif identifier not in self.dag_ids:
                what = f"jobs of {identifier!r}, which no DAG consumes: that takes rights on every DAG"
            else:
                what = f"jobs of {identifier!r}"
            raise AccessRefused(f"{self.name} may not {need.verb} {what}")

    def readable(self) -> list[str] | None:
        """The identifiers whose jobs the user may read; None when every one (no filter)."""
        found = sorted(dag_id for dag_id in self.dag_ids if self._answer(READ, dag_id))
        return None if self.everything(READ) else found

    def allowed(self, need: Need, identifiers: Iterable[str]) -> set[str]:
        return {identifier for identifier in identifiers if self.may(need, identifier)}
