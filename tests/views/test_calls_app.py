"""The calls page app behind Airflow's authentication: tokens checked by Airflow's own ``get_user``, DAGs
filtered by the auth manager, numbers masked for read-only users, HTML and JSON from the same ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _ledger_helpers import place, store_callback
from _scoped_auth import DagScopedAuthManager
from _suite_secrets import CALLS_PAGE_JWT_SECRET
from airflow.api_fastapi import app as airflow_app
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.phone_masking import mask_number
from vobiz_provider.views.app import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from vobiz_provider.ledger import CallLedger

pytestmark = pytest.mark.airflow_db

REMINDER_TO = "+919876543210"
PAYROLL_TO = "+14155550123"


def _try(dag_id: str, run_id: str = "run-1") -> CorrelationToken:
    return CorrelationToken(dag_id=dag_id, run_id=run_id, task_id="call", map_index=-1, try_number=1)


@pytest.fixture
def auth(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagScopedAuthManager]:
    """The scoped auth manager as Airflow's current one (what ``get_auth_manager()`` returns)."""
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", CALLS_PAGE_JWT_SECRET)
    manager = DagScopedAuthManager()
    monkeypatch.setattr(DagScopedAuthManager, "GRANTS", {"nina": {"reminders"}})
    monkeypatch.setattr(DagScopedAuthManager, "KNOWN_DAGS", {"reminders", "payroll"})
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", manager)
    yield manager


@pytest.fixture
def client(store: CallLedger, auth: DagScopedAuthManager) -> Iterator[TestClient]:
    reminders, payroll = _try("reminders"), _try("payroll")
    place(store, "req-r", [REMINDER_TO], correlation=reminders)
    base = {"CallUUID": "call-r", "RequestUUID": "req-r", "From": "918000000000", "To": REMINDER_TO}
    store_callback(store, "ring", {**base, "Event": "Ring", "CallStatus": "ringing"}, correlation=reminders)
    store_callback(
        store,
        "hangup",
        {**base, "Event": "Hangup", "CallStatus": "busy", "HangupCause": "USER_BUSY", "Duration": "3"},
        correlation=reminders,
    )
    place(store, "req-p", [PAYROLL_TO], correlation=payroll)
    with TestClient(create_app(ledger=store)) as test_client:
        yield test_client


def _token(auth: DagScopedAuthManager, name: str, role: str) -> str:
    return auth.generate_jwt(SimpleAuthManagerUser(username=name, role=role))


def _get(client: TestClient, path: str, token: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers, **kwargs)


@pytest.mark.parametrize(
    "path", ["/", "/api/calls", "/calls/call-r", "/api/calls/call-r", "/api/runs/summary"]
)
def test_anonymous_and_forged_requests_are_refused(client: TestClient, path: str) -> None:
    assert _get(client, path).status_code == 401
    assert _get(client, path, "not-a-jwt").status_code == 403
    client.cookies.set("_token", "not-a-jwt")
    assert client.get(path).status_code == 403


def test_a_user_sees_only_the_calls_of_dags_they_may_read(
    client: TestClient, auth: DagScopedAuthManager
) -> None:
    admin = _token(auth, "ada", "admin")
    nina = _token(auth, "nina", "viewer")
    every = {call["request_uuid"] for call in _get(client, "/api/calls", admin).json()["calls"]}
    assert every == {"req-r", "req-p"}
    hers = _get(client, "/api/calls", nina).json()["calls"]
    assert [call["request_uuid"] for call in hers] == ["req-r"]
    # Asking for the other DAG by name, or for its call, shows nothing.
    assert _get(client, "/api/calls", nina, params={"dag_id": "payroll"}).json()["calls"] == []
    assert _get(client, "/api/calls/req-p", nina).status_code == 404
    assert _get(client, "/api/calls/req-p", admin).status_code == 200
    html = _get(client, "/", nina).text
    assert "req-p" not in html and "payroll" not in html
    assert 'data-call="call-r"' in html
    # The UI's login cookie works like the bearer token.
    client.cookies.set("_token", nina)
    assert client.get("/api/calls").json()["calls"][0]["request_uuid"] == "req-r"


def test_numbers_are_whole_for_editors_and_masked_for_readers(
    client: TestClient, auth: DagScopedAuthManager
) -> None:
    editor = _token(auth, "ed", "user")  # may edit DAGs (PUT)
    reader = _token(auth, "vi", "viewer")
    [edited] = _get(client, "/api/calls", editor, params={"dag_id": "reminders"}).json()["calls"]
    [read] = _get(client, "/api/calls", reader, params={"dag_id": "reminders"}).json()["calls"]
    assert edited["to"] == REMINDER_TO
    assert read["to"] == mask_number(REMINDER_TO) != REMINDER_TO
    page = _get(client, "/calls/call-r", reader).text
    assert REMINDER_TO not in page and mask_number(REMINDER_TO) in page
    detail = _get(client, "/api/calls/call-r", reader).json()
    assert {callback["fields"]["To"] for callback in detail["callbacks"]} == {mask_number(REMINDER_TO)}


def test_filters_detail_and_summary(client: TestClient, auth: DagScopedAuthManager) -> None:
    admin = _token(auth, "ada", "admin")
    busy = _get(client, "/api/calls", admin, params={"status": "busy"}).json()["calls"]
    assert [call["call_uuid"] for call in busy] == ["call-r"]
    assert _get(client, "/api/calls", admin, params={"since": "1h"}).json()["calls"]
    bad = _get(client, "/api/calls", admin, params={"since": "soon"})
    assert bad.status_code == 422 and "invalid age 'soon'" in bad.text
    detail = _get(client, "/api/calls/call-r", admin).json()
    assert [step["step"] for step in detail["timeline"]] == ["queued", "ringing", "hangup USER_BUSY"]
    page = _get(client, "/calls/call-r", admin).text
    assert 'class="timeline"' in page and 'data-step="ringing"' in page and "USER_BUSY" in page
    summary = _get(client, "/api/runs/summary", admin, params={"dag_id": "reminders", "run_id": "run-1"})
    assert summary.json()["outcomes"]["busy"] == 1
    html = _get(client, "/", admin, params={"dag_id": "reminders", "run_id": "run-1"}).text
    assert 'class="run-summary"' in html and 'data-outcome="busy" data-count="1"' in html
