"""Who is asking, which DAGs' calls they may see, and whether they see phone numbers whole.

Airflow does not authenticate plugin apps, so every route of the calls page depends on :func:`current_user`,
which hands the request to Airflow's own ``get_user`` (``airflow.api_fastapi.core_api.security``): the
``Authorization: Bearer`` token of the REST API, or the ``_token`` cookie the UI's login sets. No token →
401; a bad one → 403 (Airflow's answers).

What a user may see is the auth manager's business (``[core] auth_manager``): the page lists the calls of
the DAGs ``get_authorized_dag_ids(method="GET")`` returns, and nothing else; a call of another DAG is "not
found" to them. Calls of a DAG the metadata database no longer knows are shown to nobody on the page (the
CLI, which reads the store directly, still lists them).

Phone numbers (personal data) follow one rule: a user who may **edit** the DAG (``method="PUT"``: the
people who run it, and admins) sees its numbers whole; a read-only user sees them masked as the logs do
(:mod:`vobiz_provider.phone_masking`), unless ``[vobiz] mask_phone_numbers`` is off, in which case logs and
page alike show them whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vobiz_provider.phone_masking import mask_number, masking_enabled

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

__all__ = ["Viewer", "current_user", "viewer_of"]

_bearer = HTTPBearer(auto_error=False)
_BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def current_user(request: Request, bearer: _BearerDep) -> Any:
    """The Airflow user making the request, as Airflow's API authenticates it (401/403 otherwise).

    Imported when a request comes, not when the plugin loads: the security module pulls in the API
    server's models, which the other processes that load plugins do not need.

    :param request: The request.
    :param bearer: Its ``Authorization: Bearer`` credentials, if any.
    """
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, bearer_credentials=bearer)


def _auth_manager() -> BaseAuthManager[Any]:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


@dataclass(frozen=True)
class Viewer:
    """What one user may see on the calls page.

    :param name: The user's name.
    :param readable_dag_ids: The DAGs whose calls they may see.
    :param editable_dag_ids: The DAGs whose numbers they see whole.
    :param masking: Whether ``[vobiz] mask_phone_numbers`` is on.
    """

    name: str
    readable_dag_ids: frozenset[str]
    editable_dag_ids: frozenset[str]
    masking: bool = True

    def may_read(self, dag_id: str | None) -> bool:
        """Whether the user may see the calls of ``dag_id``."""
        return dag_id is not None and dag_id in self.readable_dag_ids

    def number(self, value: str | None, dag_id: str | None) -> str:
        """A phone number of a call of ``dag_id`` as this user may see it."""
        if value is None:
            return ""
        if not self.masking or (dag_id is not None and dag_id in self.editable_dag_ids):
            return value
        return mask_number(value)


def viewer_of(user: Any) -> Viewer:
    """The :class:`Viewer` of an authenticated Airflow user, from the auth manager's DAG permissions.

    Blocking (it reads the metadata database): call it from a sync route (FastAPI's thread pool).

    :param user: The user :func:`current_user` returned.
    """
    manager = _auth_manager()
    readable = frozenset(manager.get_authorized_dag_ids(user=user, method="GET"))
    editable = frozenset(manager.get_authorized_dag_ids(user=user, method="PUT")) & readable
    return Viewer(
        name=str(user.get_name()),
        readable_dag_ids=readable,
        editable_dag_ids=editable,
        masking=masking_enabled(),
    )
