"""Mounts the Vobiz callback receiver on the Airflow API server.

Registered through the ``airflow.plugins`` entry point (always loaded) and the provider info's ``plugins``
list (loaded only with ``[core] lazy_discover_providers = False``); Airflow deduplicates them by name.

The receiver is served at ``/vobiz`` on the API server, so ``[vobiz] callback_base_url`` is
``https://<api server>/vobiz``. Airflow does not authenticate plugin apps: the receiver checks every request
itself (signed correlation token, Vobiz signature). Building the app reads no setting and opens no database:
both happen when the first callback arrives.

The plugin also serves the "Vobiz calls" page (:mod:`vobiz_provider.views`) at ``/vobiz-calls``, behind
Airflow's own login and DAG permissions, and puts it in the UI's navigation (Browse → Vobiz calls) as an
external view.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from vobiz_provider.receiver.app import MOUNT_PATH, create_app
from vobiz_provider.views.app import create_app as create_calls_app
from vobiz_provider.views.paths import VIEW_PATH


class VobizPlugin(AirflowPlugin):
    """Serves the Vobiz callback receiver (:func:`~vobiz_provider.receiver.app.create_app`) at ``/vobiz``
    and the calls page (:func:`~vobiz_provider.views.app.create_app`) at ``/vobiz-calls``."""

    name = "vobiz"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": MOUNT_PATH, "name": "Vobiz callback receiver"},
        {"app": create_calls_app(), "url_prefix": VIEW_PATH, "name": "Vobiz calls"},
    ]
    external_views = [
        {
            "name": "Vobiz calls",
            "href": f"{VIEW_PATH}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "vobiz-calls",
        },
    ]
