"""Push, not only poll: a stored callback reaches a waiting trigger long before the next timed query.

PostgreSQL: ``NOTIFY`` from the transaction that stores the callback, heard at its commit; SQLite: ``PRAGMA
data_version`` every 75 ms. Both stores, real databases; the timed polling stays the safety net.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pytest
from trigger_support import correlation, deliver, hangup_form, new_uuid

from vobiz_provider.ledger import CallLedger, schema
from vobiz_provider.ledger import change_signal as change_signal_module
from vobiz_provider.ledger.change_signal import notify_changed, open_signal
from vobiz_provider.triggers.poller import SharedPoller, subscribe

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Far longer than the test: only a pushed query can deliver in time.
LONG_INTERVAL = 60.0


@pytest.fixture(params=["sqlite", "postgresql"])
def push_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/push.db"
    else:
        yield request.getfixturevalue("pg_schema_url")


async def _fired(url: str, count: int = 1) -> tuple[CallLedger, list[tuple[str, str]]]:
    # The receiver's writes go through a ledger (engine) of their own, as in another process.
    writer = CallLedger(url)
    await asyncio.to_thread(writer.upgrade)
    calls = [(new_uuid(), f"91900000{index:04d}") for index in range(count)]
    await asyncio.to_thread(
        writer.register_fired_calls,
        request_uuids=[request for request, _ in calls],
        destinations=[to for _, to in calls],
        correlation=correlation(),
    )
    return writer, calls


async def test_a_stored_hangup_reaches_the_waiter_without_waiting_for_the_interval(push_url: str) -> None:
    writer, calls = await _fired(push_url, 2)
    try:
        async with subscribe(push_url, request_uuids=[calls[0][0]], interval=LONG_INTERVAL) as sub:
            assert await sub.wait(10)
            assert [record.status for record in sub.records or ()] == ["queued"]
            poller = SharedPoller.for_store(push_url)
            # A write to another call: an early query, but this waiter is not woken.
            other, to = calls[1]
            await asyncio.to_thread(
                deliver, writer, "hangup", hangup_form(call_uuid=new_uuid(), request_uuid=other, to=to)
            )
            assert not await sub.wait(1.0)
            assert poller.pushed_lookups >= 1
            request, to = calls[0]
            started = time.monotonic()
            await asyncio.to_thread(
                deliver, writer, "hangup", hangup_form(call_uuid=new_uuid(), request_uuid=request, to=to)
            )
            assert await sub.wait(5)
            assert time.monotonic() - started < 2.0  # a minute before the timed query
            assert [record.status for record in sub.records or ()] == ["completed"]
            assert poller.lookups <= 1 + poller.pushed_lookups + 1  # the first load, then early queries
    finally:
        writer.dispose()


async def test_polling_remains_when_the_store_cannot_be_watched(
    push_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: CallLedger) -> None:
        raise RuntimeError("no LISTEN for you")

    monkeypatch.setattr(CallLedger, "open_change_signal", refuse)
    writer, calls = await _fired(push_url)
    try:
        async with subscribe(push_url, request_uuids=[calls[0][0]], interval=0.3) as sub:
            assert await sub.wait(10)
            request, to = calls[0]
            await asyncio.to_thread(
                deliver, writer, "hangup", hangup_form(call_uuid=new_uuid(), request_uuid=request, to=to)
            )
            assert await sub.wait(5)
            assert [record.status for record in sub.records or ()] == ["completed"]
            assert SharedPoller.for_store(push_url).pushed_lookups == 0
    finally:
        writer.dispose()
    assert "Cannot watch the callback store for writes (polling only): no LISTEN for you" in caplog.text


async def test_the_signal_comes_with_the_commit_and_not_before(push_url: str) -> None:
    writer = CallLedger(push_url)
    await asyncio.to_thread(writer.upgrade)
    signal = await asyncio.to_thread(open_signal, writer.engine)
    assert signal is not None
    heard: list[float] = []
    signal.start(lambda: heard.append(time.monotonic()))
    try:
        await asyncio.sleep(0.3)
        assert heard == []  # nothing written: nothing heard

        def write(commit: bool) -> None:
            with writer.engine.connect() as conn:
                transaction = conn.begin()
                conn.execute(
                    schema.nonces.insert().values(nonce=new_uuid(), seen_at=datetime.now(timezone.utc))
                )
                notify_changed(conn)
                time.sleep(0.3)
                if commit:
                    transaction.commit()
                else:
                    transaction.rollback()

        await asyncio.to_thread(write, False)
        await asyncio.sleep(0.3)
        assert heard == []  # rolled back: no signal
        await asyncio.to_thread(write, True)
        committed = time.monotonic()
        for _ in range(40):
            if heard:
                break
            await asyncio.sleep(0.025)
        assert heard and heard[0] - committed < change_signal_module.SQLITE_CHECK_INTERVAL + 0.5
    finally:
        signal.close()
        writer.dispose()


def test_an_in_memory_store_has_no_signal() -> None:
    store = CallLedger("sqlite://")
    try:
        assert store.open_change_signal() is None
    finally:
        store.dispose()
