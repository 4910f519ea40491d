"""The event trigger that turns each inbound call, key press or hangup into an Airflow asset event.

Use it with an ``AssetWatcher``; a DAG scheduled on the asset then runs for the calls to an inbound
application (:mod:`vobiz_provider.models.inbound`, :mod:`vobiz_provider.receiver.inbound`)::

    incident_line = Asset(
        "vobiz://inbound/incident-line",
        watchers=[AssetWatcher(
            name="incident_line_key_presses",
            trigger=VobizInboundCallTrigger(application="incident-line", kinds=["digits"]),
        )],
    )

**One poll for every watcher.** The trigger declares a shared stream (Airflow 3.3
``shared_stream_key``): all the triggers of one ``stream`` in a triggerer process share one poll of the
callback store (one query per ``poll_interval``, that of the first trigger of the stream), and each keeps the
events of its own application and kinds (``filter_shared_stream``).

**At least once, each call once.** Trigger kwargs are fixed when the DAG is parsed, and a trigger has no
metadata-database access, so the cursor cannot live in either: it lives in the callback store
(``vobiz_inbound_cursors``, one row per ``stream``). The stream runs in Airflow's *ack mode*
(``create_shared_stream_producer``): the cursor advances only over events that every watcher has passed and
whose asset events Airflow confirmed it stored in its metadata database. A triggerer restart, a watcher
that fails or times out (``[triggerer] shared_stream_ack_timeout``) or an unreachable store restarts the poll
from the cursor, so nothing is lost. The receiver stores one row per call, per key press and per hangup
(Vobiz's retries are dropped), so one call is one event; a duplicate asset event can only come from a
triggerer that dies in the second or so between Airflow storing the event and the cursor's commit. The
event carries ``event_id`` and ``call_uuid`` to recognise it then.

Two limits of Airflow's shared streams apply: a watcher that joins a running stream receives the events
broadcast after it joined (set ``[triggerer] shared_stream_cohort_grace_period`` so that the watchers
restarting together join together), and Airflow gives an asset event that arrives while the run of an
earlier one is being queued to the next event's run, not a run of its own (read every
``triggering_asset_events`` entry).

The asset event's ``extra`` is ``{"from_trigger": True, "payload": {...}}`` with the payload::

    {"vobiz_inbound": 1, "event_id": 7, "application": "incident-line", "kind": "digits",
     "call_uuid": "...", "from_number": "+91******3210", "to_number": "+91******0001", "digits": "1",
     "call_status": "in-progress", "hangup_cause_code": None, "hangup_cause_name": None, "duration": None,
     "received_at": "2026-12-03T16:20:00+00:00"}

Numbers are masked as in logs (``[vobiz] mask_phone_numbers``): asset events are shown to everyone who may
see the asset; the callback store keeps them whole.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import SharedStreamProducer

from vobiz_provider.ledger import get_ledger
from vobiz_provider.models.inbound import INBOUND_KINDS, NAME_PATTERN
from vobiz_provider.phone_masking import masked_number

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Hashable, Sequence

    from airflow.triggers.shared_stream import AdvanceItem

    from vobiz_provider.ledger import CallLedger, InboundEvent

__all__ = ["InboundStreamProducer", "VobizInboundCallTrigger"]

#: Version of the payload's shape (key ``vobiz_inbound``).
PAYLOAD_FORMAT: Final = 1

#: Rows read per poll at most.
BATCH: Final = 500


def event_payload(event: InboundEvent) -> dict[str, Any]:
    """The asset-event payload of one stored inbound event (numbers masked per the setting)."""
    payload = {"vobiz_inbound": PAYLOAD_FORMAT, "event_id": event.id, **event.to_payload()}
    payload.pop("id")
    for key in ("from_number", "to_number"):
        if payload[key] is not None:
            payload[key] = masked_number(payload[key])
    return payload


class InboundStreamProducer(SharedStreamProducer):
    """One poll of the callback store for every trigger of a stream; advances the stream's cursor.

    :param stream: The cursor's name.
    :param poll_interval: Seconds between two polls when there is nothing new.
    :param ledger: The callback store (``[vobiz] callback_store`` by default).
    """

    def __init__(self, *, stream: str, poll_interval: float, ledger: CallLedger | None = None) -> None:
        self.stream = stream
        self.poll_interval = poll_interval
        self._ledger = ledger

    @property
    def ledger(self) -> CallLedger:
        """The callback store."""
        if self._ledger is None:
            self._ledger = get_ledger()
        return self._ledger

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        """Every stored event after the cursor, then each new one, as ``(payload, event id)``."""
        position = await asyncio.to_thread(self.ledger.inbound_cursor, self.stream)
        while True:
            events = await asyncio.to_thread(self.ledger.inbound_events_after, position, limit=BATCH)
            for event in events:
                position = event.id
                yield event_payload(event), event.id
            if len(events) < BATCH:
                await asyncio.sleep(self.poll_interval)

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Commit the cursor over the clean prefix of ``batch``; a failed event ends the poll (it restarts
        from the cursor, so the event is delivered again)."""
        last = None
        failed = None
        for item in batch:
            outcome = item.outcome
            if outcome.failed or outcome.rejected:
                failed = item.broker_payload
                break
            last = item.broker_payload  # acked by every watcher, or broadcast to none: passed
        if last is not None:
            await asyncio.to_thread(self.ledger.advance_inbound_cursor, self.stream, int(last))
        if failed is not None:
            raise RuntimeError(
                f"inbound event {failed} of stream {self.stream!r} was not delivered to every watcher: "
                "polling again from the last delivered event"
            )


