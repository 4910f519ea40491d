"""One callback-store poller per triggerer event loop, shared by every waiting trigger.

A triggerer runs all its triggers as coroutines of one asyncio event loop. If each
:class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger` queried the callback store on its own,
1,000 waiting calls would cost 1,000 queries per poll interval. Instead each trigger *subscribes* its
request/call UUIDs here, and one background task per (event loop, store URL) runs a single
:meth:`CallbackStore.lookup` for the union of every subscriber's UUIDs each interval and hands every
subscriber the records that concern it.

Rules the implementation keeps:

* Nothing outlives its event loop. Pollers are kept per running loop (``dag.test()`` runs each trigger in a
  fresh ``asyncio.run()``), the background task stops as soon as nobody is subscribed and forgets itself,
  and a new subscription starts a new task on demand.
* The event loop is never blocked: the store is synchronous (SQLAlchemy Core), so every call to it runs in
  a worker thread through :func:`asyncio.to_thread`.
* A subscriber that is cancelled (trigger timeout, triggerer shutdown, user kill) is unsubscribed by the
  ``async with`` block that holds it; the shared task is never cancelled on a subscriber's behalf.
* The tick interval is the smallest ``interval`` among current subscribers.
* ``last_callback_at()`` (used by triggers to notice a silent receiver) is asked at most once per
  :data:`SILENCE_CHECK_INTERVAL` seconds, so it adds almost nothing to the one query per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from vobiz_provider.callbacks.store import CallbackStore
    from vobiz_provider.models.record import CallRecord

__all__ = ["SILENCE_CHECK_INTERVAL", "SharedPoller", "Subscription", "configured_store_url", "subscribe"]

log = logging.getLogger(__name__)

#: Seconds between two ``last_callback_at()`` queries of one poller.
SILENCE_CHECK_INTERVAL = 30.0
#: Seconds a freshly started poller waits before its first query, so that the triggers a triggerer
#: starts in one burst (e.g. after a restart) are served by one query rather than one each.
FIRST_TICK_DELAY = 0.05


def _epoch(value: Any) -> float | None:
    """``last_callback_at()`` may answer a datetime or epoch seconds; triggers compare epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


@dataclass(eq=False)
class Subscription:
    """One trigger's place in a :class:`SharedPoller`.

    After each poll the poller sets :attr:`records` (every stored record whose request or call UUID is
    one of this subscription's) or :attr:`error` (the store could not be read), and wakes :meth:`wait`
    only when that differs from what the subscriber saw last (1,000 idle waiters cost no wake-ups).

    :param request_uuids: Request UUIDs whose records this subscriber wants.
    :param call_uuids: Call UUIDs whose records this subscriber wants.
    :param interval: Seconds between two polls this subscriber asks for.
    """

    request_uuids: frozenset[str]
    call_uuids: frozenset[str]
    interval: float
    records: list[CallRecord] | None = None
    error: BaseException | None = None
    #: Epoch seconds of the last successful lookup that included this subscriber.
    polled_at: float | None = None
    #: Epoch seconds of the newest callback in the store (any call), as last seen by the poller.
    last_callback_at: float | None = None
    #: Epoch seconds since which every lookup has failed (``None`` while the store answers).
    failing_since: float | None = None
    _poller: SharedPoller | None = field(default=None, repr=False)
    _updated: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def wait(self, timeout: float) -> bool:
        """Wait until the next poll result arrives, or ``timeout`` seconds; ``True`` if one arrived."""
        if self._poller is not None:
            self._poller._ensure_running()  # revive a poller whose task was cancelled under us
        if not self._updated.is_set():
            try:
                await asyncio.wait_for(self._updated.wait(), timeout=max(timeout, 0.0))
            except TimeoutError:
                return False
        self._updated.clear()
        return True

    def _deliver(
        self, records: list[CallRecord] | None, error: BaseException | None, last_callback_at: float | None
    ) -> None:
        """Take one poll's outcome; wake :meth:`wait` only if something this subscriber can see changed."""
        now = time.time()
        changed = self.polled_at is None and self.failing_since is None  # the first outcome always counts
        if last_callback_at != self.last_callback_at:
            self.last_callback_at, changed = last_callback_at, True
        if error is None:
            if self.error is not None or records != self.records:
                changed = True
            self.records, self.error, self.polled_at, self.failing_since = records, None, now, None
        else:
            if self.error is None:
                changed = True
                self.failing_since = now
            self.error = error
        if changed:
            self._updated.set()


