"""Where the calls page is served on the Airflow API server, and how a link filters it."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlencode

__all__ = ["VIEW_PATH", "view_url"]

#: The calls page's mount point on the API server (next to the receiver's ``/vobiz``).
VIEW_PATH: Final = "/vobiz-calls"


def view_url(prefix: str = "", **filters: object) -> str:
    """The calls page's URL with ``filters`` as its query (``None`` values left out).

    :param prefix: What goes before :data:`VIEW_PATH`: the API server's root (``""`` for a link relative to
        the UI's own origin, or a path prefix such as ``/airflow``).
    :param filters: ``dag_id``, ``run_id``, ``task_id``, ``map_index``, ``status``, ``since``...
    """
    query = urlencode({key: str(value) for key, value in filters.items() if value is not None})
    return f"{prefix.rstrip('/')}{VIEW_PATH}/" + (f"?{query}" if query else "")
