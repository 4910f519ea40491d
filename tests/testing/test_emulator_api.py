"""The emulator's REST API over real HTTP: auth, strict paths, validation, limits, variants and reads."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from vobiz_provider.models.errors import parse_error_body
from vobiz_provider.models.responses import (
    Account,
    CallFiredResponse,
    CallUuidList,
    CdrEnvelope,
    CdrPage,
    ConcurrencyInfo,
    LiveCall,
    QueuedCall,
)
from vobiz_provider.testing import CallScript


def _call_path(handle) -> str:
    return f"/Account/{handle.auth_id}/Call/"


# ---------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Auth-ID": "MA_EMULATOR1"},
        {"X-Auth-ID": "MA_EMULATOR1", "X-Auth-Token": "wrong"},
        {"X-Auth-ID": "MA_SOMEONEELSE", "X-Auth-Token": "emulator-auth-token"},
    ],
    ids=["none", "no-token", "wrong-token", "wrong-id"],
)
def test_bad_or_missing_credentials_get_401(emulator, receiver, headers):
    with httpx.Client(base_url=emulator.base_url, headers=headers) as raw:
        response = raw.post(_call_path(emulator), json=receiver.call_body())
    assert response.status_code == 401
    assert response.json()["error"]
    assert emulator.calls == {}


@pytest.mark.parametrize(
    "path",
    ["/account/{aid}/Call/", "/Account/{aid}/call/", "/ACCOUNT/{aid}/CALL/"],
)
def test_wrongly_cased_path_gets_401(emulator, client, receiver, path):
    response = client.post(path.format(aid=emulator.auth_id), json=receiver.call_body())
    assert response.status_code == 401
    assert emulator.calls == {}


def test_post_call_without_trailing_slash_gets_404(emulator, client, receiver):
    response = client.post(f"/Account/{emulator.auth_id}/Call", json=receiver.call_body())
    assert response.status_code == 404
    assert emulator.calls == {}


def test_path_auth_id_other_than_header_gets_404(emulator, client, receiver):
    response = client.post("/Account/MA_SOMEONEELSE/Call/", json=receiver.call_body())
    assert response.status_code == 404


def test_requests_are_recorded_as_received_including_the_token(emulator, client, receiver):
    client.post(_call_path(emulator), json=receiver.call_body())
    (record,) = emulator.requests
    assert record.method == "POST"
    assert record.path == f"/api/v1/Account/{emulator.auth_id}/Call/"
    assert record.headers["x-auth-token"] == emulator.auth_token
    assert record.body["to"] == receiver.call_body()["to"]
    assert record.status == 201


# ---------------------------------------------------------------------------------------------- validation


def test_missing_answer_method_defaults_to_post_as_the_make_call_table_says(emulator, client, receiver):
    """The Make-a-call field table lists ``answer_method`` as optional, default POST."""
    receiver.xml("/answer", "<Response/>")
    response = client.post(_call_path(emulator), json=receiver.call_body(answer_method=None))
    assert response.status_code == 201
    [call] = emulator.calls.values()
    assert call.request.answer_method == "POST"
    emulator.wait_for_call(call.call_uuid)
    [fetch] = [hit for hit in receiver.hits if hit.path == "/answer"]
    assert fetch.method == "POST"


def test_strict_emulator_refuses_a_missing_answer_method_as_the_openapi_spec_does(
    make_emulator, connect, receiver
):
    """``require_answer_method``: the OpenAPI spec, the Fern SDK and the n8n mock make it required."""
    strict = make_emulator(require_answer_method=True)
    client = connect(strict)
    response = client.post(_call_path(strict), json=receiver.call_body(answer_method=None))
    assert response.status_code == 400
    assert "answer_method" in response.json()["error"]
    assert strict.calls == {}
    assert client.post(_call_path(strict), json=receiver.call_body()).status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from", "not-a-number"),
        ("to", "14155550101,14155550102"),
        ("answer_url", "ftp://example.com/x"),
        ("machine_detection_time", 500),
        ("ring_method", "PUT"),
    ],
)
def test_invalid_field_is_400_naming_the_field(emulator, client, receiver, field, value):
    response = client.post(_call_path(emulator), json=receiver.call_body(**{field: value}))
    assert response.status_code == 400
    assert re.search(rf"\b{field}(\[\d+\])?: ", response.json()["error"])


def test_unknown_field_and_python_name_are_refused(emulator, client, receiver):
    body = receiver.call_body(sip_headers="a=b")
    body["from_number"] = body.pop("from")
    message = client.post(_call_path(emulator), json=body).json()["error"]
    assert "sip_headers" in message
    assert "from_number" in message
    assert "from: required" in message


def test_more_than_1000_destinations_is_400(emulator, client, receiver):
    to = "<".join(f"1415555{n:04d}" for n in range(1001))
    response = client.post(_call_path(emulator), json=receiver.call_body(to=to))
    assert response.status_code == 400
    assert "to:" in response.json()["error"]


def test_envelope_error_shape_lists_the_failing_fields(make_emulator, connect, receiver):
    handle = make_emulator(error_shape="envelope")
    response = connect(handle).post(_call_path(handle), json=receiver.call_body(answer_url=None))
    body = response.json()
    assert response.status_code == 400
    assert body["status"] == "error"
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert [e["field"] for e in body["error"]["details"]["errors"]] == ["answer_url"]
    assert "timestamp" in body and body["requestId"].startswith("req_")
    assert "answer_url" in parse_error_body(400, response.content).message


def test_low_balance_is_402(make_emulator, connect, receiver):
    handle = make_emulator(balance=1.5, call_cost=1.0)
    client = connect(handle)
    assert (
        client.post(_call_path(handle), json=receiver.call_body(to="14155550101<14155550102")).status_code
        == 402
    )
    assert client.post(_call_path(handle), json=receiver.call_body()).status_code == 201


# ---------------------------------------------------------------------------------------------- limits


def test_cps_limit_gives_429_with_limit_type_and_retry_after(make_emulator, connect, receiver):
    handle = make_emulator(cps=2, error_shape="envelope", retry_after=1)
    client = connect(handle)
    statuses = [client.post(_call_path(handle), json=receiver.call_body()).status_code for _ in range(2)]
    refused = client.post(_call_path(handle), json=receiver.call_body())
    assert statuses == [201, 201]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    details = refused.json()["error"]["details"]
    assert details["limitType"] == "cps"
    assert details["limit"] == 2
    assert len(handle.calls) == 2


def test_cps_window_slides(make_emulator, connect, receiver):
    handle = make_emulator(cps=1)
    client = connect(handle)
    assert client.post(_call_path(handle), json=receiver.call_body()).status_code == 201
    assert client.post(_call_path(handle), json=receiver.call_body()).status_code == 429
    time.sleep(1.05)  # the behaviour: the 1 s window of the first call passes (time, not a guess)
    assert client.post(_call_path(handle), json=receiver.call_body()).status_code == 201


def test_concurrency_limit_gives_429_flat_without_retry_after(make_emulator, connect, receiver):
    handle = make_emulator(concurrency=1)
    handle.emulator.default_script = CallScript.answered(after=0.01, talk_for=None)
    receiver.xml("/answer", "<Response><Wait length='30'/></Response>")
    client = connect(handle)
    assert client.post(_call_path(handle), json=receiver.call_body()).status_code == 201
    refused = client.post(_call_path(handle), json=receiver.call_body())
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers
    assert set(refused.json()) == {"api_id", "error"}
    assert "concurrency" in refused.json()["error"]
    concurrency = ConcurrencyInfo.model_validate(client.get(f"/Account/{handle.auth_id}/concurrency").json())
    assert (concurrency.concurrent_calls, concurrency.max_concurrent) == (1, 1)


# ---------------------------------------------------------------------------------------------- variants


@pytest.mark.parametrize("status", [200, 201])
def test_success_status_is_switchable(make_emulator, connect, receiver, status):
    handle = make_emulator(success_status=status)
    response = connect(handle).post(_call_path(handle), json=receiver.call_body())
    assert response.status_code == status
    fired = CallFiredResponse.model_validate(response.json())
    assert fired.is_call_fired
    assert fired.request_uuids == list(handle.calls)


def test_bulk_dial_with_str_request_uuid_shares_it_across_calls(emulator, client, receiver):
    response = client.post(_call_path(emulator), json=receiver.call_body(to=["14155550101", "14155550102"]))
    request_uuid = response.json()["request_uuid"]
    assert isinstance(request_uuid, str)
    calls = emulator.emulator.calls_for_request(request_uuid)
    assert sorted(c.to for c in calls) == ["14155550101", "14155550102"]
    assert len({c.call_uuid for c in calls}) == 2
    assert request_uuid not in {c.call_uuid for c in calls}


def test_bulk_dial_with_list_shape_gives_one_uuid_per_destination(make_emulator, connect, receiver):
    handle = make_emulator(request_uuid_shape="list")
    response = connect(handle).post(_call_path(handle), json=receiver.call_body(to="14155550101<14155550102"))
    request_uuids = response.json()["request_uuid"]
    assert isinstance(request_uuids, list) and len(request_uuids) == 2
    assert [handle.calls[u].to for u in request_uuids] == ["14155550101", "14155550102"]


def test_single_destination_request_uuid_is_the_call_uuid(emulator, client, receiver):
    request_uuid = client.post(_call_path(emulator), json=receiver.call_body()).json()["request_uuid"]
    assert list(emulator.calls) == [request_uuid]


# ---------------------------------------------------------------------------------------------- reads


def test_queued_live_get_hangup_and_cdr_flow(emulator, client, receiver):
    emulator.script("14155550101", CallScript.answered(after=0.3, talk_for=None))
    receiver.xml("/answer", "<Response><Wait length='30'/></Response>")
    call_uuid = client.post(_call_path(emulator), json=receiver.call_body()).json()["request_uuid"]
    base = f"/Account/{emulator.auth_id}"

    queued = CallUuidList.model_validate(client.get(f"{base}/Call/", params={"status": "queued"}).json())
    assert queued.calls == [call_uuid]
    one = QueuedCall.model_validate(
        client.get(f"{base}/Call/{call_uuid}/", params={"status": "queued"}).json()
    )
    assert (one.call_uuid, one.to) == (call_uuid, "14155550101")
    assert client.get(f"{base}/Call/{call_uuid}/", params={"status": "live"}).status_code == 404
    assert client.get(f"{base}/cdr/{call_uuid}").status_code == 404
    assert client.get(f"{base}/Call/{call_uuid}/").status_code == 404

    receiver_answered = time.monotonic() + 5
    while emulator.calls[call_uuid].status != "in-progress" and time.monotonic() < receiver_answered:
        time.sleep(0.02)
    live_list = CallUuidList.model_validate(client.get(f"{base}/Call", params={"status": "live"}).json())
    assert live_list.calls == [call_uuid]
    live = LiveCall.model_validate(client.get(f"{base}/Call/{call_uuid}", params={"status": "live"}).json())
    assert (live.call_status, live.from_number) == ("in-progress", "14155550100")
    assert client.get(f"{base}/Call/{call_uuid}/", params={"status": "queued"}).status_code == 404

    assert client.delete(f"{base}/Call/{call_uuid}/").status_code == 204
    assert client.delete(f"{base}/Call/{call_uuid}/").status_code == 404
    emulator.wait_for_call(call_uuid)

    cdr = CdrEnvelope.model_validate(client.get(f"{base}/cdr/{call_uuid}").json()).data
    assert (cdr.uuid, cdr.hangup_cause_code, cdr.hangup_source) == (call_uuid, 4000, "API Request")
    assert cdr.billsec == 60  # rounded up to the 60 s pulse
    assert cdr.duration == cdr.ring_time + cdr.billsec
    final = client.get(f"{base}/Call/{call_uuid}/").json()
    assert (final["call_uuid"], final["hangup_cause_code"]) == (call_uuid, 4000)


def test_delete_unknown_call_is_404(emulator, client):
    assert client.delete(f"/Account/{emulator.auth_id}/Call/nope/").status_code == 404


def test_cdr_list_filters_and_paginates(emulator, client, receiver):
    emulator.emulator.default_script = CallScript.busy(after=0.01)
    for to in ("14155550101", "14155550102", "14155550103"):
        client.post(_call_path(emulator), json=receiver.call_body(to=to))
    emulator.wait_until_idle()
    base = f"/Account/{emulator.auth_id}/cdr"

    page = CdrPage.model_validate(client.get(base, params={"per_page": 2}).json())
    assert (page.count, page.pagination.total, page.pagination.pages, page.pagination.has_next) == (
        2,
        3,
        2,
        True,
    )
    assert page.summary.total_calls == 3 and page.summary.answered_calls == 0
    second = CdrPage.model_validate(client.get(base, params={"per_page": 2, "page": 2}).json())
    assert len(second.data) == 1
    assert {c.uuid for c in page.data + second.data} == set(emulator.calls)

    only = CdrPage.model_validate(client.get(base, params={"to_number": "14155550102"}).json())
    assert [c.destination_number for c in only.data] == ["14155550102"]
    assert only.data[0].hangup_cause_name == "Busy Line"
    none = client.get(base, params={"from_number": "19999999999"}).json()
    assert (none["data"], none["success"]) == ([], True)


def test_auth_me_returns_the_account_with_its_secret_and_limits(make_emulator, connect):
    handle = make_emulator(cps=3, concurrency=4, timezone="Europe/Berlin")
    response = connect(handle).get("/auth/me")
    assert response.json()["auth_secret"] == handle.auth_token
    account = Account.model_validate(response.json())
    assert (account.auth_id, account.cps_limit, account.concurrent_calls_limit) == (handle.auth_id, 3, 4)
    assert account.timezone == "Europe/Berlin"


# ---------------------------------------------------------------------------------------------- faults


def test_fault_without_accept_answers_without_placing_the_call(emulator, client, receiver):
    fault = emulator.inject_fault(status=503, retry_after=2)
    response = client.post(_call_path(emulator), json=receiver.call_body())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert emulator.calls == {}
    assert fault.hits == 1
    assert client.post(_call_path(emulator), json=receiver.call_body()).status_code == 201


def test_accepted_fault_with_delay_places_the_call_but_the_client_times_out(emulator, client, receiver):
    emulator.inject_fault(accept=True, delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        client.post(_call_path(emulator), json=receiver.call_body(), timeout=0.3)
    assert len(emulator.calls) == 1
    (record,) = emulator.requests
    assert record.body["to"] == "14155550101"


def test_accepted_fault_with_status_places_the_call_but_answers_5xx(emulator, client, receiver):
    emulator.inject_fault(accept=True, status=502)
    response = client.post(_call_path(emulator), json=receiver.call_body())
    assert response.status_code == 502
    call_uuid = next(iter(emulator.calls))
    listed = client.get(f"/Account/{emulator.auth_id}/Call/", params={"status": "queued"}).json()["calls"]
    assert call_uuid in listed


def test_fault_only_matches_its_method_and_path(emulator, client):
    emulator.inject_fault(method="GET", path_contains="/auth/me", status=500, count=None)
    assert client.get("/auth/me").status_code == 500
    assert client.get("/auth/me").status_code == 500
    assert client.get(f"/Account/{emulator.auth_id}/concurrency").status_code == 200


def test_injected_429_is_a_rate_limit_error_with_the_faults_retry_after(make_emulator, connect, receiver):
    handle = make_emulator(error_shape="envelope")
    handle.inject_fault(status=429, retry_after=3)
    response = connect(handle).post(_call_path(handle), json=receiver.call_body())
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    parsed = parse_error_body(429, response.content, response.headers)
    assert (parsed.code, parsed.details["limitType"], parsed.retry_after) == (
        "RATE_LIMIT_EXCEEDED",
        "cps",
        3.0,
    )
    assert handle.calls == {}
