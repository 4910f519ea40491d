"""When is a call over? :class:`CallTracker` turns what is known of each leg into a verdict and a timeline.

Shared by the trigger and the sensor, so both decide "hung up" the same way: a call only moves forward
(queued → ringing → answered → ended), a terminal state absorbs a late or stale view, and every observed
change becomes one line of the call's timeline in the task log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vobiz_provider.models.record import normalise_destination
from vobiz_provider.phone_masking import masked_number
from vobiz_provider.untrusted import loggable

if TYPE_CHECKING:
    from collections.abc import Iterable

    from vobiz_provider.models.record import CallRecord

__all__ = ["CallTracker"]

_STATUS_WORDS = {
    "queued": "queued",
    "ringing": "ringing",
    "in-progress": "answered",
}


class CallTracker:
    """What is known about each expected call leg; turns new observations into timeline lines.

    Shared by the trigger and the sensor so both decide "hung up" the same way.

    :param request_uuids: Request UUIDs being waited for.
    :param destinations: Expected destinations (one leg each); empty when unknown.
    :param call_uuids: Call UUIDs being waited for (one leg each), when known instead of destinations.
    """

    # Every waiting trigger keeps one for hours: slots, and the UUIDs in tuples (a tuple of strings is not
    # tracked by the garbage collector, whose full passes stall the triggerer's loop; a list is).
    __slots__ = ("call_uuids", "destinations", "legs", "request_uuids")

    def __init__(
        self, *, request_uuids: Iterable[str], destinations: Iterable[str], call_uuids: Iterable[str]
    ) -> None:
        self.request_uuids: tuple[str, ...] = tuple(dict.fromkeys(request_uuids))
        self.call_uuids: tuple[str, ...] = tuple(dict.fromkeys(call_uuids))
        self.destinations: tuple[str, ...] = tuple(
            dict.fromkeys(normalise_destination(d) for d in destinations if d)
        )
        #: Latest record per leg: keyed by normalised destination when destinations are known, else by
        #: call UUID.
        self.legs: dict[str, CallRecord] = {}

    def _key(self, record: CallRecord) -> str | None:
        if self.destinations:
            if len(self.destinations) == 1:
                return self.destinations[0]  # one destination: every record of the request is its leg
            key = normalise_destination(record.to)
            return key if key in self.destinations else None
        placeholder = record.leg_key
        if record.call_uuid is None:
            # A fired leg Vobiz has not reported yet; it becomes the leg of the call that names it.
            if placeholder is None:
                return None
            same_leg = any(leg.call_uuid and leg.leg_key == placeholder for leg in self.legs.values())
            return None if same_leg else placeholder
        waiting = self.legs.get(placeholder) if placeholder is not None else None
        if placeholder is not None and waiting is not None and waiting.call_uuid is None:
            self.legs[record.call_uuid] = self.legs.pop(placeholder)
        return record.call_uuid

    def observe(self, records: Iterable[CallRecord]) -> list[str]:
        """Take in records (store or API); return one timeline line per observed change."""
        lines: list[str] = []
        for record in records:
            key = self._key(record)
            if key is None:
                continue
            previous = self.legs.get(key)
            if previous is not None:
                if previous.terminal and not record.terminal:
                    continue  # terminal states absorb: a late or stale view never undoes a hangup
                if record.rank < previous.rank:
                    continue  # a call only moves forward (ringing never follows answered)
                if record.rank == previous.rank and record.source == "api" and not record.terminal:
                    continue  # the store already says as much, and says more (machine, digits)
            self.legs[key] = record
            lines.extend(_timeline(previous, record))
        return lines

    @property
    def done(self) -> bool:
        """Every expected leg has a terminal record."""
        if self.destinations:
            return all(key in self.legs and self.legs[key].terminal for key in self.destinations)
        if self.call_uuids:
            return all(uuid in self.legs and self.legs[uuid].terminal for uuid in self.call_uuids) and all(
                record.terminal for record in self.legs.values()
            )
        return bool(self.legs) and all(record.terminal for record in self.legs.values())

    def pending(self) -> list[str]:
        """The legs (destination or call UUID) that have not hung up yet."""
        expected = self.destinations or self.call_uuids or list(self.legs) or self.request_uuids
        return [key for key in expected if key not in self.legs or not self.legs[key].terminal]

    def uuids_to_ask(self) -> dict[str, str | None]:
        """The call UUIDs the API should be asked about, each with the request UUID it belongs to.

        Every leg not known to have hung up: a leg with a record is asked by its call UUID; legs without
        one are asked by the request UUID (for a single destination Vobiz's request UUID is the call UUID).
        """
        uuids: dict[str, str | None] = {}
        for record in self.legs.values():
            if record.terminal:
                continue
            if record.call_uuid:
                uuids.setdefault(record.call_uuid, record.request_uuid)
            elif record.request_uuid:
                # Only the operator's "fired" record: no callback ever named the call, so ask by request.
                uuids.setdefault(record.request_uuid, record.request_uuid)
        for uuid in self.call_uuids:
            if uuid not in self.legs:
                uuids.setdefault(uuid, None)
        expected_legs = len(self.destinations) or len(self.call_uuids)
        if not self.call_uuids and (not expected_legs or len(self.legs) < expected_legs):
            for uuid in self.request_uuids:
                uuids.setdefault(uuid, uuid)
        return uuids

    def calls(self) -> list[dict[str, Any]]:
        """The legs' records as event dicts, sorted by destination (the trigger event's ``calls``)."""
        records = sorted(self.legs.values(), key=lambda r: (normalise_destination(r.to), r.call_uuid or ""))
        return [record.to_event() for record in records]


def _describe_leg(record: CallRecord) -> str:
    to = loggable(masked_number(record.to or None))
    return f"Call to {to} ({loggable(record.call_uuid or record.request_uuid)})"


def _timeline(previous: CallRecord | None, record: CallRecord) -> list[str]:
    """The changes from ``previous`` to ``record``, one log line each (every value :func:`loggable`: a CR/LF
    in a callback field must not start a line of its own in the task log)."""
    leg = _describe_leg(record)
    status, source = loggable(record.status), loggable(record.source)
    lines: list[str] = []
    if previous is None or previous.status != record.status:
        if record.terminal:
            cause = loggable(record.hangup_cause_name or record.hangup_cause or "unknown cause")
            code = f" {record.hangup_cause_code}" if record.hangup_cause_code is not None else ""
            details = [f"status={status}", f"cause={cause}{code}"]
            if record.hangup_cause and record.hangup_cause != record.hangup_cause_name:
                details.append(f"sip_cause={loggable(record.hangup_cause)}")
            if record.hangup_source:
                details.append(f"source={loggable(record.hangup_source)}")
            if record.duration is not None:
                details.append(f"duration={record.duration}s")
            if record.bill_duration is not None:
                details.append(f"billed={record.bill_duration}s")
            details.append(f"via={source}")
            lines.append(f"{leg}: hung up ({', '.join(details)})")
        else:
            word = _STATUS_WORDS.get(str(record.status), status)
            lines.append(f"{leg}: {word} (via {source})")
    if record.machine is not None and (previous is None or previous.machine != record.machine):
        machine = str(record.machine).lower() in ("true", "1", "yes", "machine")
        lines.append(f"{leg}: answering machine {'detected' if machine else 'not detected (human)'}")
    if record.digits and (previous is None or previous.digits != record.digits):
        lines.append(f"{leg}: digits received: {loggable(record.digits)}")
    return lines
