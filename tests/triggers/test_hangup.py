"""VobizCallHangupTrigger against a real SQLite callback store (and the emulator where the API is asked)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from _ledger_helpers import place
from _waiting import async_wait_until
from trigger_support import (
    answer_form,
    correlation,
    deliver,
    hangup_form,
    live_pollers,
    new_uuid,
    ring_form,
)

from vobiz_provider.models.record import normalise_destination
from vobiz_provider.triggers.hangup import VobizCallHangupTrigger
from vobiz_provider.triggers.poller import SharedPoller

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

FAST = 0.05  # poll interval of these tests (seconds)


def make_trigger(**overrides: Any) -> VobizCallHangupTrigger:
    kwargs: dict[str, Any] = {
        "request_uuids": [new_uuid()],
        "destinations": ["+919000000002"],
        "deadline": time.time() + 30,
        "poll_interval": FAST,
    }
    kwargs.update(overrides)
    return VobizCallHangupTrigger(**kwargs)


async def first_event(trigger: VobizCallHangupTrigger, timeout: float = 10.0) -> dict[str, Any]:
    events = trigger.run()
    try:
        event = await asyncio.wait_for(anext(events), timeout=timeout)
    finally:
        await events.aclose()
    return event.payload


async def two_more_polls() -> None:
    """Wait until the trigger's poller has run two more polls: at least one began after what was written."""
    [poller] = await async_wait_until(
        lambda: [p for p in live_pollers() if p.subscriber_count], what="the trigger to subscribe"
    )
    done = poller.lookups
    await async_wait_until(lambda: poller.lookups >= done + 2, what="two more polls")


async def write(store: CallLedger, kind: str, form: dict[str, str], *, bind: bool = True) -> None:
    await asyncio.to_thread(deliver, store, kind, form, bind=bind)


# ------------------------------------------------------------------------------------------ serialize