class VobizInboundCallTrigger(BaseEventTrigger):
    """Fire an asset event for each call, key press or hangup of an inbound Vobiz application.

    :param application: The application's name in ``[vobiz] inbound_applications``.
    :param kinds: Which events fire: ``call`` (someone called), ``digits`` (they pressed keys), ``hangup``.
    :param digits: Fire ``digits`` events only for these key sequences (e.g. ``["1"]``); ``None``: any.
    :param stream: The cursor's name in the callback store: the triggers of one stream share one poll and
        one cursor. Give a watcher its own stream to let it catch up on its own.
    :param poll_interval: Seconds between two polls of the callback store (the stream's first trigger's).
    """

    def __init__(
        self,
        *,
        application: str,
        kinds: Sequence[str] = ("call",),
        digits: Sequence[str] | None = None,
        stream: str = "default",
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if not isinstance(application, str) or not NAME_PATTERN.fullmatch(application):
            raise ValueError(f"application must match {NAME_PATTERN.pattern}, got {application!r}")
        if isinstance(kinds, str):
            kinds = (kinds,)
        unknown = [kind for kind in kinds if kind not in INBOUND_KINDS]
        if not kinds or unknown:
            raise ValueError(f"kinds must be some of {', '.join(INBOUND_KINDS)}, got {list(kinds)!r}")
        if isinstance(digits, str):
            digits = (digits,)
        if not isinstance(stream, str) or not NAME_PATTERN.fullmatch(stream):
            raise ValueError(f"stream must match {NAME_PATTERN.pattern}, got {stream!r}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        self.application = application
        self.kinds = tuple(kinds)
        self.digits = tuple(digits) if digits is not None else None
        self.stream = stream
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "application": self.application,
                "kinds": list(self.kinds),
                "digits": list(self.digits) if self.digits is not None else None,
                "stream": self.stream,
                "poll_interval": self.poll_interval,
            },
        )

    def wants(self, payload: dict[str, Any]) -> bool:
        """Whether this trigger fires for ``payload``."""
        if payload.get("application") != self.application or payload.get("kind") not in self.kinds:
            return False
        return payload["kind"] != "digits" or self.digits is None or payload.get("digits") in self.digits

    # -- shared stream (Airflow 3.3) ------------------------------------------------------------------

    def shared_stream_key(self) -> Hashable | None:
        return ("vobiz_provider.inbound", self.stream)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> SharedStreamProducer:
        return InboundStreamProducer(stream=kwargs["stream"], poll_interval=float(kwargs["poll_interval"]))

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for payload in shared_stream:
            if self.wants(payload):
                yield TriggerEvent(payload)

    # -- on its own (no shared streams: tests, or an older triggerer) ----------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll on its own: the cursor advances once the consumer asked for the next event."""
        producer = InboundStreamProducer(stream=self.stream, poll_interval=self.poll_interval)
        async for payload, event_id in producer.open_stream():
            if self.wants(payload):
                yield TriggerEvent(payload)
            await asyncio.to_thread(producer.ledger.advance_inbound_cursor, self.stream, event_id)
