"""Inbound calls: what the receiver stores for ``/inbound/{application}``, and the event trigger's feed.

One row of ``vobiz_inbound_events`` per call (Vobiz fetched the answer URL), per key press (the Gather
action) and per hangup. Each is written in one transaction with its signature's replay keys, like an
outbound callback (:mod:`~vobiz_provider.ledger.ingest`): a replay key seen within the window on another body
is refused (nothing written); the same body again (Vobiz retrying a request whose answer it missed) is a
``duplicate``, answered as the first time; the unique ``dedupe_key`` (application, route, call, digits) keeps
one row per call, key press and hangup, so one call never becomes two asset events.

The event trigger reads rows after its cursor (:meth:`InboundCalls.inbound_events_after`) and advances the
cursor of its stream (``vobiz_inbound_cursors``) only once Airflow confirmed it stored the asset events.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import utcnow
from vobiz_provider.ledger.schema import UTCDateTime, inbound_cursors, inbound_events, nonces

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.engine import Connection

__all__ = ["InboundCalls", "InboundEvent", "InboundStored", "inbound_dedupe_key"]


def inbound_dedupe_key(application: str, kind: str, call_uuid: str, digits: str | None) -> str:
    """One key per call, per distinct key press of a call, and per hangup of a call."""
    parts = [application, kind, call_uuid, digits or "" if kind == "digits" else ""]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class InboundStored:
    """What the ledger did with one inbound request.

    :param event_id: The row's id (the first one's, for a duplicate); ``None`` when refused.
    :param duplicate: The same call, key press or hangup was stored before: nothing changed.
    :param replayed: A replay key was used before on another body: refused, nothing written.
    """

    event_id: int | None
    duplicate: bool = False
    replayed: bool = False


@dataclass(frozen=True, kw_only=True)
class InboundEvent:
    """One stored inbound call, key press or hangup (the payload of an asset event).

    :param id: Its position in the feed.
    :param application: The inbound application.
    :param kind: ``call``, ``digits`` or ``hangup``.
    :param call_uuid: Vobiz's ``CallUUID``.
    :param from_number: The caller's number (``From``), whole.
    :param to_number: The number called (``To``), whole.
    :param digits: The keys pressed (``digits``).
    :param call_status: ``CallStatus``.
    :param hangup_cause_code: ``HangupCauseCode`` (``hangup``).
    :param hangup_cause_name: ``HangupCauseName`` (``hangup``).
    :param duration: ``Duration`` in seconds (``hangup``).
    :param received_at: When the receiver stored it.
    """

    id: int
    application: str
    kind: str
    call_uuid: str
    from_number: str | None
    to_number: str | None
    digits: str | None
    call_status: str | None
    hangup_cause_code: int | None
    hangup_cause_name: str | None
    duration: int | None
    received_at: dt.datetime

    def to_payload(self) -> dict[str, Any]:
        """JSON primitives (the event trigger's payload; the numbers are masked by the trigger)."""
        payload = {name: getattr(self, name) for name in self.__dataclass_fields__}
        payload["received_at"] = self.received_at.isoformat()
        return payload


_COLUMNS = (
    "id",
    "application",
    "kind",
    "call_uuid",
    "from_number",
    "to_number",
    "digits",
    "call_status",
    "hangup_cause_code",
    "hangup_cause_name",
    "duration",
    "received_at",
)


class InboundCalls(LedgerPart):
    """The ``vobiz_inbound_events`` and ``vobiz_inbound_cursors`` tables."""

    def store_inbound(
        self,
        *,
        application: str,
        kind: str,
        call_uuid: str,
        values: Mapping[str, Any],
        fields: Mapping[str, str],
        replay_keys: Sequence[str],
        nonce_window: float,
    ) -> InboundStored:
        """Store one inbound request with its replay keys, in one transaction (then answer it).

        :param application: The application's name.
        :param kind: ``call``, ``digits`` or ``hangup``.
        :param call_uuid: ``CallUUID``.
        :param values: ``from_number``, ``to_number``, ``digits``, ``call_status``, ``hangup_cause_code``,
            ``hangup_cause_name``, ``duration``.
        :param fields: The form as received (stored as it is).
        :param replay_keys: The verified signature's replay keys (empty when unsigned).
        :param nonce_window: Replay window in seconds.
        :raises LedgerUnavailableError: When the store cannot be reached (the receiver answers 503).
        """
        key = inbound_dedupe_key(application, kind, call_uuid, values.get("digits"))

        def existing(conn: Connection) -> int | None:
            found = conn.execute(
                sa.select(inbound_events.c.id).where(inbound_events.c.dedupe_key == key)
            ).scalar_one_or_none()
            return None if found is None else int(found)

        def work(conn: Connection) -> InboundStored:
            now = utcnow()
            if replay_keys:
                insert = self._db.insert(nonces)
                claim = insert.on_conflict_do_update(
                    index_elements=["nonce"],
                    set_={"seen_at": insert.excluded.seen_at},
                    where=nonces.c.seen_at < sa.bindparam("cutoff", type_=UTCDateTime()),
                ).returning(nonces.c.nonce)
                cutoff = now - dt.timedelta(seconds=nonce_window)
                rows = [{"nonce": each, "seen_at": now, "cutoff": cutoff} for each in replay_keys]
                fresh = set(conn.execute(claim, rows).scalars())
                if fresh != set(replay_keys):
                    stored = existing(conn)
                    if stored is None:
                        raise _Replayed
                    return InboundStored(event_id=stored, duplicate=True)
            insert_event = (
                self._db.insert(inbound_events)
                .values(
                    received_at=now,
                    application=application,
                    kind=kind,
                    call_uuid=call_uuid,
                    dedupe_key=key,
                    fields=dict(fields),
                    **{name: values.get(name) for name in _COLUMNS[4:11]},
                )
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(inbound_events.c.id)
            )
            new_id = conn.execute(insert_event).scalar_one_or_none()
            if new_id is None:
                stored = existing(conn)
                return InboundStored(event_id=stored, duplicate=True)
            return InboundStored(event_id=int(new_id))

        try:
            return self._db.run(work, write=True)
        except _Replayed:
            return InboundStored(event_id=None, replayed=True)

    def inbound_events_after(self, after_id: int, *, limit: int = 500) -> list[InboundEvent]:
        """The stored inbound events with an id above ``after_id``, oldest first (one query).

        :param after_id: The cursor.
        :param limit: Most rows returned.
        """
        columns = [inbound_events.c[name] for name in _COLUMNS]
        query = (
            sa.select(*columns)
            .where(inbound_events.c.id > after_id)
            .order_by(inbound_events.c.id)
            .limit(limit)
        )
        rows = self._db.run(lambda conn: conn.execute(query).mappings().all(), write=False)
        return [InboundEvent(**{name: row[name] for name in _COLUMNS}) for row in rows]

    def inbound_cursor(self, stream: str) -> int:
        """The last id delivered on ``stream`` (0 when it never delivered anything)."""
        query = sa.select(inbound_cursors.c.last_id).where(inbound_cursors.c.stream == stream)
        found = self._db.run(lambda conn: conn.execute(query).scalar_one_or_none(), write=False)
        return int(found or 0)

    def advance_inbound_cursor(self, stream: str, last_id: int) -> None:
        """Move ``stream``'s cursor to ``last_id`` (never backwards).

        :param stream: The stream's name.
        :param last_id: The highest id Airflow confirmed it stored.
        """

        def work(conn: Connection) -> None:
            now = utcnow()
            insert = self._db.insert(inbound_cursors).values(stream=stream, last_id=last_id, updated_at=now)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["stream"],
                    set_={"last_id": last_id, "updated_at": now},
                    where=inbound_cursors.c.last_id < last_id,
                )
            )

        self._db.run(work, write=True)


class _Replayed(Exception):
    """A replay key reused on another body: roll the transaction back."""
