"""The async twin against the emulator: same requests, same retries, same send-once semantics."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import pytest
from _client_helpers import CALLER, DESTINATION, FAST, api_requests, live_call_placed_elsewhere

from vobiz_provider.client import AsyncVobizClient
from vobiz_provider.exceptions import (
    VobizAuthError,
    VobizCallOutcomeUnknownError,
    VobizNotFoundError,
    VobizServerError,
)
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def aclient(vobiz_emulator: Any) -> AsyncIterator[AsyncVobizClient]:
    async with AsyncVobizClient(
        auth_id=vobiz_emulator.auth_id,
        auth_token=vobiz_emulator.auth_token,
        base_url=vobiz_emulator.base_url,
        timeout=2.0,
        max_retries=3,
        **FAST,
    ) as client:
        yield client


async def test_endpoints(vobiz_emulator: Any, aclient: AsyncVobizClient, call_request: Any) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=10))

    fired = await aclient.make_call(call_request())
    (uuid,) = fired.request_uuids
    assert uuid in await aclient.list_queued_calls()
    assert await aclient.list_live_calls() == []
    queued = await aclient.get_queued_call(uuid)
    assert (queued.from_number, queued.to) == (CALLER, DESTINATION)
    with pytest.raises(VobizNotFoundError):
        await aclient.get_live_call(uuid)
    assert await aclient.hangup_call(uuid) is True
    account = await aclient.get_account()
    assert account.auth_id == vobiz_emulator.auth_id

    base = f"/api/v1/Account/{vobiz_emulator.auth_id}/Call/"
    seen = [(r.method, r.path, r.query.get("status")) for r in vobiz_emulator.requests]
    assert ("POST", base, None) in seen
    assert ("GET", f"{base}{uuid}/", "queued") in seen
    assert ("DELETE", f"{base}{uuid}/", None) in seen
    assert all(r.headers["x-auth-token"] == vobiz_emulator.auth_token for r in vobiz_emulator.requests)


async def test_cdr_of_an_ended_call(
    vobiz_emulator: Any, aclient: AsyncVobizClient, call_request: Any
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.busy(after=0.01))
    (uuid,) = (await aclient.make_call(call_request())).request_uuids
    await vobiz_emulator.emulator.await_call(uuid)

    cdr = await aclient.get_cdr(uuid)
    assert cdr.uuid == uuid
    page = await aclient.list_cdrs(to_number=DESTINATION)
    assert [record.uuid for record in page.data] == [uuid]


async def test_429_then_success_places_one_call(
    vobiz_emulator: Any, aclient: AsyncVobizClient, call_request: Any
) -> None:
    vobiz_emulator.inject_fault(status=429, retry_after=1)

    fired = await aclient.make_call(call_request())

    assert [p.status for p in api_requests(vobiz_emulator, "POST")] == [429, 201]
    assert list(vobiz_emulator.calls) == fired.request_uuids


async def test_401_fails_at_once(vobiz_emulator: Any) -> None:
    client = AsyncVobizClient(
        auth_id=vobiz_emulator.auth_id, auth_token="wrong-token-1234", base_url=vobiz_emulator.base_url
    )
    async with client:
        with pytest.raises(VobizAuthError) as info:
            await client.get_account()
    assert len(vobiz_emulator.requests) == 1
    assert "wrong-token-1234" not in str(info.value)


async def test_read_timeout_recovers_the_call(vobiz_emulator: Any, call_request: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=10))
    vobiz_emulator.inject_fault(accept=True, delay=1.0)

    client = AsyncVobizClient(
        auth_id=vobiz_emulator.auth_id,
        auth_token=vobiz_emulator.auth_token,
        base_url=vobiz_emulator.base_url,
        timeout=0.3,
        **FAST,
    )
    async with client:
        fired = await client.make_call(call_request())

    (placed,) = vobiz_emulator.calls.values()
    assert fired.request_uuids == [placed.request_uuid]
    assert len(api_requests(vobiz_emulator, "POST")) == 1
    assert any("recovered the call" in r.getMessage() for r in caplog.records)


async def test_read_timeout_after_the_call_ended_is_outcome_unknown(
    vobiz_emulator: Any, call_request: Any
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.failed(after=0.01))
    vobiz_emulator.inject_fault(accept=True, delay=1.0)

    client = AsyncVobizClient(
        auth_id=vobiz_emulator.auth_id,
        auth_token=vobiz_emulator.auth_token,
        base_url=vobiz_emulator.base_url,
        timeout=0.3,
        **FAST,
    )
    async with client:
        with pytest.raises(VobizCallOutcomeUnknownError, match="NOT re-sent"):
            await client.make_call(call_request())
    assert len(api_requests(vobiz_emulator, "POST")) == 1


async def test_an_earlier_live_call_is_ruled_out_and_the_new_call_recovered(
    vobiz_emulator: Any, aclient: AsyncVobizClient, call_request: Any
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=0.01, talk_for=None))
    earlier = live_call_placed_elsewhere(vobiz_emulator, call_request(), started_ago=60)
    vobiz_emulator.inject_fault(accept=True, status=502)  # this call IS placed

    fired = await aclient.make_call(call_request())

    (new,) = set(vobiz_emulator.calls) - {earlier}
    assert fired.request_uuids == [new]
    assert fired.model_extra.get("recovered") is True


async def test_an_earlier_live_call_is_not_taken_for_a_call_that_was_not_placed(
    vobiz_emulator: Any, aclient: AsyncVobizClient, call_request: Any
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=0.01, talk_for=None))
    earlier = live_call_placed_elsewhere(vobiz_emulator, call_request(), started_ago=60)
    vobiz_emulator.inject_fault(status=500)  # this call is NOT placed

    with pytest.raises(VobizCallOutcomeUnknownError) as info:
        await aclient.make_call(call_request())

    assert f"call(s) {earlier} to it were ruled out" in str(info.value)
    assert list(vobiz_emulator.calls) == [earlier]


async def test_connect_refused_is_retried_then_raised(caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = AsyncVobizClient(
        auth_id="MA_CLOSED",
        auth_token="tok-async-999",
        base_url=f"http://127.0.0.1:{port}/api/v1",
        max_retries=2,
        **FAST,
    )
    async with client:
        with pytest.raises(VobizServerError, match="could not be reached") as info:
            await client.list_live_calls()
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2
    assert "tok-async-999" not in str(info.value)
