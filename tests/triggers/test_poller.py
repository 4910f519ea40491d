"""The shared poller: one store query per interval for every waiting trigger of an event loop."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from _waiting import async_wait_until
from trigger_support import deliver, hangup_form, new_uuid

from vobiz_provider.ledger import schema
from vobiz_provider.triggers.hangup import VobizCallHangupTrigger
from vobiz_provider.triggers.poller import SharedPoller, subscribe

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vobiz_provider.ledger import CallLedger

WAITERS = 1000
INTERVAL = 0.5


@pytest.fixture
def statements(store: CallLedger) -> Iterator[list[str]]:
    """Every SQL statement the store's engine sends from now on."""
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", listener)


def lookups(statements: list[str]) -> int:
    """The call look-ups among the statements (BEGIN, PRAGMAs and last_callback_at excluded)."""
    return sum(1 for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM vobiz_calls" in s)


async def first_event(trigger: VobizCallHangupTrigger) -> dict[str, Any]:
    events = trigger.run()
    try:
        return (await anext(events)).payload
    finally:
        await events.aclose()


async def test_thousand_waiting_triggers_cost_one_query_per_interval(
    store: CallLedger, statements: list[str], record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = [new_uuid() for _ in range(WAITERS)]
    destinations = [f"+91900{i:07d}" for i in range(WAITERS)]
    # The operator records each fired call, so every look-up finds (and fans out) 1,000 queued records.
    await asyncio.to_thread(store.register_fired_calls, request_uuids=requests, destinations=destinations)
    deadline = time.time() + 60
    triggers = [
        VobizCallHangupTrigger(
            request_uuids=[request],
            destinations=[destination],
            deadline=deadline,
            poll_interval=INTERVAL,
        )
        for request, destination in zip(requests, destinations, strict=True)
    ]
    # A ticker measures how long the event loop is kept from running other coroutines.
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    url = store.url.render_as_string(hide_password=False)
    loop = asyncio.get_running_loop()

    def poller_of_the_loop() -> SharedPoller | None:
        return SharedPoller._registry.get(loop, {}).get(url)

    def everyone_subscribed_and_loaded() -> bool:
        poller = poller_of_the_loop()
        return poller is not None and poller.subscriber_count == WAITERS and not poller._pending

    tasks = [asyncio.create_task(first_event(trigger)) for trigger in triggers]
    await async_wait_until(everyone_subscribed_and_loaded, what="1,000 triggers subscribed and loaded")
    poller = poller_of_the_loop()
    assert poller is not None
    ticking = asyncio.create_task(ticker())
    statements.clear()
    started = time.monotonic()
    # Measure over the time of 8 intervals at least: count the look-ups of a window that ends when the
    # 8th has been made (however slow the machine), then compare them with the time it took.
    await async_wait_until(lambda: lookups(statements) >= 8, timeout=120, what="8 look-ups")
    elapsed = time.monotonic() - started
    queries = lookups(statements)
    steady_gap = max(gaps)

    assert poller.subscriber_count == WAITERS
    assert not any(task.done() for task in tasks)
    # One query per interval for all 1,000 (a per-trigger poll would be ~10,000 here); the slack covers
    # a tick that straddles the window edges. A slow machine makes fewer look-ups, never more.
    assert queries <= elapsed / INTERVAL + 2
    per_interval = queries / (elapsed / INTERVAL)

    # Every call hangs up at once (one UPDATE, standing in for 1,000 hangup callbacks; like every write of
    # the store it stamps updated_at): the single query fans the records out to the right 1,000 triggers.
    def hang_up_all() -> None:
        with store.engine.begin() as conn:
            conn.execute(
                schema.calls.update()
                .where(schema.calls.c.request_uuid.in_(requests))
                .values(
                    call_uuid=schema.calls.c.request_uuid,
                    status="completed",
                    rank=3,
                    terminal=True,
                    updated_at=datetime.now(timezone.utc),
                )
            )

    await asyncio.to_thread(hang_up_all)
    payloads = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    ticking.cancel()
    assert [p["status"] for p in payloads] == ["hangup"] * WAITERS
    assert [p["calls"][0]["call_uuid"] for p in payloads] == requests
    assert poller.subscriber_count == 0

    record_property("lookups_per_interval", round(per_interval, 2))
    record_property("max_loop_gap_while_waiting_s", round(steady_gap, 3))
    with capsys.disabled():
        print(
            f"\n{WAITERS} waiting triggers: {queries} look-ups in {elapsed:.2f} s at a {INTERVAL} s "
            f"interval ({per_interval:.2f} per interval); longest event-loop stall while waiting: "
            f"{steady_gap * 1000:.0f} ms"
        )


async def test_poller_stops_when_nobody_waits_and_restarts_on_demand(store: CallLedger) -> None:
    url = store.url.render_as_string(hide_password=False)
    async with subscribe(url, request_uuids=["a"], interval=INTERVAL) as sub:
        poller = SharedPoller.for_store(url)
        assert poller.running
        assert await sub.wait(5)  # the first poll always reports
        assert sub.records == [] and sub.error is None
    await async_wait_until(lambda: not poller.running, what="the poller to stop")
    assert url not in SharedPoller._registry.get(asyncio.get_running_loop(), {})

    request = new_uuid()
    await asyncio.to_thread(
        deliver, store, "hangup", hangup_form(call_uuid=request, request_uuid=request, to="919000000002")
    )
    async with subscribe(url, request_uuids=[request], interval=INTERVAL) as sub:
        assert SharedPoller.for_store(url) is not poller  # a fresh one
        assert await sub.wait(5)
        assert [r.status for r in sub.records or ()] == ["completed"]


class _Signalled(BaseException):
    """Stands for Airflow's ``AirflowTaskTimeout``: a BaseException raised by a signal handler."""


async def test_a_signal_raised_inside_the_poller_ends_the_wait(
    store: CallLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGALRM raises the task timeout in whatever code runs: if that is the poller's task, the waiting
    trigger must still end with it (an in-worker wait would otherwise run on to its own deadline)."""
    url = store.url.render_as_string(hide_password=False)

    async def signalled_tick(self: SharedPoller, *, pushed: bool = False) -> None:
        raise _Signalled("Timeout, PID: 1")

    monkeypatch.setattr(SharedPoller, "_tick", signalled_tick)
    async with subscribe(url, request_uuids=[new_uuid()], interval=INTERVAL) as sub:
        began = time.monotonic()
        with pytest.raises(_Signalled, match="Timeout"):
            while True:
                await sub.wait(timeout=30.0)
        assert time.monotonic() - began < 10.0  # at the first tick, not at the 30 s timeout
    assert not SharedPoller._registry.get(asyncio.get_running_loop())  # the dead poller is forgotten


async def test_cancelled_waiter_is_unsubscribed(store: CallLedger) -> None:
    url = store.url.render_as_string(hide_password=False)

    async def wait_forever() -> None:
        async with subscribe(url, request_uuids=["x"], interval=INTERVAL) as sub:
            while True:
                await sub.wait(60)

    async with subscribe(url, request_uuids=["y"], interval=INTERVAL):
        poller = SharedPoller.for_store(url)
        task = asyncio.create_task(wait_forever())
        await async_wait_until(lambda: poller.subscriber_count == 2, what="the second subscriber")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert poller.subscriber_count == 1
        assert poller.running  # the other waiter is still served


async def test_tick_interval_is_the_smallest_subscribed(store: CallLedger, statements: list[str]) -> None:
    url = store.url.render_as_string(hide_password=False)
    async with (
        subscribe(url, request_uuids=["a"], interval=30),
        subscribe(url, call_uuids=["b"], interval=0.1),
    ):
        await async_wait_until(lambda: lookups(statements) >= 1, what="the first look-up")
        statements.clear()
        # a 30 s subscriber does not slow the 0.1 s one down: 3 more look-ups well before 30 s have passed
        # (at a 30 s tick there would be none in this window)
        await async_wait_until(lambda: lookups(statements) >= 3, timeout=20, what="3 look-ups at 0.1 s")
