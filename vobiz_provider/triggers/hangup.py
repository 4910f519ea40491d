"""The trigger that waits, in the triggerer, until every destination of a fired Vobiz call has hung up.

Where the answer comes from, in order of preference:

1. **The call ledger**, fed by the receiver with Vobiz's ring/answer/machine-detection/hangup
   callbacks. Every waiting trigger of a triggerer process is served by one shared poller
   (:mod:`vobiz_provider.triggers.poller`): one query per poll interval, whatever the number of waiting
   calls.
2. **The Vobiz API** (live call → queued call → CDR), asked only when the callbacks cannot be relied on:
   after ``reconcile_after`` (the latest moment a hangup should have arrived), when the ledger has been
   silent or unreadable for a long time, or always when ``use_store`` is off (the user routed
   ``hangup_url`` elsewhere). API answers are rate-limited and a terminal one is written back to the ledger
   so that other waiters (sibling tasks, retries, the sensor) see it.

``run()`` yields exactly one event, whose payload is deterministic for a given outcome::

    {"status": "hangup" | "timeout" | "error", "request_uuids": [...],
     "calls": [CallRecord.to_event(), ...],   # sorted by destination
     "message": "..."}

The trigger logs the call's timeline as it observes it (:class:`~vobiz_provider.calls.tracker.CallTracker`:
queued → ringing → answered → machine detection → digits → hangup with cause and duration); in Airflow 3
those lines appear in the task's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from vobiz_provider.calls.api import aask_api
from vobiz_provider.calls.tracker import CallTracker
from vobiz_provider.exceptions import VobizAuthError
from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.ledger import get_ledger
from vobiz_provider.phone_masking import masked_number, masked_numbers
from vobiz_provider.triggers.poller import configured_store_url, subscribe
from vobiz_provider.untrusted import loggable

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterable

    from airflow._shared.logging.types import Logger

    from vobiz_provider.client import AsyncVobizClient
    from vobiz_provider.models.record import CallRecord
    from vobiz_provider.triggers.poller import Subscription

__all__ = ["VobizCallHangupTrigger"]

#: Least seconds between two API reconciliations of one trigger while the ledger is in use.
MIN_RECONCILE_INTERVAL = 30.0
#: The store counts as silent when no callback at all arrived for this many poll intervals ...
SILENCE_INTERVALS = 12
#: ... and at least this many seconds.
MIN_SILENCE_SECONDS = 120.0
#: Seconds one API reconciliation (all lookups of one round) may take before it is abandoned.
RECONCILE_TIMEOUT = 60.0
#: Seconds the last store lookup at the deadline may take.
FINAL_LOOKUP_TIMEOUT = 5.0
#: Seconds between two "store unavailable" warnings of one trigger.
STORE_WARNING_INTERVAL = 300.0


#: The trigger classes' loggers per event loop (see :attr:`VobizCallHangupTrigger.log`).
_LOGGERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[type, Logger]] = (
    weakref.WeakKeyDictionary()
)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


class VobizCallHangupTrigger(BaseTrigger):
    """Wait until every destination of a Vobiz call request has hung up.

    All arguments are JSON primitives, and the deadline is absolute, so a triggerer restart rebuilds the
    same trigger from :meth:`serialize` without resetting anything.

    :param request_uuids: The ``request_uuid`` values Vobiz answered to ``POST /Call/``.
    :param destinations: The ``to`` numbers/SIP URIs of the request; the wait ends when each has a
        terminal record (matched without regard to a leading ``+``). Empty when unknown (the sensor): the
        wait then ends when every known leg, or each of ``call_uuids``, is terminal.
    :param vobiz_conn_id: The Vobiz connection used to ask the API (reconciliation, ``on_kill``).
    :param deadline: Absolute time (epoch seconds) at which the wait ends with a ``timeout`` event.
    :param poll_interval: Seconds between two looks at the callback store (shared across triggers), and
        between two API lookups when ``use_store`` is off.
    :param reconcile_after: Absolute time (epoch seconds) after which a missing hangup is asked of the
        Vobiz API (normally fired-at + ring timeout + time limit + margin). ``None``: only when the store
        is silent or unreadable for long.
    :param use_store: Read the callback store. ``False`` when the callbacks go elsewhere (the user's own
        ``hangup_url``): the API is then polled every ``poll_interval``.
    :param hangup_on_kill: Hang up calls still up when a user kills, clears or marks the task (Airflow 3.3
        ``on_kill``). Never done on triggerer restarts or timeouts.
    :param call_uuids: Call UUIDs to wait for, when those rather than request UUIDs are known.
    """

    def __init__(
        self,
        *,
        request_uuids: list[str],
        destinations: list[str],
        vobiz_conn_id: str = "vobiz_default",
        deadline: float,
        poll_interval: float = 5.0,
        reconcile_after: float | None = None,
        use_store: bool = True,
        hangup_on_kill: bool = False,
        call_uuids: list[str] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is not annotated
        self.request_uuids = [str(u) for u in request_uuids]
        self.destinations = [str(d) for d in destinations]
        self.call_uuids = [str(u) for u in call_uuids] if call_uuids else None
        if not self.request_uuids and not self.call_uuids:
            raise ValueError("VobizCallHangupTrigger needs at least one of request_uuids or call_uuids")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.vobiz_conn_id = vobiz_conn_id
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.reconcile_after = None if reconcile_after is None else float(reconcile_after)
        self.use_store = bool(use_store)
        self.hangup_on_kill = bool(hangup_on_kill)
        self._tracker = self._new_tracker()
        self._next_reconcile_at = 0.0
        self._store_warned_at: float | None = None

    @property
    def log(self) -> Logger:
        """This class's logger, one per event loop, shared by the loop's triggers of this class.

        Airflow's :class:`LoggingMixin` builds a logger per instance (a lazy proxy, a bound logger, its
        writer and their bound methods); the triggers of a triggerer wait for hours, and every object they
        keep lengthens every full pass of the garbage collector, which stalls the loop. The lines still go
        to each trigger's own task log: the triggerer tells them apart by the context variables it binds in
        each trigger's task, which structlog reads when a line is written. Per loop rather than per
        process, because a logger binds its output stream on first use: a new loop (``dag.test()``, a
        worker's in-process wait, the next test) gets one bound to the streams of its day.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a loop (the operator, a test): the mixin's own, per instance
            return super().log
        loggers = _LOGGERS.get(loop)
        if loggers is None:
            loggers = _LOGGERS[loop] = {}
        logger = loggers.get(type(self))
        if logger is None:
            self._log = None  # the mixin caches its logger on the instance: not one from another loop
            logger = loggers[type(self)] = super().log
        return logger

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_uuids": list(self.request_uuids),
                "destinations": list(self.destinations),
                "vobiz_conn_id": self.vobiz_conn_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "reconcile_after": self.reconcile_after,
                "use_store": self.use_store,
                "hangup_on_kill": self.hangup_on_kill,
                "call_uuids": list(self.call_uuids) if self.call_uuids is not None else None,
            },
        )

    # ------------------------------------------------------------------------------------------------
    # run
    # ------------------------------------------------------------------------------------------------

    async def run(self) -> AsyncGenerator[TriggerEvent, None]:
        try:
            payload = await self._wait()
        except Exception as exc:  # anything unexpected ends the wait with an event saying what happened
            self.log.exception("Waiting for the Vobiz call to hang up failed")
            payload = self._payload("error", f"Waiting for the hangup failed: {type(exc).__name__}: {exc}")
        # Every subscription and HTTP client is released before the event is handed over.
        yield TriggerEvent(payload)

    def run_in_process(self, *, give_up_at: float | None = None) -> dict[str, Any] | None:
        """Wait in this thread's own event loop until the first event, and return its payload.

        What a worker does when the operator waits with ``deferrable=False``.

        :param give_up_at: Epoch seconds after which the wait stops, whatever the call does: the task's
            ``execution_timeout`` when Airflow's timeout signal did not end the task by then.
        :raises TimeoutError: At ``give_up_at``.
        """
        return asyncio.run(_first_event(self, give_up_at=give_up_at))

    def _new_tracker(self) -> CallTracker:
        return CallTracker(
            request_uuids=self.request_uuids, destinations=self.destinations, call_uuids=self.call_uuids or ()
        )

    def _payload(self, status: str, message: str) -> dict[str, Any]:
        return {
            "status": status,
            "request_uuids": list(self.request_uuids),
            "calls": self._tracker.calls(),
            "message": message,
        }

    def _shown_leg(self, key: str) -> str:
        """A leg's key for a message: a destination masked (:func:`masked_number`), a call UUID whole."""
        return masked_number(key) if key in self._tracker.destinations else key

    def _describe_target(self) -> str:
        parts = []
        if self.request_uuids:
            parts.append(f"request {', '.join(self.request_uuids)}")
        if self.call_uuids:
            parts.append(f"call {', '.join(self.call_uuids)}")
        if self.destinations:
            parts.append(f"to {masked_numbers(self.destinations)}")
        return "; ".join(parts)

    def _observe(self, records: Iterable[CallRecord]) -> None:
        for line in self._tracker.observe(records):
            self.log.info("%s", line)

    def _hangup_payload(self) -> dict[str, Any]:
        calls = self._tracker.legs.values()
        statuses = sorted({loggable(record.status) for record in calls})
        return self._payload("hangup", f"All {len(calls)} call leg(s) hung up: {', '.join(statuses)}")

    def _timeout_payload(self) -> dict[str, Any]:
        pending = self._tracker.pending()
        return self._payload(
            "timeout",
            f"Deadline {_iso(self.deadline)} passed before {len(pending)} call leg(s) hung up: "
            f"{', '.join(loggable(self._shown_leg(key)) for key in pending)}",
        )

    async def _wait(self) -> dict[str, Any]:
        self._tracker = self._new_tracker()
        started = time.time()
        self.log.info(
            "Waiting for the Vobiz call (%s) to hang up until %s; %s",
            self._describe_target(),
            _iso(self.deadline),
            "reading the callback store" if self.use_store else "polling the Vobiz API (callbacks not used)",
        )
        store_url = configured_store_url() if self.use_store else None

        if started >= self.deadline:
            if store_url is not None:
                await self._final_lookup(store_url)
            return self._hangup_payload() if self._tracker.done else self._timeout_payload()

        # Plain try/finally blocks rather than an AsyncExitStack, and the API reconciler made only when the
        # API is first asked: every waiting trigger keeps what it holds here for hours, and each object it
        # keeps lengthens every full pass of the garbage collector, which stalls the triggerer's loop.
        subscription: Subscription | None = None
        if store_url is not None:
            subscription = await subscribe(
                store_url,
                request_uuids=self.request_uuids,
                call_uuids=self.call_uuids or (),
                interval=self.poll_interval,
            ).__aenter__()
        api: _ApiReconciler | None = None
        try:
            while True:
                if self._tracker.done:
                    return self._hangup_payload()
                now = time.time()
                if now >= self.deadline:
                    if store_url is not None:
                        await self._final_lookup(store_url)  # what changed since the last poll
                    return self._hangup_payload() if self._tracker.done else self._timeout_payload()
                reconcile_in = self._reconcile_wait(now, started, subscription)
                if reconcile_in <= 0:
                    self._next_reconcile_at = now + self._reconcile_interval
                    if api is None:
                        api = _ApiReconciler(self, store_url=store_url)
                    error = await api.reconcile(timeout=min(RECONCILE_TIMEOUT, self.deadline - now))
                    if error is not None:
                        return self._payload("error", error)
                    continue
                # Sleep until something can change: the poller wakes us only when our records (or the
                # store's health) change, so an idle waiter costs nothing per interval.
                wait = min(self.deadline - now, reconcile_in)
                if subscription is None:
                    await asyncio.sleep(wait)
                    continue
                if subscription.polled_at is None:
                    # Until the first poll, which will wake us, wait at most one interval: a wait timer
                    # cancelled early stays in the loop's heap until it is due, so a far-future one would
                    # stay there, one per trigger, for hours.
                    wait = min(wait, self.poll_interval)
                if await subscription.wait(wait):
                    self._take(subscription)
        finally:
            try:
                if api is not None:
                    await api.aclose()
            finally:
                if subscription is not None:
                    await subscription.__aexit__(None, None, None)

    @property
    def _reconcile_interval(self) -> float:
        return self.poll_interval if not self.use_store else max(self.poll_interval, MIN_RECONCILE_INTERVAL)

    def _reconcile_wait(self, now: float, started: float, subscription: Subscription | None) -> float:
        """Seconds until the API should be asked (0: now), judging by what is known at ``now``.

        The API is asked when callbacks cannot be relied on: always without the store; after
        ``reconcile_after``; when the store has been unreadable, or has received no callback at all, for
        :data:`SILENCE_INTERVALS` poll intervals (at least :data:`MIN_SILENCE_SECONDS`). Never more often
        than every :attr:`_reconcile_interval`.
        """
        earliest = max(self._next_reconcile_at - now, 0.0)
        if subscription is None:
            return earliest
        silence = max(SILENCE_INTERVALS * self.poll_interval, MIN_SILENCE_SECONDS)
        candidates = []
        if self.reconcile_after is not None:
            candidates.append(self.reconcile_after - now)
        if subscription.failing_since is not None:
            candidates.append(subscription.failing_since + silence - now)
        if subscription.polled_at is not None:
            candidates.append(max(subscription.last_callback_at or 0.0, started) + silence - now)
        if not candidates:
            return max(earliest, self.poll_interval)  # nothing known yet: look again after the first poll
        return max(earliest, min(candidates), 0.0)

    def _take(self, subscription: Subscription) -> None:
        if subscription.error is not None:
            now = time.time()
            if self._store_warned_at is None or now - self._store_warned_at >= STORE_WARNING_INTERVAL:
                self._store_warned_at = now
                self.log.warning(
                    "The Vobiz callback store cannot be read (%s); retrying every %g s%s",
                    subscription.error,
                    self.poll_interval,
                    f", asking the Vobiz API after {_iso(self.reconcile_after)}"
                    if self.reconcile_after
                    else "",
                )
            return
        if self._store_warned_at is not None:
            self.log.info("The Vobiz callback store can be read again")
            self._store_warned_at = None
        self._observe(subscription.records or ())

    async def _final_lookup(self, store_url: str) -> None:
        """One direct store lookup at the deadline (also for a trigger restarted after its deadline)."""

        def lookup() -> list[CallRecord]:
            return get_ledger(store_url).lookup(
                request_uuids=self.request_uuids, call_uuids=self.call_uuids or ()
            )

        try:
            records = await asyncio.wait_for(asyncio.to_thread(lookup), timeout=FINAL_LOOKUP_TIMEOUT)
        except Exception as exc:
            self.log.warning("Could not read the callback store one last time: %s", exc)
            return
        self._observe(records)

    # ------------------------------------------------------------------------------------------------
    # kill / cleanup
    # ------------------------------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Release nothing remote: the call is never hung up here (this also runs on triggerer restarts)."""

    async def on_kill(self) -> None:
        """A user killed, cleared or marked the task: hang up calls still up if ``hangup_on_kill``."""
        if not self.hangup_on_kill:
            self.log.info("Task killed by a user; leaving the Vobiz call up (hangup_on_kill is off)")
            return
        uuids = list(self._tracker.uuids_to_ask())
        if not uuids:
            self.log.info("Task killed by a user; no Vobiz call is still up")
            return
        hook = VobizHook(vobiz_conn_id=self.vobiz_conn_id)
        client = await hook.aget_conn()
        try:
            for uuid in uuids:
                try:
                    hung_up = await client.hangup_call(uuid)
                except Exception as exc:
                    self.log.warning("Could not hang up Vobiz call %s: %s", uuid, exc)
                    continue
                if hung_up:
                    self.log.info("Task killed by a user: hung up Vobiz call %s", uuid)
                else:
                    self.log.info("Task killed by a user: Vobiz call %s had already ended", uuid)
        finally:
            with contextlib.suppress(Exception):
                await hook.aclose()


