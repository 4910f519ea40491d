"""What one correlation token may send: a token bucket per task try, 429 with ``Retry-After`` beyond it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest
from _ledger_helpers import place, token_for
from pydantic import SecretStr

from vobiz_provider.config import (
    DEFAULT_CALLBACK_RATE_BURST,
    DEFAULT_CALLBACK_RATE_LIMIT,
    VobizSettings,
)
from vobiz_provider.correlation import CorrelationToken, callback_url
from vobiz_provider.receiver.app import create_app
from vobiz_provider.receiver.rate_limit import TokenRateLimiter
from vobiz_provider.receiver.signing_keys import SigningKeyCache, SigningKeys
from vobiz_provider.signatures import signature_headers

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

SECRET = "rate-limit-test-callback-secret-0123456789"
OTHER_SECRET = "another-callback-secret-0123456789abcdef"
AUTH_TOKEN = "rate-limit-test-auth-token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the buckets ---------------------------------------------------------------------------------------------


def test_a_burst_passes_then_the_steady_rate() -> None:
    clock = FakeClock()
    limiter = TokenRateLimiter(clock=clock)
    assert [limiter.acquire("a", rate=2.0, burst=5) for _ in range(5)] == [None] * 5
    wait = limiter.acquire("a", rate=2.0, burst=5)
    assert wait == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a", rate=2.0, burst=5) is None
    assert limiter.acquire("a", rate=2.0, burst=5) == pytest.approx(0.5)
    clock.now += 100  # refills up to the burst, not beyond
    assert [limiter.acquire("a", rate=2.0, burst=5) for _ in range(6)].count(None) == 5


def test_keys_have_their_own_buckets() -> None:
    limiter = TokenRateLimiter(clock=FakeClock())
    assert limiter.acquire("a", rate=1.0, burst=1) is None
    assert limiter.acquire("a", rate=1.0, burst=1) is not None
    assert limiter.acquire("b", rate=1.0, burst=1) is None


def test_full_buckets_are_forgotten() -> None:
    clock = FakeClock()
    limiter = TokenRateLimiter(clock=clock)
    for key in range(100):
        limiter.acquire(key, rate=10.0, burst=10)
    assert len(limiter) == 100
    clock.now += 3600  # every bucket has refilled: keeping it changes nothing
    limiter.acquire("new", rate=10.0, burst=10)
    assert len(limiter) == 1


def test_a_sweep_keeps_each_bucket_by_its_own_rate() -> None:
    # An inbound application's slow bucket must not be forgotten (refilled to its burst) when a try's
    # request, at a faster rate, happens to trigger the sweep.
    clock = FakeClock()
    limiter = TokenRateLimiter(clock=clock)
    assert [limiter.acquire("slow", rate=0.001, burst=2) for _ in range(3)][:2] == [None, None]
    clock.now += 61  # past the sweep interval; "slow" has refilled 0.06 of a token
    assert limiter.acquire("fast", rate=50.0, burst=100) is None
    assert len(limiter) == 2
    assert limiter.acquire("slow", rate=0.001, burst=2) is not None


def test_the_default_lets_a_thousand_destination_call_through() -> None:
    # One Make-Call request with 1,000 destinations shares one token: a ring, an answer and a hangup
    # callback per destination may all arrive within seconds.
    limiter = TokenRateLimiter(clock=FakeClock())
    results = [
        limiter.acquire("call", rate=DEFAULT_CALLBACK_RATE_LIMIT, burst=DEFAULT_CALLBACK_RATE_BURST)
        for _ in range(3000)
    ]
    assert results == [None] * 3000


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"callback_rate_limit": -1.0}, "callback_rate_limit"),
        ({"callback_rate_burst": 0}, "callback_rate_burst"),
    ],
)
def test_invalid_settings_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VobizSettings(**options)


# -- through the receiver ------------------------------------------------------------------------------------


def ti(*, try_number: int = 1, task_id: str = "ring") -> CorrelationToken:
    return CorrelationToken(dag_id="rate", run_id="r1", task_id=task_id, try_number=try_number)


def receiver_client(store: CallLedger, store_url: str, **settings: float) -> httpx.AsyncClient:
    app = create_app(
        settings=VobizSettings(callback_secret=SECRET, callback_store=store_url, **settings),  # type: ignore[arg-type]
        ledger=store,
        signing_keys=SigningKeyCache(
            loader=lambda conn_id: SigningKeys(conn_id=conn_id, auth_token=SecretStr(AUTH_TOKEN))
        ),
        response_deadline=20.0,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver", timeout=30)


async def post_hangup(
    client: httpx.AsyncClient, correlation: CorrelationToken, call_uuid: str, *, store: CallLedger
) -> httpx.Response:
    """The hangup of a call ``correlation``'s try placed (recorded first, as the operator does)."""
    await asyncio.to_thread(place, store, f"req-{call_uuid}", correlation=correlation)
    url = callback_url(
        "http://receiver", "hangup", token_for(correlation, "hangup", secret=SECRET), secret=SECRET
    )
    fields = {
        "CallUUID": call_uuid,
        "RequestUUID": f"req-{call_uuid}",
        "To": "+919876543210",
        "Event": "Hangup",
        "CallStatus": "completed",
        "HangupCauseCode": "4000",
    }
    return await client.post(
        url, data=fields, headers=signature_headers(url, AUTH_TOKEN)
    )  # as Vobiz signs it


