"""An auth manager with per-DAG permissions for the calls page's tests: Airflow's SimpleAuthManager (roles)
plus a grant table that limits some users to some DAGs.

SimpleAuthManager itself has roles only (a viewer reads every DAG), so per-DAG denial needs an auth manager
that has it; this one answers ``is_authorized_dag`` from :attr:`GRANTS` for the users listed there and asks
SimpleAuthManager for everyone else. ``get_authorized_dag_ids`` filters a fixed set of known DAGs through
``is_authorized_dag`` exactly as the base class's default does for the DAGs of the metadata database (the
unit tests' database holds no DAGs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser


class DagScopedAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose listed users may read only the DAGs granted to them."""

    GRANTS: ClassVar[dict[str, set[str]]] = {}
    KNOWN_DAGS: ClassVar[set[str]] = set()

    def is_authorized_dag(self, *, method: Any, user: SimpleAuthManagerUser, access_entity: Any = None,
                          details: Any = None) -> bool:  # fmt: skip
        granted = self.GRANTS.get(user.username)
        if granted is not None and (details is None or details.id not in granted):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )

    def get_authorized_dag_ids(self, *, user: Any, method: Any = "GET", session: Any = None) -> set[str]:
        return self.filter_authorized_dag_ids(dag_ids=set(self.KNOWN_DAGS), user=user, method=method)