class _ApiReconciler:
    """Asks the Vobiz API about the legs the callbacks have not settled (live → queued → CDR)."""

    __slots__ = ("_announced", "_client", "_hook", "store_url", "trigger")

    def __init__(self, trigger: VobizCallHangupTrigger, *, store_url: str | None) -> None:
        self.trigger = trigger
        self.store_url = store_url
        self._hook: VobizHook | None = None
        self._client: AsyncVobizClient | None = None
        self._announced = False

    async def aclose(self) -> None:
        if self._hook is not None:
            hook, self._hook, self._client = self._hook, None, None
            with contextlib.suppress(Exception):
                await hook.aclose()

    async def reconcile(self, *, timeout: float) -> str | None:
        """One round of API lookups; returns an error message only when waiting on is pointless."""
        log = self.trigger.log
        try:
            await asyncio.wait_for(self._reconcile(), timeout=max(timeout, 1.0))
        except TimeoutError:
            log.warning("Asking the Vobiz API about the call timed out; will ask again later")
        except Exception as exc:
            fatal = self._is_fatal(exc)
            if fatal and not self.trigger.use_store:
                return f"Cannot ask the Vobiz API about the call ({type(exc).__name__}): {exc}"
            log.warning(
                "Asking the Vobiz API about the call failed (%s: %s); will ask again later",
                type(exc).__name__,
                exc,
            )
        return None

    @staticmethod
    def _is_fatal(exc: Exception) -> bool:
        return isinstance(exc, (AirflowNotFoundException, VobizAuthError))

    async def _get_client(self) -> AsyncVobizClient:
        if self._client is None:
            self._hook = VobizHook(vobiz_conn_id=self.trigger.vobiz_conn_id)
            self._client = await self._hook.aget_conn()
        return self._client

    async def _reconcile(self) -> None:
        trigger, log = self.trigger, self.trigger.log
        uuids = trigger._tracker.uuids_to_ask()
        if not uuids:
            return
        if trigger.use_store or not self._announced:
            # With the store this is the exception (rate-limited), so say so each time; without it the
            # API is the only source, polled every interval: say it once.
            log.info("No hangup seen yet for %s; asking the Vobiz API", ", ".join(uuids))
            self._announced = True
        client = await self._get_client()
        for uuid, request_uuid in uuids.items():
            context = {"request_uuid": request_uuid} if request_uuid else {}
            record = await aask_api(client, uuid, context)
            if record is None:
                log.debug("Vobiz knows no live, queued or finished call %s (yet)", uuid)
                continue
            trigger._observe([record])
            if record.terminal and self.store_url is not None:
                await self._record(record)

    async def _record(self, record: CallRecord) -> None:
        """Write an API-settled outcome to the store so that sibling waiters and retries see it."""
        store_url = self.store_url
        assert store_url is not None

        def write() -> None:
            get_ledger(store_url).cache_api_result(record)

        try:
            await asyncio.to_thread(write)
        except Exception as exc:
            self.trigger.log.warning("Could not record the API's answer in the callback store: %s", exc)


async def _first_event(
    trigger: VobizCallHangupTrigger, *, give_up_at: float | None = None
) -> dict[str, Any] | None:
    events = trigger.run()
    try:
        if give_up_at is None:
            event = await anext(events, None)
        else:
            event = await asyncio.wait_for(anext(events, None), timeout=max(0.0, give_up_at - time.time()))
    finally:
        await events.aclose()
    return None if event is None else event.payload
