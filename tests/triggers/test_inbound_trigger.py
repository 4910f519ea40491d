"""VobizInboundCallTrigger and its shared-stream producer, on a real SQLite callback store.

What it must guarantee: each stored call, key press or hangup becomes one event for every watcher that
wants it; the cursor in the callback store advances only over events every watcher passed (Airflow's ack
mode), so a new poll (a triggerer restart) resumes after them and re-delivers the rest. The whole chain under
a real triggerer runs in ``tests/e2e/test_standalone_inbound.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome

from vobiz_provider.ledger import CallLedger
from vobiz_provider.triggers.inbound import InboundStreamProducer, VobizInboundCallTrigger

CALLER = "+919876543210"


@pytest.fixture
def ledger(tmp_path: Any) -> Any:
    store = CallLedger(f"sqlite:///{tmp_path / 'inbound.db'}")
    yield store
    store.dispose()


def _store(ledger: CallLedger, kind: str, call_uuid: str, digits: str | None = None) -> int:
    stored = ledger.store_inbound(
        application="incident-line",
        kind=kind,
        call_uuid=call_uuid,
        values={"from_number": CALLER, "to_number": "+918000000001", "digits": digits},
        fields={"CallUUID": call_uuid},
        replay_keys=(),
        nonce_window=600,
    )
    assert stored.event_id is not None
    return stored.event_id


async def _take(stream: Any, count: int) -> list[Any]:
    out = []
    async for item in stream:
        out.append(item)
        if len(out) == count:
            break
    return out


def test_arguments_are_checked_and_serialized():
    trigger = VobizInboundCallTrigger(application="incident-line", kinds="digits", digits="1")
    classpath, kwargs = trigger.serialize()
    assert classpath == "vobiz_provider.triggers.inbound.VobizInboundCallTrigger"
    assert VobizInboundCallTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert kwargs["kinds"] == ["digits"] and kwargs["digits"] == ["1"]
    assert trigger.shared_stream_key() == ("vobiz_provider.inbound", "default")
    for bad in (
        {"application": "no spaces"},
        {"application": "a", "kinds": ["ring"]},
        {"application": "a", "poll_interval": 0},
    ):
        with pytest.raises(ValueError):
            VobizInboundCallTrigger(**bad)


def test_filter_keeps_the_application_kinds_and_digits_it_watches():
    trigger = VobizInboundCallTrigger(application="incident-line", kinds=["digits"], digits=["1"])
    base = {"application": "incident-line", "kind": "digits"}
    assert trigger.wants({**base, "digits": "1"})
    assert not trigger.wants({**base, "digits": "2"})
    assert not trigger.wants({**base, "application": "sales", "digits": "1"})
    assert not trigger.wants({**base, "kind": "call"})


async def test_one_poll_serves_every_watcher_and_masks_numbers(ledger):
    first = _store(ledger, "call", "c-1")
    _store(ledger, "digits", "c-1", "1")
    _store(ledger, "digits", "c-2", "2")
    producer = InboundStreamProducer(stream="default", poll_interval=0.01, ledger=ledger)
    raw = await _take(producer.open_stream(), 3)
    assert [event_id for _, event_id in raw] == [first, first + 1, first + 2]

    async def replay() -> Any:
        for payload, _ in raw:
            yield payload

    calls = VobizInboundCallTrigger(application="incident-line", kinds=["call"])
    ones = VobizInboundCallTrigger(application="incident-line", kinds=["digits"], digits=["1"])
    got_calls = [event.payload async for event in calls.filter_shared_stream(replay())]
    got_ones = [event.payload async for event in ones.filter_shared_stream(replay())]
    assert [(p["kind"], p["call_uuid"]) for p in got_calls] == [("call", "c-1")]
    assert [(p["kind"], p["digits"], p["event_id"]) for p in got_ones] == [("digits", "1", first + 1)]
    assert got_calls[0]["from_number"] == "+91******3210"
    assert CALLER not in str(got_calls + got_ones)


async def test_cursor_advances_only_over_what_every_watcher_passed(ledger):
    ids = [_store(ledger, "call", f"c-{n}") for n in range(4)]
    producer = InboundStreamProducer(stream="default", poll_interval=0.01, ledger=ledger)
    clean, failed = AdvanceOutcome(acked=2, failed=0), AdvanceOutcome(acked=1, failed=1)

    await producer.advance([AdvanceItem(ids[0], clean), AdvanceItem(ids[1], clean)])
    assert ledger.inbound_cursor("default") == ids[1]
    with pytest.raises(RuntimeError, match="was not delivered to every watcher"):
        await producer.advance([AdvanceItem(ids[2], failed), AdvanceItem(ids[3], clean)])
    assert ledger.inbound_cursor("default") == ids[1]
    assert ledger.inbound_cursor("other") == 0  # each stream has its own cursor

    # A new poll (the group restarted, or the triggerer did) resumes after the cursor: re-delivers ids[2:].
    restarted = InboundStreamProducer(stream="default", poll_interval=0.01, ledger=ledger)
    assert [event_id for _, event_id in await _take(restarted.open_stream(), 2)] == ids[2:]
    await restarted.advance([AdvanceItem(ids[3], AdvanceOutcome(acked=0, failed=0))])  # no watcher online
    assert ledger.inbound_cursor("default") == ids[3]
    await restarted.advance([AdvanceItem(ids[0], clean)])  # never backwards
    assert ledger.inbound_cursor("default") == ids[3]


async def test_run_on_its_own_delivers_new_events_once(ledger, monkeypatch):
    monkeypatch.setattr("vobiz_provider.triggers.inbound.get_ledger", lambda: ledger)
    _store(ledger, "call", "c-1")
    trigger = VobizInboundCallTrigger(application="incident-line", kinds=["call"], poll_interval=0.01)
    runner = trigger.run()
    event = await asyncio.wait_for(runner.__anext__(), 5)
    assert event.payload["call_uuid"] == "c-1"
    later = _store(ledger, "call", "c-2")
    event = await asyncio.wait_for(runner.__anext__(), 5)
    assert event.payload["call_uuid"] == "c-2"
    await runner.aclose()
    assert ledger.inbound_cursor("default") >= later - 1
