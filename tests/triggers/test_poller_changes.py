"""The shared poller reads changes only: a cursor on ``updated_at`` plus the rows of new subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from trigger_support import correlation, deliver, hangup_form, new_uuid

from vobiz_provider.ledger import CallLedger, schema
from vobiz_provider.models.record import CallRecord
from vobiz_provider.triggers import poller as poller_module
from vobiz_provider.triggers.poller import SharedPoller, subscribe

if TYPE_CHECKING:
    from collections.abc import Iterator

INTERVAL = 0.2


@pytest.fixture
def url(store: CallLedger) -> str:
    return store.url.render_as_string(hide_password=False)


@pytest.fixture
def call_queries(store: CallLedger) -> Iterator[list[tuple[str, Any]]]:
    """Every query of the calls table the store's engine sends from now on, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM vobiz_calls" in statement:
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", listener)


def statuses(records: Any) -> list[str]:
    return [record.status for record in records or ()]


async def lookups_done(poller: SharedPoller, count: int) -> None:
    """Wait until ``poller`` has run ``count`` more queries."""
    target = poller.lookups + count

    async def done() -> None:
        while poller.lookups < target:  # noqa: ASYNC110 - the poller has no event to wait on
            await asyncio.sleep(0.01)

    await asyncio.wait_for(done(), 10)


