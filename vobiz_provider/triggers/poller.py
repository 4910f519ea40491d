"""One callback-store poller per triggerer event loop, shared by every waiting trigger.

A triggerer runs all its triggers as coroutines of one asyncio event loop. If each
:class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger` queried the callback store on its own,
1,000 waiting calls would cost 1,000 queries per poll interval. Instead each trigger *subscribes* its
request/call UUIDs here, and one background task per (event loop, store URL) runs a single
:meth:`CallLedger.changed_calls` query each interval and hands every subscriber the records that concern
it.

The query asks for **changes only**: the call rows updated since the poller's cursor, plus the current rows
of the subscribers that joined since the last tick. A tick therefore costs in proportion to the number of
calls that changed, not to the number of waiting calls: 10,000 idle waiters cost the same as ten.

Rules the implementation keeps:

* Nothing outlives its event loop. Pollers are kept per running loop (``dag.test()`` runs each trigger in a
  fresh ``asyncio.run()``), the background task stops as soon as nobody is subscribed and forgets itself,
  and a new subscription starts a new task on demand.
* The event loop is never blocked: the store is synchronous (SQLAlchemy Core), so every call to it runs in
  a worker thread through :func:`asyncio.to_thread`, and so does building the records of the newly
  subscribed calls. What stays on the loop per tick is a dictionary look-up per changed row.
* No per-tick work grows with the number of subscribers: subscribers are indexed by UUID when they join,
  the tick interval comes from a count of the subscribed intervals, and only the subscribers whose rows
  changed are woken.
* Nothing is missed: ``updated_at`` is stamped by the writer when its transaction *begins*, so a row can
  become visible after a query that asked from a later time. Each query therefore asks from
  :data:`CHANGE_OVERLAP` seconds before the previous query began, and rows already delivered are
  recognised by their version and skipped. The overlap must exceed a write transaction plus the clock
  skew between the triggerer and the hosts that write the store (receiver, workers; NTP keeps it to
  milliseconds); a change missed beyond that is still found by the trigger's API reconciliation.
* A subscriber that is cancelled (trigger timeout, triggerer shutdown, user kill) is unsubscribed by the
  ``async with`` block that holds it; the shared task is never cancelled on a subscriber's behalf.
* ``last_callback_at()`` (used by triggers to notice a silent receiver) is asked at most once per
  :data:`SILENCE_CHECK_INTERVAL` seconds, so it adds almost nothing to the one query per interval.

The cyclic garbage collector is left alone (no ``gc.freeze()``): the triggerer owns the process, and with a
tick allocating only per change there is little for it to collect.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from vobiz_provider.config import get_settings
from vobiz_provider.exceptions import LedgerUnavailableError
from vobiz_provider.ledger import get_ledger
from vobiz_provider.triggers.subscription import Subscription

if TYPE_CHECKING:
    from collections.abc import Iterable

    from vobiz_provider.ledger import CallChange, CallLedger
    from vobiz_provider.ledger.change_signal import ChangeSignal

__all__ = [
    "CHANGE_OVERLAP",
    "SILENCE_CHECK_INTERVAL",
    "SharedPoller",
    "Subscription",
    "configured_store_url",
    "subscribe",
]

log = logging.getLogger(__name__)

#: Seconds between two ``last_callback_at()`` queries of one poller.
SILENCE_CHECK_INTERVAL = 30.0
#: Seconds a freshly started poller waits before its first query, so that the triggers a triggerer
#: starts in one burst (e.g. after a restart) are served by one query rather than one each.
FIRST_TICK_DELAY = 0.05
#: Seconds the change cursor reaches back (see the module docstring): longer than a write transaction plus
#: the clock skew between the triggerer and the store's writers. Rows changed within it are read again
#: (each costs some 25 µs of CPU to read, nothing to skip), so it is kept short.
CHANGE_OVERLAP = 5.0
#: Most request/call UUIDs of new subscribers loaded by one tick (the rest wait for the next), so that a
#: tick stays one query (``MAX_IN_PARAMS`` of the store) whatever the burst of new triggers.
MAX_NEW_UUIDS = 20_000
#: Least seconds between two queries run early because the store signalled a write: a burst of callbacks
#: costs at most one query per this many seconds, and an event comes at most this much later.
PUSH_MIN_GAP = 0.1
#: Seconds an early query reaches back before the previous query (any): the store signals at commit, so
#: the rows of the signalling transaction are visible; a slower transaction is left to the next timed query.
PUSH_OVERLAP = 1.0
#: Seconds before a poller whose store could not be watched tries again.
SIGNAL_RETRY = 30.0


def _epoch(value: Any) -> float | None:
    """``last_callback_at()`` may answer a datetime or epoch seconds; triggers compare epoch seconds."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


