"""Per-DAG read permissions for the browser test of the calls page (copied into the test's AIRFLOW_HOME).

``airflow standalone`` always runs Airflow's SimpleAuthManager, which has roles but no per-DAG permissions
(a viewer reads every DAG). To prove that the calls page follows the auth manager's DAG permissions, this
plugin module gives SimpleAuthManager a grant table when it is imported by the API server:
``VOBIZ_TEST_DAG_GRANTS="nina=dag_a|dag_b;..."`` limits each listed user to those DAGs; everyone else is
judged by SimpleAuthManager's roles as before. Airflow's own UI and REST API then hide the other DAGs from
that user too (they ask the same ``is_authorized_dag``).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.plugins_manager import AirflowPlugin

_GRANTS = {
    user: set(dags.split("|"))
    for user, _, dags in (
        item.partition("=") for item in os.environ.get("VOBIZ_TEST_DAG_GRANTS", "").split(";")
    )
    if user
}
_role_based = SimpleAuthManager.is_authorized_dag


def _is_authorized_dag(self: SimpleAuthManager, *, method: Any, user: Any, access_entity: Any = None,
                       details: Any = None) -> bool:  # fmt: skip
    granted = _GRANTS.get(user.username)
    # No DAG named: Airflow asks whether the user may list DAGs at all, then filters them one by one.
    if granted is not None and details is not None and details.id and details.id not in granted:
        return False
    return _role_based(self, method=method, user=user, access_entity=access_entity, details=details)


SimpleAuthManager.is_authorized_dag = _is_authorized_dag  # type: ignore[method-assign]


class VobizTestDagGrants(AirflowPlugin):
    """Listed by ``airflow plugins``, so a run shows the grants were loaded."""

    name = "vobiz_test_dag_grants"