class SharedPoller:
    """Polls one callback store for every :class:`Subscription` of one event loop.

    Get it with :meth:`for_store` (or use :func:`subscribe`); do not construct it directly.

    The poller holds no reference to its event loop (only the registry, weakly, does), so a loop that
    ends while triggers still wait is not kept alive by it.

    :param store_url: SQLAlchemy URL of the callback store (passed to ``get_store``).
    """

    _registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedPoller]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._subscriptions: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._reschedule = asyncio.Event()
        self._store: CallbackStore | None = None
        self._last_callback_at: float | None = None
        self._silence_checked_at: float | None = None
        #: Number of lookups this poller has run (each is one store query); for logs and tests.
        self.lookups = 0

    @classmethod
    def for_store(cls, store_url: str) -> SharedPoller:
        """The poller of ``store_url`` for the running event loop, created on first use."""
        loop = asyncio.get_running_loop()
        pollers = cls._registry.setdefault(loop, {})
        poller = pollers.get(store_url)
        if poller is None:
            poller = pollers[store_url] = cls(store_url)
        return poller

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions this poller currently serves."""
        return len(self._subscriptions)

    @property
    def running(self) -> bool:
        """Whether the background polling task is alive."""
        return self._task is not None and not self._task.done()

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *, request_uuids: Iterable[str] = (), call_uuids: Iterable[str] = (), interval: float
    ) -> AsyncIterator[Subscription]:
        """Subscribe for the records of these UUIDs for the duration of the ``async with`` block.

        :param request_uuids: Request UUIDs to look up.
        :param call_uuids: Call UUIDs to look up.
        :param interval: Seconds between polls this subscriber needs (the poller uses the smallest).
        """
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        subscription = Subscription(
            request_uuids=frozenset(request_uuids),
            call_uuids=frozenset(call_uuids),
            interval=interval,
            _poller=self,
        )
        self._subscriptions.add(subscription)
        self._ensure_running()
        self._reschedule.set()  # the tick interval may have shrunk
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            # The task notices an empty subscriber set itself and stops; waking it makes that prompt.
            self._reschedule.set()

    def _ensure_running(self) -> None:
        if self.running:
            return
        loop = asyncio.get_running_loop()
        # Re-register in case the task was cancelled (and the poller forgotten) while subscribers remained.
        self._registry.setdefault(loop, {}).setdefault(self.store_url, self)
        self._task = loop.create_task(self._run(), name=f"vobiz-callback-poller[{self.store_url!r}]")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(FIRST_TICK_DELAY)
            while self._subscriptions:
                started = loop.time()
                await self._tick()
                # Sleep until one interval (the smallest subscribed) after this tick started, re-reading
                # the interval whenever the subscriber set changes.
                while self._subscriptions:
                    due = started + min(s.interval for s in self._subscriptions)
                    remaining = due - loop.time()
                    if remaining <= 0:
                        break
                    self._reschedule.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._reschedule.wait(), timeout=remaining)
        finally:
            # Forget this poller when it stops: normally because nobody waits any more, or because it was
            # cancelled (its loop is shutting down). Nothing then stays bound to the loop; a subscriber that
            # is still waiting revives it from Subscription.wait(), and a new one gets a fresh poller.
            pollers = self._registry.get(loop)
            if pollers is not None and pollers.get(self.store_url) is self:
                del pollers[self.store_url]
                if not pollers:
                    self._registry.pop(loop, None)
            self._task = None

    async def _tick(self) -> None:
        subscribers = list(self._subscriptions)
        request_uuids = sorted(set().union(*(s.request_uuids for s in subscribers)))
        call_uuids = sorted(set().union(*(s.call_uuids for s in subscribers)))
        records: list[CallRecord] | None = None
        error: BaseException | None = None
        try:
            store = await self._get_store()
            records = await asyncio.to_thread(
                store.lookup, request_uuids=request_uuids, call_uuids=call_uuids
            )
            self.lookups += 1
            await self._check_silence(store)
        except Exception as exc:
            from vobiz_provider.callbacks.store import StoreUnavailable

            if not isinstance(exc, StoreUnavailable):
                log.exception(
                    "Looking up %d waiting Vobiz calls in the callback store failed", len(subscribers)
                )
            error = exc
        by_request: dict[str, list[CallRecord]] = {}
        by_call: dict[str, list[CallRecord]] = {}
        for record in records or ():
            if record.request_uuid:
                by_request.setdefault(record.request_uuid, []).append(record)
            if record.call_uuid:
                by_call.setdefault(record.call_uuid, []).append(record)
        for subscription in subscribers:
            if subscription not in self._subscriptions:
                continue  # left while the query ran
            mine: dict[int, CallRecord] = {}
            if records is not None:
                for key in subscription.request_uuids:
                    for record in by_request.get(key, ()):
                        mine.setdefault(id(record), record)
                for key in subscription.call_uuids:
                    for record in by_call.get(key, ()):
                        mine.setdefault(id(record), record)
            subscription._deliver(
                list(mine.values()) if error is None else None, error, self._last_callback_at
            )

    async def _get_store(self) -> CallbackStore:
        if self._store is None:
            from vobiz_provider.callbacks.store import get_store

            # get_store may create the engine (file system, network): keep it off the loop too.
            self._store = await asyncio.to_thread(get_store, self.store_url)
        return self._store

    async def _check_silence(self, store: CallbackStore) -> None:
        now = time.monotonic()
        if self._silence_checked_at is not None and now - self._silence_checked_at < SILENCE_CHECK_INTERVAL:
            return
        self._silence_checked_at = now
        self._last_callback_at = _epoch(await asyncio.to_thread(store.last_callback_at))


_STORE_URLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, str] = weakref.WeakKeyDictionary()


def configured_store_url() -> str:
    """``[vobiz] callback_store``, read once per event loop.

    Reading Airflow's configuration costs a fraction of a millisecond per key; a triggerer starting
    1,000 triggers would spend seconds of event-loop time on it. The value is kept per loop, so a new
    loop (``dag.test()``, a worker's in-process wait, the next test) reads it afresh.
    """
    loop = asyncio.get_running_loop()
    url = _STORE_URLS.get(loop)
    if url is None:
        from vobiz_provider.callbacks.config import get_settings

        url = _STORE_URLS[loop] = get_settings().callback_store
    return url


@contextlib.asynccontextmanager
async def subscribe(
    store_url: str, *, request_uuids: Iterable[str] = (), call_uuids: Iterable[str] = (), interval: float
) -> AsyncIterator[Subscription]:
    """Subscribe to the running loop's shared poller of ``store_url`` (see :meth:`SharedPoller.subscribe`)."""
    poller = SharedPoller.for_store(store_url)
    async with poller.subscribe(request_uuids=request_uuids, call_uuids=call_uuids, interval=interval) as sub:
        yield sub