def stored(store: CallLedger, *call_uuids: str) -> set[str]:
    return {record.call_uuid for record in store.lookup(call_uuids=list(call_uuids))}


async def test_excess_callbacks_of_one_token_get_429_and_are_not_stored(
    store: CallLedger, store_url: str
) -> None:
    # 0.01 per second: nothing refills while the test runs.
    async with receiver_client(store, store_url, callback_rate_limit=0.01, callback_rate_burst=5) as client:
        burst = [await post_hangup(client, ti(), f"burst-{index}", store=store) for index in range(5)]
        excess = [await post_hangup(client, ti(), f"excess-{index}", store=store) for index in range(3)]
        other_try = await post_hangup(client, ti(try_number=2), "other-try", store=store)
        other_task = await post_hangup(client, ti(task_id="page"), "other-task", store=store)

    assert [response.status_code for response in burst] == [200] * 5
    assert [response.status_code for response in excess] == [429] * 3
    for response in excess:
        assert int(response.headers["Retry-After"]) >= 1
        assert "too many callbacks" in response.json()["detail"]
    assert (other_try.status_code, other_task.status_code) == (200, 200)
    assert stored(store, *(f"burst-{index}" for index in range(5))) == {
        f"burst-{index}" for index in range(5)
    }
    assert stored(store, "excess-0", "excess-1", "excess-2") == set()


async def test_rate_limit_zero_turns_it_off(store: CallLedger, store_url: str) -> None:
    async with receiver_client(store, store_url, callback_rate_limit=0, callback_rate_burst=1) as client:
        responses = [await post_hangup(client, ti(), f"unlimited-{index}", store=store) for index in range(5)]
    assert [response.status_code for response in responses] == [200] * 5


async def test_refused_tokens_do_not_use_up_the_bucket(store: CallLedger, store_url: str) -> None:
    async with receiver_client(store, store_url, callback_rate_limit=0.01, callback_rate_burst=2) as client:
        forged = [
            await client.post(
                callback_url("http://receiver", "hangup", token_for(ti(), "hangup", secret=OTHER_SECRET)),
                data={},
            )
            for _ in range(5)
        ]
        genuine = [await post_hangup(client, ti(), f"genuine-{index}", store=store) for index in range(2)]
    assert [response.status_code for response in forged] == [403] * 5
    assert [response.status_code for response in genuine] == [200] * 2
