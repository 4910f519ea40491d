"""The Airflow plugin that mounts the callback receiver on the API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from _ledger_helpers import place, token_for
from fastapi import FastAPI

from vobiz_provider.correlation import CorrelationToken, callback_url
from vobiz_provider.ledger import CallLedger
from vobiz_provider.plugins.vobiz import VobizPlugin
from vobiz_provider.signatures import signature_headers

if TYPE_CHECKING:
    from pathlib import Path


def test_plugin_declares_the_receiver_app_at_vobiz() -> None:
    assert VobizPlugin.name == "vobiz"
    entry, calls_page = VobizPlugin.fastapi_apps
    assert (calls_page["url_prefix"], calls_page["name"]) == ("/vobiz-calls", "Vobiz calls")
    assert entry["url_prefix"] == "/vobiz"
    assert entry["name"] == "Vobiz callback receiver"
    app = entry["app"]
    assert isinstance(app, FastAPI)
    # Mounted without authentication: no schema or docs to browse.
    assert (app.openapi_url, app.docs_url, app.redoc_url) == (None, None, None)
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/callbacks/{kind}", "/health"} <= paths


def _json_list(output: str) -> list[dict[str, Any]]:
    """The JSON list of dicts that ``airflow ... --output json`` printed, after any log lines on stdout
    (e.g. ``[warning  ] Please define the 'cli' section ...`` from an older provider at its floor)."""
    decoder = json.JSONDecoder()
    for start in (i for i, char in enumerate(output) if char == "["):
        try:
            value, _ = decoder.raw_decode(output, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            return value
    raise AssertionError(f"no JSON list of objects in the output:\n{output[-2000:]}")


def test_json_list_skips_log_lines_that_start_with_a_bracket() -> None:
    printed = '[warning  ] \nPlease define the \'cli\' section []\n[{"name": "vobiz"}]\n'
    assert _json_list(printed) == [{"name": "vobiz"}]
    with pytest.raises(AssertionError, match="no JSON list"):
        _json_list("[warning  ] nothing else []")


def test_airflow_lists_the_plugin_without_touching_the_store(tmp_path: Path) -> None:
    store_file = tmp_path / "callbacks.db"
    env = {
        **os.environ,
        "AIRFLOW__VOBIZ__CALLBACK_STORE": f"sqlite:///{store_file}",
        # Nothing is read until a callback arrives: no secret is needed to load the plugin.
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
    plugins = _json_list(result.stdout)
    [vobiz] = [plugin for plugin in plugins if plugin["name"] == "vobiz"]
    assert "vobiz_provider.plugins.vobiz:VobizPlugin" in vobiz["source"]
    assert vobiz["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/vobiz", "name": "Vobiz callback receiver"},
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/vobiz-calls", "name": "Vobiz calls"},
    ]
    assert not store_file.exists()


# The Airflow API server's own app (``create_app("core")`` mounts the plugins), served like ``airflow
# api-server`` does: in the server process context, where connections come from the metadata DB.
_API_SERVER = """
import os, sys
os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"  # what airflow/api_fastapi/main.py sets
import uvicorn
from airflow.models.connection import Connection
from airflow.utils.session import create_session

conn_id, token = sys.argv[1], sys.argv[2]
with create_session() as session:
    session.query(Connection).filter(Connection.conn_id == conn_id).delete()
    session.add(Connection(conn_id=conn_id, conn_type="vobiz", login="MA_APISERVER1", password=token))

from airflow.api_fastapi.app import create_app

config = uvicorn.Config(create_app("core"), host="127.0.0.1", port=0, log_level="warning")
sock = config.bind_socket()
sock.listen(config.backlog)  # uvicorn only binds: queue connections until the server runs
print("listening on", sock.getsockname()[1], flush=True)
uvicorn.Server(config).run(sockets=[sock])
"""


@pytest.mark.slow
@pytest.mark.airflow_db
def test_receiver_on_the_api_server_verifies_with_a_metadata_db_connection(
    airflow_db: Path, tmp_path: Path
) -> None:
    conn_id, auth_token, secret = (
        "vobiz_api_server_test",
        "api-server-auth-token",
        "api-server-secret-0123456789abcdef0123",
    )
    public_base = "https://airflow.example.com/vobiz"
    store_url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__VOBIZ__")}
    env.pop(f"AIRFLOW_CONN_{conn_id.upper()}", None)
    env.update(
        {
            "AIRFLOW__VOBIZ__CALLBACK_SECRET": secret,
            "AIRFLOW__VOBIZ__CALLBACK_STORE": store_url,
            "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": public_base,
            "AIRFLOW__VOBIZ__SIGNATURE_CONN_IDS": conn_id,
            # Refuse what cannot be verified: a 200 proves the token was read from the metadata DB.
            "AIRFLOW__VOBIZ__REQUIRE_SIGNATURES": "True",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-c", _API_SERVER, conn_id, auth_token],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        output = []
        for line in process.stdout:  # Airflow logs to stdout too; ends if the process dies
            output.append(line)
            if line.startswith("listening on"):
                break
        assert output and output[-1].startswith("listening on"), "".join(output)[-3000:]
        # Keep draining its logs so a full pipe never blocks the server.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        origin = f"http://127.0.0.1:{int(output[-1].split()[-1])}"
        correlation = CorrelationToken(dag_id="d", run_id="r", task_id="t", conn_id=conn_id)
        token = token_for(correlation, "hangup", secret=secret)
        ledger = CallLedger(store_url)
        place(ledger, "api-server-request", correlation=correlation)  # the operator recorded its call
        ledger.dispose()
        fields = {
            "CallUUID": "api-server-call",
            "RequestUUID": "api-server-request",
            "Event": "Hangup",
            "CallStatus": "completed",
        }
        with httpx.Client(timeout=30) as client:
            health = client.get(f"{origin}/vobiz/health")
            # The calls page on the same server is Airflow's to authenticate: anonymous is refused.
            anonymous_page = client.get(f"{origin}/vobiz-calls/api/calls")
            response = client.post(
                callback_url(f"{origin}/vobiz", "hangup", token),
                data=fields,
                headers=signature_headers(callback_url(public_base, "hangup", token), auth_token),
            )
            forged = client.post(
                callback_url(f"{origin}/vobiz", "hangup", token),
                data={**fields, "CallUUID": "forged-call"},
                headers=signature_headers(callback_url(public_base, "hangup", token), "not-the-token"),
            )
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert health.status_code == 200
    assert anonymous_page.status_code == 401, anonymous_page.text
    assert response.status_code == 200, response.text
    assert forged.status_code == 403
    store = CallLedger(store_url)
    assert [record.call_uuid for record in store.lookup(call_uuids=["api-server-call", "forged-call"])] == [
        "api-server-call"
    ]
    store.dispose()
