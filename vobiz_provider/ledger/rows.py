"""Pure functions between Vobiz's fields, the ledger's rows and ``CallRecord``.

The ledger's column mappings other than a callback's (:mod:`~vobiz_provider.ledger.callback_columns`): API
result → call columns (:func:`api_result_values`), row → record (:func:`to_call_record`); the values'
readers (:func:`text`, :func:`uuid_text`, :func:`int_value`); and the rules that merge a new observation
into a call row (:func:`merge`):

State is monotonic: ``queued < ringing < in-progress < terminal``. A lower-ranked event never overwrites a
higher one (a late ``Ring`` never undoes a ``Hangup``) and a terminal state absorbs: later events only fill
fields that are still empty.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, Final, TypeVar

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.ledger.schema import calls
from vobiz_provider.models.record import (
    TERMINAL_RANK,
    CallRecord,
    iso_utc,
    status_rank,
)
from vobiz_provider.untrusted import MAX_NUMBER_LENGTH, strip_controls

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    import sqlalchemy as sa

    from vobiz_provider.correlation import CorrelationToken

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Largest number of values in one ``IN (...)`` list (SQLite allows 32766 bound parameters).
MAX_IN_PARAMS: Final = 30_000
#: The columns of ``vobiz_calls`` in table order (a row's values come in this order).
ROW_COLUMNS: Final = tuple(column.name for column in calls.columns)
#: The columns a new call row gets (all but the primary key).
CALL_COLUMNS: Final = tuple(name for name in ROW_COLUMNS if name != "id")
#: The same as a set, to pick an observation's call columns (``name in calls.c`` costs ten times more).
CALL_COLUMN_SET: Final = frozenset(CALL_COLUMNS)

# Columns that name a call or its task: set once, never overwritten by a later event.
_IDENTITY_COLUMNS: Final = frozenset(
    {
        "call_uuid",
        "request_uuid",
        "leg_key",
        "destination",
        "from_number",
        "ti_key",
        "dag_id",
        "run_id",
        "task_id",
        "map_index",
        "try_number",
        "conn_id",
        "fired_at",
    }
)
_STATE_COLUMNS: Final = frozenset({"status", "rank", "terminal", "source", "updated_at"})
_MAX_INT: Final = 2**31 - 1
#: The ``vobiz_calls`` column of each ``CallRecord`` field (the times are read from their ``*_utc`` columns).
_COLUMN_OF_FIELD: Final = {name: "destination" if name == "to" else name for name in CallRecord.model_fields}
_TIME_FIELDS: Final = ("start_time", "answer_time", "end_time")
#: The fields of a state learnt from the API that become columns as they are (not the ledger's own state).
_API_FIELDS: Final = tuple(
    name
    for name in CallRecord.model_fields
    if name not in {"status", "terminal", "source", "updated_at", *_TIME_FIELDS}
)
#: Details that a newer event of this kind replaces (a second gather, a revised machine detection).
OVERWRITE_BY_KIND: Final = {
    "machine-detection": frozenset({"machine"}),
    "gather": frozenset({"digits"}),
    # A second <Dial> or <Record> in the call replaces what the first reported.
    "dial": frozenset({"dial_status", "dial_b_leg_uuid", "dial_hangup_cause"}),
    "record": frozenset({"recording_url"}),
}


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


def chunks(items: Sequence[T], size: int = MAX_IN_PARAMS) -> Iterator[Sequence[T]]:
    """``items`` in slices that fit one ``IN (...)`` list."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- values ---------------------------------------------------------------------------------------------


def text(value: Any) -> str | None:
    """A stripped string without control characters (C0, C1), ``None`` when empty.

    The receiver refuses control characters before anything is stored; this keeps them out of the columns
    whoever writes (PostgreSQL refuses NUL, and a CR/LF would reach task logs).
    """
    if value is None:
        return None
    stripped = strip_controls(str(value)).strip()
    return stripped or None


#: How Vobiz spells "no UUID" (``RequestUUID=null`` on machine-detection and gather callbacks).
_NO_UUID: Final = frozenset({"null", "none", "undefined"})


def uuid_text(value: Any) -> str | None:
    """A ``CallUUID``/``RequestUUID`` as :func:`text` reads it, ``None`` for ``null``, ``None`` and the like.

    ``null`` is no request of the try's: read as one, it bound nothing (403) and, before binding, collided
    with another call's leg (``null|<destination>``).
    """
    stripped = text(value)
    return None if stripped is None or stripped.lower() in _NO_UUID else stripped


def _api_text(value: Any) -> Any:
    """A value learnt from the Vobiz API: strings without control characters, anything else as it is."""
    return strip_controls(value) if isinstance(value, str) else value


