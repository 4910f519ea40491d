"""The Airflow plugin that mounts the callback receiver on the API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from fastapi import FastAPI

from vobiz_provider.plugins.vobiz import VobizPlugin

if TYPE_CHECKING:
    from pathlib import Path


def test_plugin_declares_the_receiver_app_at_vobiz() -> None:
    assert VobizPlugin.name == "vobiz"
    [entry] = VobizPlugin.fastapi_apps
    assert entry["url_prefix"] == "/vobiz"
    assert entry["name"] == "Vobiz callback receiver"
    app = entry["app"]
    assert isinstance(app, FastAPI)
    # Mounted without authentication: no schema or docs to browse.
    assert (app.openapi_url, app.docs_url, app.redoc_url) == (None, None, None)
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/callbacks/{kind}", "/health"} <= paths


def test_airflow_lists_the_plugin_without_touching_the_store(tmp_path: Path) -> None:
    store_file = tmp_path / "callbacks.db"
    env = {
        **os.environ,
        "AIRFLOW__VOBIZ__CALLBACK_STORE": f"sqlite:///{store_file}",
        # A store that cannot even be opened: importing the plugin must not try.
        "AIRFLOW__VOBIZ__CALLBACK_SECRET": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "plugins", "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    plugins = json.loads(result.stdout[result.stdout.index("[") :])
    [vobiz] = [plugin for plugin in plugins if plugin["name"] == "vobiz"]
    assert "vobiz_provider.plugins.vobiz:VobizPlugin" in vobiz["source"]
    assert vobiz["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/vobiz", "name": "Vobiz callback receiver"}
    ]
    assert not store_file.exists()
