"""The change feed read by the triggers' shared poller: the call rows updated since a cursor.

Every write of a call row stamps its indexed ``updated_at``, so the poller asks once per interval for the
rows changed since its last look (plus the rows of the waiters that subscribed since, whatever their age):
a tick costs in proportion to the calls that changed, not to the calls waited for. ``updated_at`` is the
writer's clock when its transaction began, not when it committed: readers ask again from some seconds
before the newest ``updated_at`` seen and skip the rows whose :attr:`CallChange.version` they already hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from vobiz_provider.ledger.calls import uuid_conditions
from vobiz_provider.ledger.change_signal import open_signal
from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import ROW_COLUMNS, chunks, to_call_record
from vobiz_provider.ledger.schema import calls, events

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection, Row

    from vobiz_provider.ledger.change_signal import ChangeSignal
    from vobiz_provider.models.record import CallRecord

__all__ = ["CallChange", "ChangeFeed"]


class CallChange:
    """One row of :meth:`ChangeFeed.changed_calls`: the call's keys and row version, its record on demand.

    Reading a row is cheap, building its :class:`~vobiz_provider.models.record.CallRecord` is not: a reader
    that already holds this :attr:`version` of the row (same ``id``) skips it without building anything.

    :param row: The ``vobiz_calls`` row.
    """

    __slots__ = ("_record", "call_uuid", "id", "leg_key", "request_uuid", "updated_at", "version")

    def __init__(self, row: Row[Any]) -> None:
        mapping = row._mapping
        #: The row's primary key.
        self.id: int = mapping["id"]
        self.request_uuid: str | None = mapping["request_uuid"]
        self.call_uuid: str | None = mapping["call_uuid"]
        #: ``<request_uuid>|<destination>``: a fired leg's placeholder row and the row of the call that
        #: later names it share it (the placeholder is then deleted).
        self.leg_key: str | None = mapping["leg_key"]
        self.updated_at: dt.datetime = mapping["updated_at"]
        #: Every column's value: two versions are equal exactly when the rows are.
        self.version: tuple[Any, ...] = tuple(row)
        self._record: CallRecord | None = None

    def __repr__(self) -> str:
        return f"CallChange(id={self.id}, call_uuid={self.call_uuid!r}, updated_at={self.updated_at})"

    def record(self) -> CallRecord:
        """The row as a :class:`~vobiz_provider.models.record.CallRecord` (built on first use)."""
        if self._record is None:
            self._record = to_call_record(dict(zip(ROW_COLUMNS, self.version, strict=True)))
        return self._record


class ChangeFeed(LedgerPart):
    """Reads of the triggers' shared poller."""

    def open_change_signal(self) -> ChangeSignal | None:
        """A watcher that tells when callbacks were committed (:mod:`~vobiz_provider.ledger.change_signal`),
        on a connection of its own; ``None`` when this store cannot signal. Blocking: it connects."""
        with self._db.translate_errors():
            return open_signal(self._db.engine)

    def changed_calls(
        self,
        *,
        since: dt.datetime | None,
        request_uuids: Sequence[str] = (),
        call_uuids: Sequence[str] = (),
    ) -> list[CallChange]:
        """The calls updated at or after ``since``, and every call with one of these UUIDs, in ONE query.

        Beyond 30,000 UUIDs the rest go in further queries.

        :param since: Oldest ``updated_at`` wanted (aware, or naive UTC); ``None``: only the UUIDs' rows.
        :param request_uuids: Request UUIDs whose rows are wanted whatever their age.
        :param call_uuids: Call UUIDs whose rows are wanted whatever their age.
        """
        items = [("r", value) for value in dict.fromkeys(request_uuids) if value]
        items += [("c", value) for value in dict.fromkeys(call_uuids) if value]
        if since is None and not items:
            return []

        def work(conn: Connection) -> list[CallChange]:
            rows: dict[int, Row[Any]] = {}
            for index, chunk in enumerate(list(chunks(items)) or [()]):
                conditions = []
                if index == 0 and since is not None:
                    conditions.append(calls.c.updated_at >= since)
                if chunk:
                    conditions.append(uuid_conditions(chunk))
                for row in conn.execute(sa.select(calls).where(sa.or_(*conditions))):
                    rows[row.id] = row
            return [CallChange(rows[key]) for key in sorted(rows)]

        return self._db.run(work, write=False)

    def last_callback_at(self) -> dt.datetime | None:
        """When the newest stored callback was received (a silent receiver shows here), or ``None``."""
        return self._db.run(
            lambda conn: conn.execute(sa.select(sa.func.max(events.c.received_at))).scalar(), write=False
        )
