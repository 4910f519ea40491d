"""The trigger's Vobiz API paths, against the emulator over real HTTP: reconciliation, use_store=False,
and on_kill."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from _waiting import async_wait_until
from trigger_support import live_pollers

from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.testing import CallScript
from vobiz_provider.triggers.hangup import VobizCallHangupTrigger

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

CALLER = "14155550100"
DESTINATION = "14155550199"


async def fire(answer_url: str, to: str = DESTINATION, **fields: Any) -> str:
    """Place a call on the emulator (the operator's job); its callbacks never reach the store."""
    hook = VobizHook()
    try:
        client = await hook.aget_conn()
        fired = await client.make_call(
            MakeCallRequest.build(**{"from": CALLER, "to": to, "answer_url": answer_url, **fields})
        )
    finally:
        await hook.aclose()
    [request_uuid] = fired.request_uuids
    return request_uuid


async def first_event(trigger: VobizCallHangupTrigger, timeout: float = 15.0) -> dict[str, Any]:
    events = trigger.run()
    try:
        return (await asyncio.wait_for(anext(events), timeout=timeout)).payload
    finally:
        await events.aclose()


def deletes(emulator: Any) -> list[Any]:
    return [r for r in emulator.requests if r.method == "DELETE" and "/Call/" in r.path]


async def test_lost_hangup_callback_is_reconciled_from_the_cdr(
    vobiz_emulator: Any, store: CallLedger, answer_url: str
) -> None:
    """The call ended, its hangup callback went elsewhere; after reconcile_after the CDR settles it."""
    vobiz_emulator.script(DESTINATION, CallScript.busy())
    request_uuid = await fire(answer_url)
    await asyncio.to_thread(vobiz_emulator.wait_for_call, request_uuid)
    assert await asyncio.to_thread(store.lookup, request_uuids=[request_uuid]) == []  # nothing arrived

    trigger = VobizCallHangupTrigger(
        request_uuids=[request_uuid],
        destinations=[f"+{DESTINATION}"],
        deadline=time.time() + 30,
        poll_interval=0.05,
        reconcile_after=time.time() - 1,
    )
    payload = await first_event(trigger)
    assert payload["status"] == "hangup"
    [call] = payload["calls"]
    assert (call["call_uuid"], call["status"], call["source"]) == (request_uuid, "busy", "api")
    assert call["hangup_cause_code"] == 3010
    # Written back, so sibling waiters, retries and the sensor see the outcome without asking Vobiz.
    [stored] = await asyncio.to_thread(store.lookup, request_uuids=[request_uuid])
    assert (stored.status, stored.terminal) == ("busy", True)


async def test_no_reconciliation_before_reconcile_after(
    vobiz_emulator: Any, store: CallLedger, answer_url: str
) -> None:
    request_uuid = await fire(answer_url)
    await asyncio.to_thread(vobiz_emulator.wait_for_call, request_uuid)
    trigger = VobizCallHangupTrigger(
        request_uuids=[request_uuid],
        destinations=[DESTINATION],
        deadline=time.time() + 0.5,
        poll_interval=0.05,
        reconcile_after=time.time() + 60,
    )
    payload = await first_event(trigger)
    assert payload["status"] == "timeout"  # the store is healthy and the hangup is not overdue yet
    assert not [r for r in vobiz_emulator.requests if r.method == "GET" and request_uuid in r.path]


async def test_without_the_store_the_api_is_polled(vobiz_emulator: Any, answer_url: str) -> None:
    """use_store=False (the user's own hangup_url): live → ... → CDR, every poll_interval."""
    vobiz_emulator.script(DESTINATION, CallScript(outcome="completed", answer_after=0.2, talk_for=0.4))
    request_uuid = await fire(answer_url)
    trigger = VobizCallHangupTrigger(
        request_uuids=[request_uuid],
        destinations=[DESTINATION],
        deadline=time.time() + 30,
        poll_interval=0.1,
        use_store=False,
    )
    payload = await first_event(trigger)
    assert payload["status"] == "hangup"
    [call] = payload["calls"]
    assert (call["status"], call["hangup_cause_code"], call["source"]) == ("completed", 4000, "api")
    assert call["duration"] is not None
    live_lookups = [
        r for r in vobiz_emulator.requests if r.method == "GET" and r.query.get("status") == "live"
    ]
    assert len(live_lookups) >= 2  # it saw the call live before it ended


async def test_unknown_connection_without_the_store_is_an_error_event(
    monkeypatch: Any, store_url: str
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_VOBIZ_DEFAULT", raising=False)
    trigger = VobizCallHangupTrigger(
        request_uuids=["r-1"],
        destinations=[DESTINATION],
        deadline=time.time() + 30,
        poll_interval=0.05,
        use_store=False,
        vobiz_conn_id="vobiz_missing",
    )
    payload = await first_event(trigger)
    assert payload["status"] == "error"
    assert "vobiz_missing" in payload["message"]


async def _killed(trigger: VobizCallHangupTrigger) -> None:
    """What the triggerer does on a user kill: cancel run(), then call on_kill()."""
    task = asyncio.create_task(first_event(trigger))
    # killed while it waits: once its first poll has loaded its calls
    await async_wait_until(
        lambda: any(p.subscriber_count and not p._pending for p in live_pollers()),
        what="the trigger to be waiting",
    )
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await trigger.on_kill()


async def test_on_kill_hangs_up_only_with_hangup_on_kill(
    vobiz_emulator: Any, store: CallLedger, answer_url: str
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript(outcome="completed", talk_for=None))  # stays up
    request_uuid = await fire(answer_url)
    kwargs: dict[str, Any] = {
        "request_uuids": [request_uuid],
        "destinations": [DESTINATION],
        "deadline": time.time() + 30,
        "poll_interval": 0.05,
    }
    await _killed(VobizCallHangupTrigger(**kwargs))
    await trigger_cleanup(VobizCallHangupTrigger(**kwargs))
    assert deletes(vobiz_emulator) == []  # neither on_kill (off) nor cleanup() hangs up
    assert vobiz_emulator.calls[request_uuid].status == "in-progress"

    await _killed(VobizCallHangupTrigger(**kwargs, hangup_on_kill=True))
    [delete] = deletes(vobiz_emulator)
    assert request_uuid in delete.path
    ended = await asyncio.to_thread(vobiz_emulator.wait_for_call, request_uuid)
    assert ended.status == "completed"


async def trigger_cleanup(trigger: VobizCallHangupTrigger) -> None:
    await trigger.cleanup()


async def test_lost_callbacks_after_record_fired_are_reconciled(
    vobiz_emulator: Any, store: CallLedger, answer_url: str
) -> None:
    """As the operator leaves it: only the "fired" record (no call UUID) and no callback ever arrives.

    The trigger must still ask Vobiz by the request UUID once reconciliation is due; before this was fixed
    it skipped legs without a call UUID and waited until the deadline.
    """
    vobiz_emulator.script(DESTINATION, CallScript.no_answer())
    request_uuid = await fire(answer_url)
    await asyncio.to_thread(
        store.register_fired_calls,
        request_uuids=[request_uuid],
        destinations=[f"+{DESTINATION}"],
        from_number=CALLER,
    )
    await asyncio.to_thread(vobiz_emulator.wait_for_call, request_uuid)

    trigger = VobizCallHangupTrigger(
        request_uuids=[request_uuid],
        destinations=[f"+{DESTINATION}"],
        deadline=time.time() + 30,
        poll_interval=0.05,
        # Due only after the first polls have seen the fired record (as in a real run).
        reconcile_after=time.time() + 1.0,
    )
    payload = await first_event(trigger)
    assert payload["status"] == "hangup", payload["message"]
    [call] = payload["calls"]
    assert (call["status"], call["source"], call["hangup_cause_code"]) == ("no-answer", "api", 3000)
