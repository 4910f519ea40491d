"""Mounts the Vobiz callback receiver on the Airflow API server.

Registered through the ``airflow.plugins`` entry point (always loaded) and the provider info's ``plugins``
list (loaded only with ``[core] lazy_discover_providers = False``); Airflow deduplicates them by name.

The receiver is served at ``/vobiz`` on the API server, so ``[vobiz] callback_base_url`` is
``https://<api server>/vobiz``. Airflow does not authenticate plugin apps: the receiver checks every request
itself (signed correlation token, Vobiz signature). Building the app reads no setting and opens no database:
both happen when the first callback arrives.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from vobiz_provider.receiver.app import MOUNT_PATH, create_app


class VobizPlugin(AirflowPlugin):
    """Serves the Vobiz callback receiver (:func:`~vobiz_provider.receiver.app.create_app`) at ``/vobiz``."""

    name = "vobiz"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": MOUNT_PATH, "name": "Vobiz callback receiver"},
    ]
