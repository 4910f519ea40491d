"""What a waiting trigger keeps: the objects the garbage collector walks on each full pass.

A triggerer keeps its waiting triggers for hours, and a full (oldest-generation) collection walks every
object they hold while the event loop stands still: at 1,000 waiting triggers that pause was the whole of
benchmark B1's loop stall (over the 0.2 s Airflow warns at). These tests count objects, not time, so they
are exact on any machine: a change that makes each waiting trigger keep many more objects fails them.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import TYPE_CHECKING, Any

from _waiting import async_wait_until
from trigger_support import new_uuid

from vobiz_provider.triggers.hangup import VobizCallHangupTrigger
from vobiz_provider.triggers.poller import SharedPoller, subscribe

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

WAITERS = 300
INTERVAL = 0.2
#: Objects one waiting trigger keeps, with the task that drives it (its task, context, coroutines): 26.9
#: measured on CPython 3.11 (56.8 before the triggers were made to keep fewer). The margin is for other
#: interpreter versions, not for a per-trigger logger (+9), an AsyncExitStack (+5), a context manager
#: generator (+7) or a far-future wait timer left in the loop's heap (+2).
MAX_OBJECTS_PER_TRIGGER = 32
#: The same for a bare subscription waiting in a task: 15.8 measured (27.8 before).
MAX_OBJECTS_PER_SUBSCRIPTION = 19


def tracked_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def drive(trigger: VobizCallHangupTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")


def trigger(request_uuid: str, destination: str) -> VobizCallHangupTrigger:
    now = time.time()
    return VobizCallHangupTrigger(
        request_uuids=[request_uuid],
        destinations=[destination],
        deadline=now + 3600,
        poll_interval=INTERVAL,
        reconcile_after=now + 3000,
    )


async def test_a_waiting_trigger_keeps_few_objects(store: CallLedger) -> None:
    requests = [new_uuid() for _ in range(WAITERS + 1)]
    destinations = [f"+91900{i:07d}" for i in range(WAITERS + 1)]
    await asyncio.to_thread(store.register_fired_calls, request_uuids=requests, destinations=destinations)
    url = store.url.render_as_string(hide_password=False)
    loop = asyncio.get_running_loop()

    def poller() -> SharedPoller:
        found = SharedPoller._registry.get(loop, {}).get(url)
        assert found is not None
        return found

    def loaded(count: int) -> bool:
        found = SharedPoller._registry.get(loop, {}).get(url)
        return found is not None and found.subscriber_count == count and not found._pending

    async def settled(count: int) -> None:
        """``count`` triggers subscribed, loaded, woken once and waiting again (their first, short wait
        timers due and gone from the loop's heap)."""
        await async_wait_until(lambda: loaded(count), what=f"{count} triggers subscribed and loaded")
        lookups = poller().lookups
        await async_wait_until(lambda: poller().lookups >= lookups + 2, what="two more polls")
        await asyncio.sleep(2 * INTERVAL)

    # One trigger first: what the loop makes once (the poller, the store's connection, the class's logger)
    # is not counted per trigger.
    first = asyncio.create_task(drive(trigger(requests[0], destinations[0])))
    await settled(1)
    before = tracked_objects()
    tasks = [
        asyncio.create_task(drive(trigger(request, destination)))
        for request, destination in zip(requests[1:], destinations[1:], strict=True)
    ]
    await settled(WAITERS + 1)
    per_trigger = (tracked_objects() - before) / WAITERS
    try:
        assert not any(task.done() for task in tasks)
        assert per_trigger <= MAX_OBJECTS_PER_TRIGGER, f"{per_trigger:.1f} objects per waiting trigger"
    finally:
        for task in [first, *tasks]:
            task.cancel()
        await asyncio.gather(first, *tasks, return_exceptions=True)
    left = SharedPoller._registry.get(loop, {}).get(url)
    assert left is None or left.subscriber_count == 0  # every trigger unsubscribed when cancelled


async def test_a_waiting_subscription_keeps_few_objects(store: CallLedger) -> None:
    url = store.url.render_as_string(hide_password=False)
    loop = asyncio.get_running_loop()

    async def wait_forever() -> None:
        async with subscribe(url, request_uuids=[new_uuid()], interval=INTERVAL) as subscription:
            while True:
                await subscription.wait(3600)

    async with subscribe(url, request_uuids=[new_uuid()], interval=INTERVAL):
        poller = SharedPoller._registry[loop][url]
        await async_wait_until(lambda: poller.lookups >= 2, what="two polls")
        before = tracked_objects()
        tasks = [asyncio.create_task(wait_forever()) for _ in range(WAITERS)]
        await async_wait_until(
            lambda: poller.subscriber_count == WAITERS + 1 and not poller._pending, what="subscribed, loaded"
        )
        await asyncio.sleep(0)
        per_subscription = (tracked_objects() - before) / WAITERS
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert per_subscription <= MAX_OBJECTS_PER_SUBSCRIPTION, (
        f"{per_subscription:.1f} objects per subscription"
    )


async def test_the_triggers_of_a_loop_share_one_logger() -> None:
    first, second = trigger(new_uuid(), "+919000000001"), trigger(new_uuid(), "+919000000002")
    assert first.log is second.log
    assert first.log.name == "vobiz_provider.triggers.hangup.VobizCallHangupTrigger"  # as LoggingMixin's

    async def in_another_loop() -> Any:
        return first.log

    # A new loop (the next test, dag.test()) gets its own, bound to the output streams of its day.
    assert await asyncio.to_thread(asyncio.run, in_another_loop()) is not first.log


def test_a_trigger_outside_a_loop_logs_through_its_own_logger() -> None:
    first, second = trigger(new_uuid(), "+919000000001"), trigger(new_uuid(), "+919000000002")
    assert first.log is not second.log
    assert first.log is first.log