def int_value(value: Any) -> int | None:
    stripped = text(value)
    if stripped is None or len(stripped) > MAX_NUMBER_LENGTH:  # read no absurdly long number
        return None
    try:
        number = int(float(stripped))
    except (ValueError, OverflowError):
        return None
    return number if abs(number) <= _MAX_INT else None  # an INTEGER column holds 32 bits


def parse_iso(value: str | None) -> dt.datetime | None:
    """An ISO 8601 time (``Z`` allowed) as an aware datetime, UTC when it names no zone; ``None`` when
    empty or unreadable."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def check_lengths(items: Iterable[tuple[str, sa.Column[Any], Any]]) -> None:
    """Refuse values longer than their column, naming the field (PostgreSQL would fail the transaction).

    :param items: ``(field name, column, value)`` triples.
    :raises VobizValidationError: For the first value that is too long.
    """
    for field, column, value in items:
        limit = getattr(column.type, "length", None)
        if isinstance(value, str) and limit is not None and len(value) > limit:
            raise VobizValidationError(f"callback field {field} is longer than {limit} characters")


def correlation_values(correlation: CorrelationToken | None) -> dict[str, Any]:
    """The task-instance columns of the call placed under ``correlation``."""
    if correlation is None:
        return {}
    return {
        "ti_key": correlation.ti_key,
        "dag_id": correlation.dag_id,
        "run_id": correlation.run_id,
        "task_id": correlation.task_id,
        "map_index": correlation.map_index,
        "try_number": correlation.try_number,
        "conn_id": correlation.conn_id,
    }


def api_result_values(record: CallRecord) -> dict[str, Any]:
    """The call columns of a state learned from the Vobiz API (CDR, live call)."""
    values: dict[str, Any] = {
        _COLUMN_OF_FIELD[name]: _api_text(getattr(record, name)) for name in _API_FIELDS
    }
    if record.dag_id and record.run_id and record.task_id and record.map_index is not None:
        values["ti_key"] = f"{record.dag_id}/{record.run_id}/{record.task_id}/{record.map_index}"
    for name in _TIME_FIELDS:
        iso = getattr(record, name)
        values[name] = iso
        values[f"{name}_utc"] = parse_iso(iso)
    return values


# -- call rows ------------------------------------------------------------------------------------------


def merge(
    current: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    status: str | None,
    source: str,
    overwrite: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The column changes that apply ``values`` (reporting ``status``) to the row ``current``.

    The status only moves up and never leaves a terminal state. When the event moves the call up (or
    repeats its non-terminal state), its non-empty details replace the stored ones; otherwise it only
    fills empty columns. Identity columns are only ever filled. ``overwrite`` names detail columns that
    the event replaces while the call is not terminal (``machine``, ``digits``).
    """
    changes: dict[str, Any] = {}
    new_rank = status_rank(status)
    advance = new_rank is not None and not current["terminal"] and new_rank >= current["rank"]
    if advance and status != current["status"]:
        changes.update(status=status, rank=new_rank, terminal=new_rank == TERMINAL_RANK, source=source)
    for column, value in values.items():
        if value is None or column in _STATE_COLUMNS:
            continue
        stored = current.get(column)
        if stored is None or (
            stored != value
            and column not in _IDENTITY_COLUMNS
            and (advance or (column in overwrite and not current["terminal"]))
        ):
            changes[column] = value
    return changes


def new_call_row(
    values: Mapping[str, Any], *, leg: str | None, status: str, source: str, now: dt.datetime
) -> dict[str, Any]:
    """The row of a call first seen through ``values`` (a callback, a fired request, an API state).

    :param status: Its status (an unknown one makes it ``queued``).
    """
    rank = status_rank(status)
    if rank is None:
        status, rank = "queued", 0
    row: dict[str, Any] = dict.fromkeys(CALL_COLUMNS)
    row.update((column, value) for column, value in values.items() if column in row)
    row.update(
        leg_key=leg,
        status=status,
        rank=rank,
        terminal=rank == TERMINAL_RANK,
        source=source,
        updated_at=now,
    )
    return row


def to_call_record(row: Mapping[Any, Any]) -> CallRecord:
    """The :class:`~vobiz_provider.models.record.CallRecord` of a ``vobiz_calls`` row (a ``RowMapping``,
    keyed by column name or column, or a dict)."""
    fields = {name: row[column] for name, column in _COLUMN_OF_FIELD.items()}
    fields.update({name: iso_utc(row[f"{name}_utc"]) for name in _TIME_FIELDS})
    fields.update(terminal=bool(row["terminal"]), updated_at=iso_utc(row["updated_at"]))
    return CallRecord(**fields)