@pytest.mark.parametrize("overlap", [poller_module.CHANGE_OVERLAP, 0.0], ids=["overlap", "no-overlap"])
async def test_a_change_committed_after_a_later_query_began_is_not_missed(
    store: CallLedger, url: str, overlap: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # updated_at is stamped when the write begins; this write commits only after the poller has run whole
    # queries that began later. The overlap is what finds it (without it, the change is lost).
    monkeypatch.setattr(poller_module, "CHANGE_OVERLAP", overlap)
    # The early query a commit's signal brings reaches back PUSH_OVERLAP: without either, the change is lost.
    monkeypatch.setattr(poller_module, "PUSH_OVERLAP", overlap)
    request = new_uuid()
    await asyncio.to_thread(
        store.register_fired_calls, request_uuids=[request], destinations=["+919000000001"]
    )
    stamped, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with store.engine.begin() as conn:
            conn.execute(
                schema.calls.update()
                .where(schema.calls.c.request_uuid == request)
                .values(status="completed", rank=3, terminal=True, updated_at=datetime.now(timezone.utc))
            )
            stamped.set()
            release.wait(10)

    async with subscribe(url, request_uuids=[request], interval=INTERVAL) as sub:
        assert await sub.wait(5)
        assert statuses(sub.records) == ["queued"]
        poller = SharedPoller.for_store(url)
        writer = asyncio.ensure_future(asyncio.to_thread(slow_writer))
        await asyncio.to_thread(stamped.wait, 10)
        await lookups_done(poller, 2)  # the second of these began after the row was stamped
        assert statuses(sub.records) == ["queued"]  # not committed yet
        release.set()
        await writer
        await lookups_done(poller, 2)
        if overlap:
            assert await sub.wait(0)
            assert statuses(sub.records) == ["completed"]
        else:
            assert not await sub.wait(0)
            assert statuses(sub.records) == ["queued"]


async def test_a_subscriber_added_mid_run_gets_the_current_state(store: CallLedger, url: str) -> None:
    # A call that hung up long ago (far behind the cursor): only the new subscriber's own load can find it.
    old = new_uuid()
    await asyncio.to_thread(
        deliver, store, "hangup", hangup_form(call_uuid=old, request_uuid=old, to="919000000002")
    )

    def backdate() -> None:
        with store.engine.begin() as conn:
            conn.execute(
                schema.calls.update()
                .where(schema.calls.c.request_uuid == old)
                .values(updated_at=datetime.now(timezone.utc) - timedelta(hours=1))
            )

    await asyncio.to_thread(backdate)
    async with subscribe(url, request_uuids=["someone-else"], interval=INTERVAL) as first:
        assert await first.wait(5)
        poller = SharedPoller.for_store(url)
        await lookups_done(poller, 2)  # the poller now reads through its cursor
        async with subscribe(url, request_uuids=[old], interval=INTERVAL) as late:
            assert await late.wait(5)
            assert statuses(late.records) == ["completed"]
            assert late.records is not None and late.records[0].call_uuid == old
            assert late.polled_at is not None and late.error is None
        assert first.records == []
        assert not await first.wait(0)  # nothing it waits for changed: not woken


async def test_a_fired_leg_named_by_its_call_replaces_the_placeholder(store: CallLedger, url: str) -> None:
    # The Vobiz API reported the call (by its CallUUID alone) before the operator recorded the fired leg;
    # the hangup that names both merges the leg's placeholder row into the call's row and deletes it.
    request, call = new_uuid(), new_uuid()
    early = CallRecord(call_uuid=call, to="919000000003", status="ringing")
    await asyncio.to_thread(store.cache_api_result, early)
    await asyncio.to_thread(
        store.register_fired_calls,
        request_uuids=[request],
        destinations=["+919000000003"],
        correlation=correlation(),
    )
    async with subscribe(url, request_uuids=[request], call_uuids=[call], interval=INTERVAL) as sub:
        assert await sub.wait(5)
        assert sorted(statuses(sub.records)) == ["queued", "ringing"]
        await asyncio.to_thread(
            deliver, store, "hangup", hangup_form(call_uuid=call, request_uuid=request, to="919000000003")
        )
        assert await sub.wait(5)
        assert [(r.call_uuid, r.status) for r in sub.records or ()] == [(call, "completed")]


@pytest.mark.parametrize("subscribers", [1_000, 10_000])
async def test_one_query_per_interval_whatever_the_number_of_subscribers(
    store: CallLedger, url: str, call_queries: list[tuple[str, Any]], subscribers: int
) -> None:
    requests = [new_uuid() for _ in range(subscribers)]
    destinations = [f"+91900{i:07d}" for i in range(subscribers)]
    await asyncio.to_thread(store.register_fired_calls, request_uuids=requests, destinations=destinations)
    async with contextlib.AsyncExitStack() as stack:
        subs = [
            await stack.enter_async_context(subscribe(url, request_uuids=[request], interval=INTERVAL))
            for request in requests
        ]
        # One query loads every subscriber's current state.
        assert all(await asyncio.wait_for(asyncio.gather(*(sub.wait(30) for sub in subs)), 60))
        assert all(statuses(sub.records) == ["queued"] for sub in subs)
        poller = SharedPoller.for_store(url)
        await lookups_done(poller, 1)
        # The receiver's writes go through an engine of their own: only the poller's queries are counted.
        receiver = CallLedger(url)
        call_queries.clear()
        started = time.monotonic()
        hung_up = [0, subscribers // 2, subscribers - 1]
        try:
            for index in hung_up:
                form = hangup_form(call_uuid=new_uuid(), request_uuid=requests[index], to=destinations[index])
                await asyncio.to_thread(deliver, receiver, "hangup", form)
                await asyncio.sleep(INTERVAL)
        finally:
            receiver.dispose()
        await lookups_done(poller, 2)  # the last hangup has been read
        elapsed = time.monotonic() - started

        # One timed query per interval, plus at most one early query per write the store signalled.
        assert 1 <= len(call_queries) <= elapsed / INTERVAL + 1 + len(hung_up)
        assert poller.pushed_lookups <= len(hung_up) + 1
        # Each query names the cursor, not the waiting calls: its cost follows the changes, not N.
        assert max(len(parameters) for _, parameters in call_queries) <= 2
        for index in hung_up:
            assert await subs[index].wait(0)
            assert statuses(subs[index].records) == ["completed"]
        untouched = [sub for index, sub in enumerate(subs) if index not in hung_up]
        assert all(statuses(sub.records) == ["queued"] for sub in untouched)
        assert not any([await sub.wait(0) for sub in untouched[:200]])  # idle waiters were not woken
