"""CPS pacing of POST /Call/: one process-wide schedule per account, shared by sync and async clients."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from _client_helpers import DESTINATION, FAST, api_requests

from vobiz_provider.client import AsyncVobizClient, VobizClient
from vobiz_provider.client.pacing import SLACK, CallPacer
from vobiz_provider.exceptions import VobizRateLimitedError
from vobiz_provider.testing import CallScript

CPS = 5


def _kwargs(emulator: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "auth_id": emulator.auth_id,
        "auth_token": emulator.auth_token,
        "base_url": emulator.base_url,
        "timeout": 5.0,
        "max_retries": 0,  # a 429 would surface as an error instead of being retried away
        **FAST,
        **overrides,
    }


@pytest.fixture
def emulator(vobiz_emulator: Any) -> Any:
    vobiz_emulator.configure(cps=CPS, concurrency=100)
    vobiz_emulator.script(DESTINATION, CallScript.busy(after=0.01))
    return vobiz_emulator


def test_pacer_hands_out_slots_one_interval_apart_per_account() -> None:
    now = [100.0]
    pacer = CallPacer(clock=lambda: now[0])
    interval = (1 + SLACK) / CPS

    waits = [pacer.reserve(base_url="https://a/api/v1", auth_id="MA_1", cps=CPS) for _ in range(4)]
    assert waits == pytest.approx([0, interval, 2 * interval, 3 * interval])
    # Another account (or another API) has its own schedule.
    assert pacer.reserve(base_url="https://a/api/v1", auth_id="MA_2", cps=CPS) == 0
    assert pacer.reserve(base_url="https://b/api/v1", auth_id="MA_1", cps=CPS) == 0
    # Time passing frees slots; an idle account starts again at once.
    now[0] += 10
    assert pacer.reserve(base_url="https://a/api/v1", auth_id="MA_1", cps=CPS) == 0


def test_without_pacing_the_emulator_refuses_a_burst(emulator: Any, call_request: Any) -> None:
    # The control for the tests below: the emulator does enforce its CPS limit.
    with VobizClient(**_kwargs(emulator, cps=None)) as client, pytest.raises(VobizRateLimitedError):
        for _ in range(CPS + 3):
            client.make_call(call_request())


def test_calls_are_paced_to_cps(emulator: Any, call_request: Any) -> None:
    calls = 6
    started = time.monotonic()
    with VobizClient(**_kwargs(emulator, cps=CPS)) as client:
        for _ in range(calls):
            client.make_call(call_request())
    elapsed = time.monotonic() - started

    posts = api_requests(emulator, "POST")
    assert [p.status for p in posts] == [201] * calls, "no 429 from the emulator's CPS limit"
    assert elapsed >= (calls - 1) / CPS  # a behavioural floor, not a timing target


def test_threads_and_event_loop_share_one_schedule(emulator: Any, call_request: Any) -> None:
    # Separate clients, as separate hooks in one worker would have: 3 threads plus 3 async calls.
    errors: list[BaseException] = []

    def sync_call() -> None:
        try:
            with VobizClient(**_kwargs(emulator, cps=CPS)) as client:
                client.make_call(call_request())
        except BaseException as exc:
            errors.append(exc)

    async def async_calls() -> None:
        async with AsyncVobizClient(**_kwargs(emulator, cps=CPS)) as client:
            await asyncio.gather(*(client.make_call(call_request()) for _ in range(3)))

    started = time.monotonic()
    threads = [threading.Thread(target=sync_call) for _ in range(3)]
    for thread in threads:
        thread.start()
    asyncio.run(async_calls())
    for thread in threads:
        thread.join(timeout=10)
    elapsed = time.monotonic() - started

    assert errors == []
    posts = api_requests(emulator, "POST")
    assert [p.status for p in posts] == [201] * 6
    assert elapsed >= 5 / CPS
