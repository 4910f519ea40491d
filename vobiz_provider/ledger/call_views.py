"""Read-only views of the calls for people: the "Vobiz calls" page and ``vobiz-callbacks calls``.

* :meth:`CallViews.list_calls` pages through the calls, newest first, with keyset pagination on the row's
  primary key (``id < cursor``): every page costs the same at 100,000 calls as at 100. The filters are the
  DAG, the run, the task instance, the status and a time range; ``allowed_dag_ids`` limits the rows to the
  DAGs a user may read (``None``: no limit, for the CLI, which reads the store directly).
* :meth:`CallViews.call_detail` is one call with the raw callbacks received for it, and its timeline
  (:func:`timeline`: queued → ringing → answered → keys → hangup, with the seconds between them).
* :meth:`CallViews.run_summary` counts the calls of one DAG run by outcome (answered / busy / no answer /
  failed / in progress), as the reminders example's outcome table does.

The time range applies to when the call was placed (``fired_at``; ``updated_at`` for a call only a callback
created). Schema 5 adds the indexes the filtered pages walk: ``(dag_id, id)``, ``(run_id, id)`` and
``(status, id)``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import parse_iso, to_call_record
from vobiz_provider.ledger.schema import calls, events

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from sqlalchemy.engine import Connection

    from vobiz_provider.models.record import CallRecord

__all__ = [
    "MAX_PAGE_SIZE",
    "OUTCOMES",
    "CallDetail",
    "CallFilter",
    "CallPage",
    "CallViews",
    "ListedCall",
    "StoredCallback",
    "TimelineStep",
    "outcome_of",
    "parse_age",
    "timeline",
]

#: Most calls one page holds.
MAX_PAGE_SIZE: Final = 500
#: The outcome buckets of :meth:`CallViews.run_summary`, in the order charts show them.
OUTCOMES: Final = ("answered", "busy", "no answer", "failed", "in progress")
_OUTCOME_OF_STATUS: Final = {
    "completed": "answered",
    "busy": "busy",
    "no-answer": "no answer",
    "timeout": "no answer",
    "cancel": "no answer",
    "canceled": "no answer",
    "failed": "failed",
}
#: When a call was placed, for the time range: fired, else first stored.
_PLACED_AT = sa.func.coalesce(calls.c.fired_at, calls.c.updated_at)


_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_AGE_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> dt.timedelta:
    """``30m``, ``12h``, ``1d``, ``2w`` (also ``s``) as a positive :class:`~datetime.timedelta`.

    :param text: The age.
    :raises ValueError: When it is not such an age.
    """
    match = _AGE.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(
            f"invalid age {text[:40]!r}: expected a positive number followed by s, m, h, d or w (e.g. 1d)"
        )
    return dt.timedelta(**{_AGE_UNITS[match.group(2).lower()]: int(match.group(1))})


def outcome_of(status: str, *, answered: bool = False) -> str:
    """The outcome bucket (one of :data:`OUTCOMES`) of a call's status.

    :param status: The call's status.
    :param answered: Whether the call was answered (a ``completed`` call never answered is ``no answer``).
    """
    bucket = _OUTCOME_OF_STATUS.get(status, "in progress")
    if bucket == "answered" and not answered:
        return "no answer"
    return bucket


@dataclass(frozen=True)
class CallFilter:
    """Which calls a page lists. ``None`` fields do not filter.

    :param allowed_dag_ids: Only calls of these DAGs (a user's readable DAGs); ``None``: every call.
    :param dag_id: The DAG.
    :param run_id: The DAG run.
    :param task_id: The task.
    :param map_index: The map index (``-1`` for an unmapped task).
    :param try_number: The try that placed the call.
    :param status: The call's status (``completed``, ``busy``, ``no-answer``...).
    :param since: Placed at or after this time.
    :param until: Placed before this time.
    """

    allowed_dag_ids: frozenset[str] | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    status: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        """The ``WHERE`` conditions on ``vobiz_calls``."""
        where: list[sa.ColumnElement[bool]] = []
        if self.allowed_dag_ids is not None:
            where.append(calls.c.dag_id.in_(sorted(self.allowed_dag_ids)))
        for column, value in (
            (calls.c.dag_id, self.dag_id),
            (calls.c.run_id, self.run_id),
            (calls.c.task_id, self.task_id),
            (calls.c.map_index, self.map_index),
            (calls.c.try_number, self.try_number),
            (calls.c.status, self.status),
        ):
            if value is not None:
                where.append(column == value)
        if self.since is not None:
            where.append(self.since <= _PLACED_AT)
        if self.until is not None:
            where.append(self.until > _PLACED_AT)
        return where


@dataclass(frozen=True)
class ListedCall:
    """One call of a page: its row id (the cursor), when it was placed, and its record."""

    id: int
    placed_at: dt.datetime | None
    record: CallRecord


@dataclass(frozen=True)
class CallPage:
    """A page of calls, newest first; ``next_cursor`` is ``None`` on the last page."""

    calls: list[ListedCall]
    next_cursor: int | None


@dataclass(frozen=True)
class StoredCallback:
    """One callback as the receiver stored it (its form fields untouched)."""

    id: int
    received_at: dt.datetime
    kind: str
    event: str | None
    call_status: str | None
    fields: dict[str, Any]


@dataclass(frozen=True)
class TimelineStep:
    """One step of a call's timeline.

    :param label: ``queued``, ``ringing``, ``answered``, ``keys <digits>`` or ``hangup <cause>``.
    :param at: When it happened.
    :param seconds_since_previous: Seconds since the previous step (``None`` for the first).
    """

    label: str
    at: dt.datetime
    seconds_since_previous: float | None


@dataclass(frozen=True)
class CallDetail:
    """One call, the callbacks stored for it, oldest first, and its timeline."""

    listed: ListedCall
    callbacks: list[StoredCallback]
    steps: list[TimelineStep] = field(default_factory=list)


def timeline(
    record: CallRecord, callbacks: Sequence[StoredCallback], *, placed_at: dt.datetime | None
) -> list[TimelineStep]:
    """The call's steps in time order: queued (placed), ringing, answered, keys, hangup.

    Each step is taken from the first callback that shows it, else from the call's own times (an outcome
    learnt from the API has no callbacks): answered from ``answer_time``, hangup from ``end_time``.

    :param record: The call.
    :param callbacks: Its stored callbacks, oldest first.
    :param placed_at: When it was placed.
    """
    found: dict[str, tuple[str, dt.datetime]] = {}
    if placed_at is not None:
        found["queued"] = ("queued", placed_at)
    for callback in callbacks:
        status = (callback.call_status or "").lower()
        if callback.kind == "ring" or status == "ringing":
            found.setdefault("ringing", ("ringing", callback.received_at))
        if callback.kind == "answer" or status == "in-progress":
            found.setdefault("answered", ("answered", callback.received_at))
        if callback.kind == "gather":
            digits = callback.fields.get("Digits") or ""
            found.setdefault("keys", (f"keys {digits}".strip(), callback.received_at))
        if callback.kind == "hangup":
            cause = callback.fields.get("HangupCause") or record.hangup_cause or ""
            found.setdefault("hangup", (f"hangup {cause}".strip(), callback.received_at))
    answer_time = parse_iso(record.answer_time)
    if "answered" not in found and answer_time is not None:
        found["answered"] = ("answered", answer_time)
    end_time = parse_iso(record.end_time)
    if "hangup" not in found and record.terminal and end_time is not None:
        found["hangup"] = (f"hangup {record.hangup_cause or record.status}", end_time)
    ordered = sorted(found.values(), key=lambda step: step[1])
    steps: list[TimelineStep] = []
    for label, at in ordered:
        previous = steps[-1].at if steps else None
        since = None if previous is None else round((at - previous).total_seconds(), 3)
        steps.append(TimelineStep(label=label, at=at, seconds_since_previous=since))
    return steps


def _listed(row: Mapping[Any, Any]) -> ListedCall:
    placed = row["fired_at"] if row["fired_at"] is not None else row["updated_at"]
    return ListedCall(id=row["id"], placed_at=placed, record=to_call_record(row))


class CallViews(LedgerPart):
    """The read-only queries behind the calls page and ``vobiz-callbacks calls``."""

    def list_calls(self, where: CallFilter, *, limit: int = 50, before: int | None = None) -> CallPage:
        """A page of calls matching ``where``, newest first.

        :param where: The filters.
        :param limit: Calls per page (1 to :data:`MAX_PAGE_SIZE`).
        :param before: The cursor: list calls whose row id is below it (the previous page's
            :attr:`CallPage.next_cursor`).
        :raises ValueError: When ``limit`` is out of range.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be from 1 to {MAX_PAGE_SIZE}, got {limit}")
        if where.allowed_dag_ids is not None and not where.allowed_dag_ids:
            return CallPage(calls=[], next_cursor=None)
        conditions = where.conditions()
        if before is not None:
            conditions.append(calls.c.id < before)
        query = sa.select(calls).where(*conditions).order_by(calls.c.id.desc()).limit(limit + 1)

        def work(conn: Connection) -> list[ListedCall]:
            return [_listed(row._mapping) for row in conn.execute(query)]

        rows = self._db.run(work, write=False)
        more = len(rows) > limit
        rows = rows[:limit]
        return CallPage(calls=rows, next_cursor=rows[-1].id if more else None)

    def call_detail(
        self, call_uuid: str, *, allowed_dag_ids: Collection[str] | None = None
    ) -> CallDetail | None:
        """The call ``call_uuid`` (or, for a call Vobiz never named, its ``request_uuid``) with its callbacks
        and timeline; ``None`` when there is no such call, or it belongs to a DAG not in ``allowed_dag_ids``.

        :param call_uuid: The ``CallUUID`` (or the ``request_uuid``).
        :param allowed_dag_ids: The DAGs the reader may see; ``None``: all.
        """

        def work(conn: Connection) -> tuple[ListedCall | None, list[StoredCallback]]:
            row = conn.execute(
                sa.select(calls)
                .where(sa.or_(calls.c.call_uuid == call_uuid, calls.c.request_uuid == call_uuid))
                .order_by(calls.c.call_uuid.is_(None), calls.c.id)
                .limit(1)
            ).first()
            if row is None:
                return None, []
            listed = _listed(row._mapping)
            if allowed_dag_ids is not None and listed.record.dag_id not in allowed_dag_ids:
                return None, []
            keys = [key for key in (listed.record.call_uuid,) if key]
            event_rows = conn.execute(
                sa.select(events)
                .where(events.c.call_uuid.in_(keys))
                .order_by(events.c.received_at, events.c.id)
            ).all()
            stored = [
                StoredCallback(
                    id=event.id,
                    received_at=event.received_at,
                    kind=event.kind,
                    event=event.event,
                    call_status=event.call_status,
                    fields=dict(event.fields or {}),
                )
                for event in event_rows
            ]
            return listed, stored

        listed, stored = self._db.run(work, write=False)
        if listed is None:
            return None
        return CallDetail(
            listed=listed,
            callbacks=stored,
            steps=timeline(listed.record, stored, placed_at=listed.placed_at),
        )

    def run_summary(self, dag_id: str, run_id: str) -> dict[str, int]:
        """How many calls of the DAG run ended in each outcome (every key of :data:`OUTCOMES`).

        :param dag_id: The DAG.
        :param run_id: The run.
        """
        answered = calls.c.answer_time_utc.is_not(None)
        query = (
            sa.select(calls.c.status, answered.label("answered"), sa.func.count().label("n"))
            .where(calls.c.dag_id == dag_id, calls.c.run_id == run_id)
            .group_by(calls.c.status, answered)
        )

        def work(conn: Connection) -> dict[str, int]:
            counts = dict.fromkeys(OUTCOMES, 0)
            for status, was_answered, count in conn.execute(query):
                counts[outcome_of(status, answered=bool(was_answered))] += int(count)
            return counts

        return self._db.run(work, write=False)