def test_serialize_round_trips_through_json() -> None:
    trigger = make_trigger(
        destinations=["+919000000002", "sip:alice@example.com"],
        reconcile_after=1_900_000_000.5,
        use_store=False,
        hangup_on_kill=True,
        call_uuids=["c-1"],
        vobiz_conn_id="vobiz_other",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "vobiz_provider.triggers.hangup.VobizCallHangupTrigger"
    # JSON primitives only: a JSON round trip changes nothing.
    assert json.loads(json.dumps(kwargs)) == kwargs
    rebuilt = VobizCallHangupTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["deadline"] == trigger.deadline  # absolute, not a duration


def test_needs_some_uuid() -> None:
    with pytest.raises(ValueError, match="request_uuids or call_uuids"):
        VobizCallHangupTrigger(request_uuids=[], destinations=[], deadline=time.time() + 5)


def test_normalise_destination() -> None:
    assert normalise_destination("+919000000002") == normalise_destination("919000000002")
    assert normalise_destination(" SIP:Alice@Example.com ") == "sip:alice@example.com"


# ------------------------------------------------------------------------------------------ store path


async def test_hangup_event_once_the_store_has_the_hangup(
    store: CallLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    request = new_uuid()
    trigger = make_trigger(request_uuids=[request], destinations=["+919000000002"])
    task = asyncio.create_task(first_event(trigger))
    legs = {"call_uuid": request, "request_uuid": request, "to": "919000000002"}  # Vobiz drops the '+'
    await write(store, "ring", ring_form(**legs))
    await two_more_polls()
    assert not task.done()  # ringing is not a hangup
    await write(store, "answer", answer_form(**legs))
    await write(
        store, "hangup", hangup_form(**legs, status="busy", code=3010, cause="USER_BUSY", name="Busy Line")
    )
    payload = await task
    assert payload["status"] == "hangup"
    assert payload["request_uuids"] == [request]
    [call] = payload["calls"]
    assert (call["call_uuid"], call["status"], call["hangup_cause_code"]) == (request, "busy", 3010)
    assert call["terminal"] is True
    # the event is JSON-serialisable as is
    assert json.loads(json.dumps(payload)) == payload
    # the timeline, as the task log shows it (Airflow's structlog writes to stdout here)
    log = capsys.readouterr().out
    assert "): ringing (via callback)" in log
    assert "hung up (status=busy, cause=Busy Line 3010, sip_cause=USER_BUSY, source=Callee" in log


async def test_multi_destination_waits_for_every_destination(store: CallLedger) -> None:
    request = new_uuid()
    destinations = ["+919000000002", "919000000003", "sip:bob@example.com"]
    await asyncio.to_thread(place, store, request, destinations, correlation=correlation())
    trigger = make_trigger(request_uuids=[request], destinations=destinations)
    task = asyncio.create_task(first_event(trigger))
    uuids = [new_uuid() for _ in destinations]
    tos = ["919000000002", "+919000000003", "sip:bob@example.com"]  # '+' differs from the request
    for call_uuid, to in zip(uuids[:2], tos[:2], strict=True):
        await write(
            store, "hangup", hangup_form(call_uuid=call_uuid, request_uuid=request, to=to), bind=False
        )
    await write(store, "ring", ring_form(call_uuid=uuids[2], request_uuid=request, to=tos[2]), bind=False)
    await two_more_polls()
    assert not task.done()  # the third destination is still ringing
    await write(
        store,
        "hangup",
        hangup_form(call_uuid=uuids[2], request_uuid=request, to=tos[2], status="no-answer", code=3000),
        bind=False,
    )
    payload = await task
    assert payload["status"] == "hangup"
    calls = payload["calls"]
    assert [c["to"] for c in calls] == sorted((c["to"] for c in calls), key=normalise_destination)
    assert {c["call_uuid"]: c["status"] for c in calls} == {
        uuids[0]: "completed",
        uuids[1]: "completed",
        uuids[2]: "no-answer",
    }


async def test_deadline_in_the_past_gives_an_immediate_timeout(store: CallLedger) -> None:
    request = new_uuid()
    await write(store, "ring", ring_form(call_uuid=request, request_uuid=request, to="919000000002"))
    trigger = make_trigger(request_uuids=[request], deadline=time.time() - 1, poll_interval=60)
    started = time.monotonic()
    payload = await first_event(trigger, timeout=5)
    assert payload["status"] == "timeout"
    assert time.monotonic() - started < 5  # did not wait for a 60 s poll interval
    [call] = payload["calls"]  # the latest (non-terminal) state is included
    assert call["status"] == "ringing"
    assert "91******0002" in payload["message"]  # the pending destination, masked (an exception text)
    assert "919000000002" not in payload["message"]
    assert call["to"] == "919000000002"  # the event's record keeps it whole


async def test_deadline_passes_while_waiting(store: CallLedger) -> None:
    trigger = make_trigger(deadline=time.time() + 0.3)
    payload = await first_event(trigger, timeout=5)
    assert payload == {
        "status": "timeout",
        "request_uuids": trigger.request_uuids,
        "calls": [],
        "message": payload["message"],
    }
    assert "passed before 1 call leg(s) hung up" in payload["message"]


async def test_restart_keeps_the_absolute_deadline(store: CallLedger) -> None:
    """A triggerer restart rebuilds the trigger from serialize(): same deadline, and it still finishes."""
    request = new_uuid()
    duration = 2.0
    first = make_trigger(request_uuids=[request], deadline=time.time() + duration)
    task = asyncio.create_task(first_event(first))
    [poller] = await async_wait_until(
        lambda: [p for p in live_pollers() if p.subscriber_count == 1], what="the trigger to subscribe"
    )
    task.cancel()  # the triggerer stops
    with pytest.raises(asyncio.CancelledError):
        await task
    assert poller.subscriber_count == 0  # cancelled waiter left cleanly

    _, kwargs = first.serialize()
    second = VobizCallHangupTrigger(**kwargs)
    assert second.deadline == first.deadline
    # The triggerer is down until after the original deadline (waiting for it to pass is the behaviour).
    await async_wait_until(lambda: time.time() > first.deadline, what="the original deadline to pass")
    started = time.monotonic()
    payload = await first_event(second, timeout=30)
    assert payload["status"] == "timeout"
    # Immediately, not after a fresh `duration`: the restarted trigger kept the absolute deadline.
    assert time.monotonic() - started < duration

    # ... and a restarted trigger whose call did hang up meanwhile finishes with the hangup.
    await write(store, "hangup", hangup_form(call_uuid=request, request_uuid=request, to="919000000002"))
    third = VobizCallHangupTrigger(**{**kwargs, "deadline": time.time() + 10})
    assert (await first_event(third))["status"] == "hangup"


async def test_call_uuids_without_destinations(store: CallLedger) -> None:
    """The sensor's form: known call uuid, no destinations."""
    call_uuid = new_uuid()
    trigger = make_trigger(request_uuids=[], call_uuids=[call_uuid], destinations=[])
    task = asyncio.create_task(first_event(trigger))
    await write(store, "answer", answer_form(call_uuid=call_uuid, request_uuid=call_uuid, to="919000000009"))
    await two_more_polls()
    assert not task.done()
    await write(store, "hangup", hangup_form(call_uuid=call_uuid, request_uuid=call_uuid, to="919000000009"))
    payload = await task
    assert payload["status"] == "hangup"
    assert [c["call_uuid"] for c in payload["calls"]] == [call_uuid]


async def test_unreadable_store_keeps_waiting(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ledger unavailable: warn, keep polling, end at the deadline (no API asked before reconcile_after)."""
    bad = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", bad)
    trigger = make_trigger(deadline=time.time() + 0.5)
    payload = await first_event(trigger)
    assert payload["status"] == "timeout"
    assert "callback store cannot be read" in capsys.readouterr().out


def test_fresh_event_loops_get_fresh_pollers(store: CallLedger) -> None:
    """dag.test() runs each trigger in its own asyncio.run(): nothing may stay bound to a dead loop."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def in_a_fresh_loop(trigger: VobizCallHangupTrigger) -> dict[str, Any]:
        loops.append(asyncio.get_running_loop())
        return await first_event(trigger)

    for _ in range(3):
        request = new_uuid()
        deliver(store, "hangup", hangup_form(call_uuid=request, request_uuid=request, to="919000000002"))
        payload = asyncio.run(in_a_fresh_loop(make_trigger(request_uuids=[request])))
        assert payload["status"] == "hangup"
    # These loops are held here, so only the poller's own clean-up can have removed them (other tests'
    # loops may still wait for the garbage collector: they are not this test's business).
    assert len(set(map(id, loops))) == 3
    assert [loop for loop in loops if loop in SharedPoller._registry] == []


async def test_bulk_request_without_known_destinations(store: CallLedger) -> None:
    """The sensor watching a bulk request UUID: every fired leg must end, not just the first reported."""
    request = new_uuid()
    await asyncio.to_thread(
        store.register_fired_calls, request_uuids=[request], destinations=["+919000000002", "+919000000003"]
    )
    trigger = make_trigger(request_uuids=[request], destinations=[])
    task = asyncio.create_task(first_event(trigger))
    first, second = new_uuid(), new_uuid()
    await write(store, "hangup", hangup_form(call_uuid=first, request_uuid=request, to="919000000002"))
    await two_more_polls()
    assert not task.done()  # the second destination has not even rung yet
    await write(store, "hangup", hangup_form(call_uuid=second, request_uuid=request, to="919000000003"))
    payload = await task
    assert payload["status"] == "hangup"
    assert sorted(c["call_uuid"] for c in payload["calls"]) == sorted([first, second])


# ------------------------------------------------------------------------------------------ log lines

FORGED = "\n[2026-01-01, 09:00:00 UTC] {call.py:1} INFO - Done. Returned value was: completed"


async def test_a_hostile_hangup_cause_cannot_forge_task_log_lines(
    store: CallLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Call text with CR/LF (a row written before the receiver refused them, or by another writer) shows up
    escaped on one line in the trigger's timeline and in the operator's failure."""
    import sqlalchemy as sa

    from vobiz_provider.exceptions import VobizCallFailedError
    from vobiz_provider.ledger.schema import calls
    from vobiz_provider.operators.call import VobizCallOperator

    request = new_uuid()
    legs = {"call_uuid": request, "request_uuid": request, "to": "919000000002"}
    await write(store, "hangup", hangup_form(**legs, status="busy", code=3010, name="Busy Line"))
    hostile = {
        "hangup_cause_name": "Busy" + FORGED,
        "hangup_cause": "USER_BUSY\r" + FORGED,
        "hangup_source": "Callee\r\n",
        "destination": "919000000002" + FORGED,
    }
    with store.engine.begin() as conn:
        conn.execute(sa.update(calls).where(calls.c.call_uuid == request).values(**hostile))
    capsys.readouterr()

    payload = await first_event(make_trigger(request_uuids=[request], destinations=[]))
    assert payload["status"] == "hangup"
    [call] = payload["calls"]
    assert call["hangup_cause_name"] == "Busy" + FORGED  # the record keeps the value; only text is escaped
    out = capsys.readouterr().out
    assert "cause=Busy\\n[2026-01-01, 09:00:00 UTC] {call.py:1} INFO - Done." in out
    assert not [line for line in out.splitlines() if line.startswith("[2026-01-01")]
    assert "\r" not in out

    operator = VobizCallOperator(
        task_id="call", to="+919000000002", from_number="+14155550100", answer_url="https://example.com/a"
    )
    with pytest.raises(VobizCallFailedError) as err:
        operator.execute_complete({}, payload)
    message = str(err.value)
    assert "\n" not in message and "\r" not in message
    assert "Busy\\n[2026-01-01" in message
