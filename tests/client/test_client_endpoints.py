"""Every endpoint of the sync client against the emulator, over real HTTP: paths, headers, bodies, models."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from _client_helpers import CALLER, DESTINATION, api_requests, wait_for

from vobiz_provider import __version__
from vobiz_provider.exceptions import VobizNotFoundError
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from vobiz_provider.client import VobizClient


@pytest.mark.parametrize("success_status", [201, 200])
def test_make_call_accepts_200_and_201(
    vobiz_emulator: Any, client: VobizClient, call_request: Any, success_status: int
) -> None:
    vobiz_emulator.configure(success_status=success_status)

    fired = client.make_call(call_request())

    (post,) = api_requests(vobiz_emulator, "POST")
    assert post.status == success_status
    assert fired.is_call_fired
    (uuid,) = fired.request_uuids
    assert vobiz_emulator.calls[uuid].to == DESTINATION


def test_make_call_request_is_exactly_as_documented(
    vobiz_emulator: Any, client: VobizClient, call_request: Any, answer_url: str
) -> None:
    client.make_call(call_request(ring_timeout=30))

    (post,) = api_requests(vobiz_emulator, "POST")
    assert post.path == f"/api/v1/Account/{vobiz_emulator.auth_id}/Call/"
    assert post.headers["x-auth-id"] == vobiz_emulator.auth_id
    assert post.headers["x-auth-token"] == vobiz_emulator.auth_token
    assert post.headers["user-agent"] == f"airflow-provider-vobiz/{__version__}"
    assert post.headers["content-type"] == "application/json"
    assert post.body == {
        "from": CALLER,
        "to": DESTINATION,
        "answer_url": answer_url,
        "answer_method": "POST",
        "ring_timeout": 30,
    }


@pytest.mark.parametrize("shape", ["str", "list"])
def test_bulk_call_request_uuid_as_string_or_list(
    vobiz_emulator: Any, client: VobizClient, call_request: Any, shape: str
) -> None:
    vobiz_emulator.configure(request_uuid_shape=shape)

    fired = client.make_call(call_request(to=["14155550111", "14155550112"]))

    (post,) = api_requests(vobiz_emulator, "POST")
    assert post.body["to"] == "14155550111<14155550112"
    if shape == "list":
        assert isinstance(fired.request_uuid, list)
        assert len(fired.request_uuids) == 2
        assert {vobiz_emulator.calls[u].to for u in fired.request_uuids} == {"14155550111", "14155550112"}
    else:
        assert isinstance(fired.request_uuid, str)
        assert fired.request_uuids == [fired.request_uuid]
        assert {c.request_uuid for c in vobiz_emulator.calls.values()} == {fired.request_uuid}


def test_queued_call(vobiz_emulator: Any, client: VobizClient, call_request: Any) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=20))
    (uuid,) = client.make_call(call_request()).request_uuids

    assert uuid in client.list_queued_calls()
    queued = client.get_queued_call(uuid)
    assert queued.call_uuid == uuid
    assert queued.to == DESTINATION
    assert queued.from_number == CALLER
    with pytest.raises(VobizNotFoundError, match="404"):
        client.get_live_call(uuid)
    assert uuid not in client.list_live_calls()

    paths = {(r.path, r.query.get("status")) for r in api_requests(vobiz_emulator, "GET")}
    base = f"/api/v1/Account/{vobiz_emulator.auth_id}/Call/"
    assert (base, "queued") in paths
    assert (f"{base}{uuid}/", "queued") in paths
    assert (f"{base}{uuid}/", "live") in paths


def test_live_call_hangup_and_cdr(vobiz_emulator: Any, client: VobizClient, call_request: Any) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=0.01, talk_for=None))
    (uuid,) = client.make_call(call_request()).request_uuids
    wait_for(lambda: vobiz_emulator.calls[uuid].status == "in-progress", what="the call to be answered")

    assert uuid in client.list_live_calls()
    live = client.get_live_call(uuid)
    assert live.call_uuid == uuid
    assert live.call_status == "in-progress"
    assert (live.from_number, live.to) == (CALLER, DESTINATION)
    with pytest.raises(VobizNotFoundError, match="CDR exists only once the call has ended"):
        client.get_cdr(uuid)

    assert client.hangup_call(uuid) is True
    (delete,) = api_requests(vobiz_emulator, "DELETE")
    assert delete.path == f"/api/v1/Account/{vobiz_emulator.auth_id}/Call/{uuid}/"
    assert delete.status == 204
    wait_for(lambda: vobiz_emulator.calls[uuid].finished, what="the call to end")
    assert client.hangup_call(uuid) is False, "a call that is gone answers 404, reported as False"

    cdr = client.get_cdr(uuid)
    assert cdr.uuid == uuid
    assert cdr.hangup_cause_code == vobiz_emulator.calls[uuid].hangup_cause_code
    assert api_requests(vobiz_emulator, "GET", f"/cdr/{uuid}")[-1].path == (
        f"/api/v1/Account/{vobiz_emulator.auth_id}/cdr/{uuid}"
    )

    page = client.list_cdrs(to_number=DESTINATION, per_page=10)
    assert uuid in [record.uuid for record in page.data]
    cdr_list = api_requests(vobiz_emulator, "GET", "/cdr")[-1]
    assert cdr_list.path == f"/api/v1/Account/{vobiz_emulator.auth_id}/cdr"
    assert cdr_list.query == {"to_number": DESTINATION, "per_page": "10"}


def test_get_account(vobiz_emulator: Any, client: VobizClient, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)

    account = client.get_account()

    assert account.auth_id == vobiz_emulator.auth_id
    assert account.cps_limit == vobiz_emulator.emulator.settings.cps
    # The emulator's auth_secret equals its token: the body is neither shown nor logged.
    assert vobiz_emulator.auth_token not in repr(account)
    assert vobiz_emulator.auth_token not in caplog.text
    assert "GET /auth/me -> 200" in caplog.text
    (request,) = vobiz_emulator.requests
    assert request.path == "/api/v1/auth/me"


def test_unknown_call_is_not_found_and_hangup_of_unknown_call_is_false(client: VobizClient) -> None:
    with pytest.raises(VobizNotFoundError) as info:
        client.get_queued_call("0d5e2b62-0000-4000-8000-000000000000")
    assert info.value.status_code == 404
    assert client.hangup_call("0d5e2b62-0000-4000-8000-000000000000") is False
