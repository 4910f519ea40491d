"""The provider's registration: metadata schema, what ProvidersManager and the UI see, and the CLI."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import airflow
import jsonschema
import pytest

from vobiz_provider import __version__
from vobiz_provider.config import VobizSettings
from vobiz_provider.get_provider_info import get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent
EXPECTED_EXTRAS = {
    "base_url",
    "callback_base_url",
    "timeout",
    "max_retries",
    "cps",
    "timezone",
    "main_account_auth_token",
}


@pytest.fixture(scope="module")
def info() -> dict:
    return get_provider_info()


def test_matches_airflow_runtime_schema(info: dict) -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)


def test_connection_type_matches_the_strict_provider_yaml_schema(info: dict) -> None:
    # provider_info.schema.json does not describe conn-fields / ui-field-behaviour; the provider.yaml
    # schema does, and is what official providers are checked against.
    schema = json.loads((AIRFLOW_DIR / "provider.yaml.schema.json").read_text())
    connection_types_schema = {
        **schema["properties"]["connection-types"],
        "definitions": schema.get("definitions", {}),
    }
    jsonschema.validate(info["connection-types"], connection_types_schema)


def test_connection_form(info: dict) -> None:
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "vobiz"
    assert conn_type["hook-class-name"] == "vobiz_provider.hooks.vobiz.VobizHook"
    assert set(conn_type["conn-fields"]) == EXPECTED_EXTRAS
    behaviour = conn_type["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"login": "Auth ID", "password": "Auth Token"}
    assert {"host", "port", "schema"} <= set(behaviour["hidden-fields"])
    assert "login" not in behaviour["hidden-fields"] and "password" not in behaviour["hidden-fields"]
    fields = conn_type["conn-fields"]
    assert fields["base_url"]["schema"]["default"] == "https://api.vobiz.ai/api/v1"
    assert fields["base_url"]["schema"]["format"] == "url"
    assert fields["timeout"]["schema"]["default"] == 10
    assert fields["max_retries"]["schema"] == {"type": ["integer", "null"], "default": 3, "minimum": 0}
    assert "default" not in fields["cps"]["schema"], "pacing must be off unless cps is set"
    assert fields["timezone"]["schema"]["default"] == "UTC"


def test_integration_names_and_versions(info: dict) -> None:
    assert info["package-name"] == "airflow-provider-vobiz"
    assert info["versions"][0] == __version__
    names = {integration["integration-name"] for integration in info["integrations"]}
    for kind in ("hooks", "operators", "sensors", "triggers"):
        assert {entry["integration-name"] for entry in info[kind]} <= names


def test_config_section_documents_the_receiver_options(info: dict) -> None:
    options = info["config"]["vobiz"]["options"]
    expected = {
        "callback_base_url",
        "callback_secret",
        "callback_store",
        "require_signatures",
        "max_body_bytes",
        "nonce_window",
        "signature_conn_ids",
    }
    assert expected <= set(options)
    assert all(option["description"] for option in options.values())


def test_secrets_are_sensitive_config(info: dict) -> None:
    # The store URL may hold a database password (security review finding 9): hidden in the config view.
    options = info["config"]["vobiz"]["options"]
    sensitive = {name for name, option in options.items() if option.get("sensitive")}
    assert sensitive == {"callback_secret", "callback_secret_fallbacks", "callback_store"}
    (conn_type,) = info["connection-types"]
    assert conn_type["conn-fields"]["main_account_auth_token"]["schema"]["format"] == "password"


def test_every_setting_is_declared_with_its_default(info: dict) -> None:
    options = info["config"]["vobiz"]["options"]
    assert {field.name for field in fields(VobizSettings)} <= set(options)
    defaults = VobizSettings()
    for name in (
        "max_body_bytes",
        "max_callbacks_per_call",
        "nonce_window",
        "poll_interval",
        "callback_rate_limit",
        "callback_rate_burst",
    ):
        assert float(options[name]["default"]) == getattr(defaults, name), name


def _listed_modules(info: dict) -> list[str]:
    modules = [
        module
        for kind in ("hooks", "operators", "sensors", "triggers")
        for e in info[kind]
        for module in e["python-modules"]
    ]
    modules += info["notifications"]
    modules += [plugin["plugin-class"] for plugin in info["plugins"]]
    modules += [conn["hook-class-name"] for conn in info["connection-types"]]
    return modules


@pytest.mark.parametrize("path", _listed_modules(get_provider_info()))
def test_every_listed_module_or_class_is_importable(path: str) -> None:
    # Several of these are written by other people in parallel: this test fails (on purpose) until each
    # listed module exists and imports, so a typo or a missing module cannot ship.
    try:
        importlib.import_module(path)
        return
    except ModuleNotFoundError as exc:
        if exc.name != path:
            raise
    module_name, attr = path.rsplit(".", 1)
    assert hasattr(importlib.import_module(module_name), attr), f"{module_name} has no {attr}"


def test_provider_info_module_does_not_import_airflow() -> None:
    # Airflow imports it while initialising its own configuration: importing Airflow back would recurse.
    code = (
        "import sys, vobiz_provider.get_provider_info as m; m.get_provider_info(); "
        "heavy = ('airflow', 'httpx', 'pydantic'); "
        "print(sorted(n for n in sys.modules if n.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_providers_manager_sees_the_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    pm = ProvidersManager()
    assert pm.providers["airflow-provider-vobiz"].version == __version__
    # What Connection.get_hook() uses on workers and triggerers.
    hook_info = ProvidersManagerTaskRuntime().hooks["vobiz"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "vobiz_provider.hooks.vobiz.VobizHook"
    assert hook_info.connection_id_attribute_name == "vobiz_conn_id"
    assert hook_info.hook_name == "Vobiz"

    widgets = pm._connection_form_widgets_from_metadata
    for name in EXPECTED_EXTRAS:
        assert f"extra__vobiz__{name}" in widgets
    assert widgets["extra__vobiz__base_url"].field["schema"]["title"] == "API base URL"
    sensitive = {name for name, widget in widgets.items() if widget.is_sensitive and "vobiz" in name}
    assert sensitive == {"extra__vobiz__main_account_auth_token"}  # masked in the connection form
    behaviour = pm._field_behaviours_from_metadata["vobiz"]
    assert behaviour["relabeling"] == {"login": "Auth ID", "password": "Auth Token"}


def test_ui_hook_metadata() -> None:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "vobiz"]
    assert meta.hook_name == "Vobiz"
    assert set(meta.extra_fields) == EXPECTED_EXTRAS
    standard = meta.standard_fields
    assert standard.login.title == "Auth ID"
    assert standard.password.title == "Auth Token"
    assert standard.host.hidden is True
    assert standard.port.hidden is True


def _airflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )


def test_cli_lists_the_provider() -> None:
    result = _airflow("providers", "get", "airflow-provider-vobiz", "-o", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-vobiz" in result.stdout
    assert __version__ in result.stdout


@pytest.mark.airflow_db
def test_cli_adds_a_vobiz_connection(airflow_db: Path) -> None:
    conn_id = "vobiz_cli_test"
    result = _airflow(
        "connections",
        "add",
        conn_id,
        "--conn-type",
        "vobiz",
        "--conn-login",
        "MA_CLI",
        "--conn-password",
        "cli-token-123",
        "--conn-extra",
        '{"cps": 2}',
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cli-token-123" not in result.stdout + result.stderr
    # Read it back straight from the metadata DB (one CLI process is slow enough).
    with sqlite3.connect(airflow_db / "airflow.db") as db:
        row = db.execute(
            "SELECT conn_type, login, extra FROM connection WHERE conn_id = ?", (conn_id,)
        ).fetchone()
        db.execute("DELETE FROM connection WHERE conn_id = ?", (conn_id,))
    assert row is not None
    assert row[:2] == ("vobiz", "MA_CLI")
