"""The "Vobiz call" extra link: from a task instance to the calls page filtered to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from vobiz_provider.views.paths import view_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["VobizCallLink"]


def _root_path() -> str:
    """The path under which the API server is served (``[api] base_url``'s path; ``""`` at the root)."""
    try:
        from urllib.parse import urlsplit

        from airflow.configuration import conf

        return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    except Exception:  # a link must never fail a task
        return ""


class VobizCallLink(BaseOperatorLink):
    """Opens the "Vobiz calls" page filtered to the task instance: its DAG, run, task and map index.

    The URL is relative to the Airflow UI's own origin (prefixed with ``[api] base_url``'s path), so it works
    whatever host name people reach Airflow by.
    """

    name = "Vobiz call"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The calls page filtered to ``ti_key``.

        :param operator: The task.
        :param ti_key: The task instance.
        """
        key: Any = ti_key
        return view_url(
            _root_path(),
            dag_id=key.dag_id,
            run_id=key.run_id,
            task_id=key.task_id,
            map_index=key.map_index,
        )