class SharedPoller:
    """Polls one callback store for every :class:`Subscription` of one event loop.

    Get it with :meth:`for_store` (or use :func:`subscribe`); do not construct it directly.

    The poller holds no reference to its event loop (only the registry, weakly, does), so a loop that
    ends while triggers still wait is not kept alive by it.

    :param store_url: SQLAlchemy URL of the callback store (passed to ``get_ledger``).
    """

    _registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedPoller]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._subscriptions: set[Subscription] = set()
        #: Subscribers whose rows no poll has loaded yet, in the order they joined.
        self._pending: dict[Subscription, None] = {}
        self._by_request: dict[str, list[Subscription]] = {}
        self._by_call: dict[str, list[Subscription]] = {}
        #: How many subscribers ask for each interval (the tick uses the smallest).
        self._intervals: dict[float, int] = {}
        self._task: asyncio.Task[None] | None = None
        #: The context the subscriptions' wait timers run in: one for all, rather than a copy of the
        #: waiter's context per timer (each is one more object for the garbage collector to walk).
        self._context = contextvars.Context()
        self._reschedule = asyncio.Event()
        self._store: CallLedger | None = None
        #: The clock when the last successful query began.
        self._last_query_at: dt.datetime | None = None
        self._polled_at: float | None = None
        self._error: BaseException | None = None
        #: A signal's exception (e.g. Airflow's task timeout, raised by SIGALRM in whatever code runs at
        #: that moment) that landed in this poller's task: it belongs to the waiters, who re-raise it.
        self._fatal: BaseException | None = None
        self._failing_since: float | None = None
        self._last_callback_at: float | None = None
        self._silence_checked_at: float | None = None
        #: Number of polls this poller has run (each is one store query); for logs and tests.
        self.lookups = 0
        #: How many of them ran early because the store signalled a write.
        self.pushed_lookups = 0
        #: The clock when the last successful timed (not early) query began: its cursor's origin.
        self._last_timed_query_at: dt.datetime | None = None
        self._signal: ChangeSignal | None = None
        self._signal_tried_at: float | None = None
        #: The store signalled a write since the last query began.
        self._nudged = False

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

    def subscribe(
        self, *, request_uuids: Iterable[str] = (), call_uuids: Iterable[str] = (), interval: float
    ) -> Subscription:
        """Subscribe for the records of these UUIDs for the duration of an ``async with`` block::

            async with poller.subscribe(request_uuids=[...], interval=5.0) as subscription:
                ...

        :param request_uuids: Request UUIDs to look up.
        :param call_uuids: Call UUIDs to look up.
        :param interval: Seconds between polls this subscriber needs (the poller uses the smallest).
        :raises ValueError: ``interval`` is not positive.
        """
        return Subscription(
            request_uuids=request_uuids, call_uuids=call_uuids, interval=interval, poller=self
        )

    def _join(self, subscription: Subscription) -> None:
        """A subscription's ``async with`` block begins."""
        if subscription in self._subscriptions:
            raise RuntimeError("This subscription is already active")
        self._add(subscription)
        self._ensure_running()
        self._reschedule.set()  # the tick interval may have shrunk

    def _leave(self, subscription: Subscription) -> None:
        """A subscription's ``async with`` block ends (normally, by an exception or by cancellation)."""
        self._remove(subscription)
        # The task notices an empty subscriber set itself and stops; waking it makes that prompt.
        self._reschedule.set()

    def _add(self, subscription: Subscription) -> None:
        self._subscriptions.add(subscription)
        self._pending[subscription] = None
        for key in subscription.request_uuids:
            self._by_request.setdefault(key, []).append(subscription)
        for key in subscription.call_uuids:
            self._by_call.setdefault(key, []).append(subscription)
        self._intervals[subscription.interval] = self._intervals.get(subscription.interval, 0) + 1

    def _remove(self, subscription: Subscription) -> None:
        if subscription not in self._subscriptions:
            return
        self._subscriptions.discard(subscription)
        self._pending.pop(subscription, None)
        for index, keys in (
            (self._by_request, subscription.request_uuids),
            (self._by_call, subscription.call_uuids),
        ):
            for key in keys:
                subscribers = index.get(key)
                if subscribers is not None:
                    with contextlib.suppress(ValueError):
                        subscribers.remove(subscription)
                    if not subscribers:
                        del index[key]
        count = self._intervals.get(subscription.interval, 0) - 1
        if count > 0:
            self._intervals[subscription.interval] = count
        else:
            self._intervals.pop(subscription.interval, None)

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
            timed_at = loop.time()
            pushed = False
            while self._subscriptions:
                started = loop.time()
                if not pushed:
                    timed_at = started
                self._nudged = False
                await self._tick(pushed=pushed)
                await self._watch_store()
                # Sleep until one interval (the smallest subscribed) after the last timed tick started,
                # re-reading the interval whenever the subscriber set changes; or, once the store signalled
                # a write, until PUSH_MIN_GAP after this tick started.
                while self._subscriptions:
                    due = timed_at + min(self._intervals)
                    pushed = self._nudged and started + PUSH_MIN_GAP < due
                    if pushed:
                        due = started + PUSH_MIN_GAP
                    remaining = due - loop.time()
                    if remaining <= 0:
                        break
                    self._reschedule.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._reschedule.wait(), timeout=remaining)
        except asyncio.CancelledError:
            raise
        except Exception:
            raise
        except BaseException as exc:
            # Not ours: a timeout or kill signal raised while this task happened to run. Hand it to the
            # waiters (Subscription.wait re-raises it), or the wait would go on as if nothing happened.
            self._fatal = exc
            for subscription in list(self._subscriptions):
                subscription._wake()
        finally:
            if self._signal is not None:
                self._signal.close()
                self._signal = None
            # Forget this poller when it stops: normally because nobody waits any more, or because it was
            # cancelled (its loop is shutting down). Nothing then stays bound to the loop; a subscriber that
            # is still waiting revives it from Subscription.wait(), and a new one gets a fresh poller.
            pollers = self._registry.get(loop)
            if pollers is not None and pollers.get(self.store_url) is self:
                del pollers[self.store_url]
                if not pollers:
                    self._registry.pop(loop, None)
            self._task = None

    def _cursor(self, *, pushed: bool = False) -> dt.datetime | None:
        """Oldest ``updated_at`` the next query asks for; ``None`` before the first successful query.

        A timed query reaches :data:`CHANGE_OVERLAP` back from the previous *timed* query, so the timed
        queries alone miss nothing, as if no early one ran; an early one (``pushed``) reaches
        :data:`PUSH_OVERLAP` back from the previous query of any kind.
        """
        if pushed and self._last_query_at is not None:
            return self._last_query_at - dt.timedelta(seconds=PUSH_OVERLAP)
        origin = self._last_timed_query_at or self._last_query_at
        if origin is None:
            return None  # the first query loads every subscriber's rows: nothing older to catch up on
        return origin - dt.timedelta(seconds=CHANGE_OVERLAP)

    def _nudge(self) -> None:
        """The store signalled a write: query early (at most every :data:`PUSH_MIN_GAP` seconds)."""
        self._nudged = True
        self._reschedule.set()

    async def _watch_store(self) -> None:
        """Open the store's change signal (:mod:`~vobiz_provider.ledger.change_signal`) if it has none; a
        store that cannot be watched is polled only, and tried again after :data:`SIGNAL_RETRY` seconds."""
        signal = self._signal
        if signal is not None and not signal.broken:
            return
        now = time.monotonic()
        if self._store is None or (
            self._signal_tried_at is not None and now - self._signal_tried_at < SIGNAL_RETRY
        ):
            return
        self._signal_tried_at = now
        self._signal = None
        try:
            signal = await asyncio.to_thread(self._store.open_change_signal)
        except Exception as exc:
            log.warning("Cannot watch the callback store for writes (polling only): %s", exc)
            return
        if signal is not None:
            if not self._subscriptions:  # everybody left while it connected
                signal.close()
                return
            signal.start(self._nudge)
            self._signal = signal

    def _take_pending(self) -> tuple[list[Subscription], frozenset[str], frozenset[str]]:
        """The subscribers this tick loads (at most :data:`MAX_NEW_UUIDS` UUIDs), and their UUIDs."""
        loading: list[Subscription] = []
        requests: set[str] = set()
        calls: set[str] = set()
        for subscription in self._pending:
            size = len(subscription.request_uuids) + len(subscription.call_uuids)
            if loading and len(requests) + len(calls) + size > MAX_NEW_UUIDS:
                break
            loading.append(subscription)
            requests.update(subscription.request_uuids)
            calls.update(subscription.call_uuids)
        return loading, frozenset(requests), frozenset(calls)

    async def _tick(self, *, pushed: bool = False) -> None:
        loading, requests, calls = self._take_pending()
        since = self._cursor(pushed=pushed)
        query_at = dt.datetime.now(dt.timezone.utc)
        try:
            store = await self._get_store()
            changes = await asyncio.to_thread(self._fetch, store, since, requests, calls)
            self.lookups += 1
            self.pushed_lookups += pushed
            await self._check_silence(store)
        except Exception as exc:
            self._failed(exc, loading)
            return
        self._polled_at = time.time()
        self._last_query_at = query_at
        if not pushed:
            self._last_timed_query_at = query_at
        recovered, self._error, self._failing_since = self._error is not None, None, None
        touched: dict[Subscription, None] = {}
        loading_now = set(loading)
        for change in changes:
            for index, key in ((self._by_request, change.request_uuid), (self._by_call, change.call_uuid)):
                for subscription in index.get(key, ()) if key is not None else ():
                    if (subscription._loaded or subscription in loading_now) and subscription._take(change):
                        touched[subscription] = None
        for subscription in loading:
            if subscription in self._subscriptions:  # not left while the query ran
                subscription._loaded = True
                self._pending.pop(subscription, None)
                touched[subscription] = None
        if recovered:
            touched.update(dict.fromkeys(self._subscriptions))
        for subscription in touched:
            subscription._publish()

    @staticmethod
    def _fetch(
        store: CallLedger, since: dt.datetime | None, requests: frozenset[str], calls: frozenset[str]
    ) -> list[CallChange]:
        """One query (worker thread); the records of newly subscribed calls are built here, off the loop."""
        changes = store.changed_calls(since=since, request_uuids=sorted(requests), call_uuids=sorted(calls))
        for change in changes:
            if change.request_uuid in requests or change.call_uuid in calls:
                change.record()
        return changes

    def _failed(self, exc: Exception, loading: list[Subscription]) -> None:
        if not isinstance(exc, LedgerUnavailableError):
            log.exception(
                "Reading the callback store for %d waiting Vobiz calls failed", len(self._subscriptions)
            )
        first = self._error is None
        self._error = exc
        if first:
            self._failing_since = time.time()
            for subscription in self._subscriptions:  # once per outage: every waiter hears of it
                subscription._reported = True
                subscription._wake()
        else:
            for subscription in loading:  # a new waiter hears of an outage that began before it came
                if not subscription._reported:
                    subscription._reported = True
                    subscription._wake()

    async def _get_store(self) -> CallLedger:
        if self._store is None:
            # Creating the ledger's engine (file system, network) blocks: keep it off the triggerer's loop.
            self._store = await asyncio.to_thread(get_ledger, self.store_url)
        return self._store

    async def _check_silence(self, store: CallLedger) -> None:
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
        url = _STORE_URLS[loop] = get_settings().callback_store
    return url


def subscribe(
    store_url: str, *, request_uuids: Iterable[str] = (), call_uuids: Iterable[str] = (), interval: float
) -> Subscription:
    """Subscribe to the running loop's shared poller of ``store_url`` (see :meth:`SharedPoller.subscribe`),
    for the duration of an ``async with`` block; call it from a coroutine of that loop."""
    poller = SharedPoller.for_store(store_url)
    return poller.subscribe(request_uuids=request_uuids, call_uuids=call_uuids, interval=interval)
