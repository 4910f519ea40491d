"""The Vobiz connection form as a person sees it: Airflow's React UI in headless Chromium.

Airflow renders the form from the ``conn-fields`` and ``ui-field-behaviour`` that
``get_provider_info()`` declares, so this test reads the expected labels, placeholders, defaults and
descriptions from there and checks the browser shows exactly them; it also pins the concrete relabels
("Auth ID", "Auth Token") that the docs and users rely on. It then saves a connection through the form
and reads it back through the REST API.

Screenshots land in ``test-artifacts/`` at the repository root (kept by CI as artefacts).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from _browser import CHROMIUM_ARGS, screenshot
from playwright.sync_api import Locator, Page, expect, sync_playwright

from vobiz_provider.get_provider_info import get_provider_info

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

# Tall enough for the whole dialog with the extra fields open (the dialog scrolls inside a fixed
# overlay, which a full-page screenshot would not capture).
VIEWPORT = {"width": 1280, "height": 1500}


def _vobiz_connection_type() -> dict[str, Any]:
    [conn_type] = [
        entry for entry in get_provider_info()["connection-types"] if entry["connection-type"] == "vobiz"
    ]
    return conn_type


def _field(dialog: Locator, label: str) -> Locator:
    """The input of the form field labelled ``label``.

    Found through the field group rather than ``get_by_label``: Airflow 3.3 renders the text inputs of
    extra fields with ``id="element_<name>"`` while their ``<label for=...>`` points to another id, so
    those inputs have no accessible name.
    """
    group = dialog.get_by_role("group").filter(
        has=dialog.page.locator("label").get_by_text(label, exact=True)
    )
    expect(group, f"exactly one form field labelled {label!r}").to_have_count(1)
    return group.locator("input, textarea").first


def _screenshot(page: Page, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    return screenshot(page, name, capsys)


def test_vobiz_connection_form_in_the_browser(
    chromium: Path, airflow_api_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn_type = _vobiz_connection_type()
    behaviour = conn_type["ui-field-behaviour"]
    # The declared labels are the ones the docs and users know.
    assert behaviour["relabeling"] == {"login": "Auth ID", "password": "Auth Token"}
    assert set(behaviour["hidden-fields"]) == {"host", "port", "schema"}
    conn_fields: dict[str, dict[str, Any]] = conn_type["conn-fields"]
    assert conn_fields["base_url"]["label"] == "API base URL"
    assert conn_fields["callback_base_url"]["label"] == "Callback base URL"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(30_000)
            try:
                _drive_form(page, airflow_api_server, conn_type, capsys)
            except Exception:
                _screenshot(page, "connection-form-failure.png", capsys)
                raise
        finally:
            browser.close()

    saved = httpx.get(f"{airflow_api_server}/api/v2/connections/vobiz_ui_test", timeout=10)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["conn_type"], body["login"]) == ("vobiz", "MA_UITEST0001")
    assert (body["host"], body["port"], body["schema"]) == (None, None, None)
    # Stored, and masked by the API: the token itself is never shown back.
    assert body["password"] == "***"
    assert "ui-test-auth-token" not in saved.text
    extra = json.loads(body["extra"])
    assert extra["base_url"] == "http://127.0.0.1:9/api/v1"
    assert extra["callback_base_url"] == "https://airflow.example.com/vobiz"
    assert extra["timezone"] == "Asia/Kolkata"


def _drive_form(
    page: Page, base_url: str, conn_type: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    behaviour = conn_type["ui-field-behaviour"]
    relabel, placeholders = behaviour["relabeling"], behaviour["placeholders"]

    # Admin -> Connections -> Add Connection, as a person would get there.
    page.goto(base_url + "/", wait_until="domcontentloaded")
    page.get_by_role("button", name="Admin", exact=True).click()
    page.get_by_role("menuitem", name="Connections", exact=True).click()
    expect(page).to_have_url(f"{base_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Add Connection")).to_be_visible()

    dialog.get_by_label("Connection ID").fill("vobiz_ui_test")
    connection_type = dialog.get_by_role("combobox", name="Connection Type")
    connection_type.fill(conn_type["hook-name"])
    page.get_by_role("option", name=conn_type["hook-name"], exact=True).click()
    expect(dialog.get_by_text(conn_type["hook-name"], exact=True)).to_be_visible()

    # Standard fields: login and password relabelled, with the declared placeholders.
    auth_id = dialog.get_by_label("Auth ID", exact=True)
    auth_token = dialog.get_by_label("Auth Token", exact=True)
    for name, field in (("login", auth_id), ("password", auth_token)):
        expect(dialog.get_by_label(relabel[name], exact=True)).to_be_visible()
        expect(field).to_be_visible()
        expect(field).to_have_attribute("name", name)
        expect(field).to_have_attribute("placeholder", placeholders[name])
    expect(auth_id).to_have_attribute("type", "text")
    expect(auth_token).to_have_attribute("type", "password")
    # Hidden standard fields are not rendered at all, and neither are their default labels.
    for hidden in behaviour["hidden-fields"]:
        expect(dialog.locator(f"[name={hidden}]")).to_have_count(0)
    for default_label in ("Host", "Port", "Schema", "Login", "Password"):
        expect(dialog.locator("label").get_by_text(default_label, exact=True)).to_have_count(0)

    auth_id.fill("MA_UITEST0001")
    auth_token.fill("ui-test-auth-token")
    _screenshot(page, "connection-form.png", capsys)

    # Extra fields: one per conn-field, with the declared label, description and default.
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for key, spec in conn_type["conn-fields"].items():
        field = _field(dialog, spec["label"])
        expect(field).to_be_visible()
        expect(field).to_have_attribute("name", f"element_{key}")
        expect(dialog.get_by_text(spec["description"], exact=True)).to_be_visible()
        default = spec["schema"].get("default")
        expect(field).to_have_value("" if default is None else str(default))
    expect(_field(dialog, "API base URL")).to_have_value("https://api.vobiz.ai/api/v1")

    _field(dialog, "API base URL").fill("http://127.0.0.1:9/api/v1")
    _field(dialog, "Callback base URL").fill("https://airflow.example.com/vobiz")
    _field(dialog, conn_type["conn-fields"]["timezone"]["label"]).fill("Asia/Kolkata")
    _screenshot(page, "connection-form-extra-fields.png", capsys)

    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_text("vobiz_ui_test", exact=True)).to_be_visible()
