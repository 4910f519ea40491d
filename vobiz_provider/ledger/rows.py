"""Pure functions between Vobiz's fields, the ledger's rows and ``CallRecord``.

Every column mapping of the ledger lives here, in both directions: callback fields → call columns
(:func:`callback_values`), API result → call columns (:func:`api_result_values`), row → record
(:func:`to_call_record`); and the rules that merge a new observation into a call row (:func:`merge`):

State is monotonic: ``queued < ringing < in-progress < terminal``. A lower-ranked event never overwrites a
higher one (a late ``Ring`` never undoes a ``Hangup``) and a terminal state absorbs: later events only fill
fields that are still empty.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, Final, TypeVar

from vobiz_provider.correlation import CALLBACK_KINDS
from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.ledger.schema import calls, events
from vobiz_provider.models.call import TERMINAL_STATUSES
from vobiz_provider.models.record import (
    TERMINAL_RANK,
    CallRecord,
    iso_utc,
    status_for_hangup_cause,
    status_rank,
)
from vobiz_provider.untrusted import MAX_NUMBER_LENGTH, loggable, strip_controls

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    import sqlalchemy as sa

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.models.callbacks import VobizCallback

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Largest number of values in one ``IN (...)`` list (SQLite allows 32766 bound parameters).
MAX_IN_PARAMS: Final = 30_000
#: Form fields that may differ between Vobiz's retries of one callback; left out of the dedupe key.
VOLATILE_FIELDS: Final = frozenset({"timestamp", "Timestamp"})
#: The columns of ``vobiz_calls`` in table order (a row's values come in this order).
ROW_COLUMNS: Final = tuple(column.name for column in calls.columns)
#: The columns a new call row gets (all but the primary key).
CALL_COLUMNS: Final = tuple(name for name in ROW_COLUMNS if name != "id")

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
#: Columns only a ``hangup`` callback reports: another route cannot end a call or fill in how it ended.
_HANGUP_COLUMNS: Final = frozenset(
    {
        "hangup_cause",
        "hangup_cause_code",
        "hangup_cause_name",
        "hangup_source",
        "duration",
        "bill_duration",
        "end_time",
    }
)
#: Largest form stored with an event, in bytes of names and values: Vobiz's callbacks are about 1 KiB.
MAX_STORED_FORM_BYTES: Final = 8192
#: Longest value kept of a field in a form larger than :data:`MAX_STORED_FORM_BYTES`.
_KEPT_VALUE_CHARS: Final = 256
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


def _int(value: Any) -> int | None:
    stripped = text(value)
    if stripped is None or len(stripped) > MAX_NUMBER_LENGTH:  # read no absurdly long number
        return None
    try:
        number = int(float(stripped))
    except (ValueError, OverflowError):
        return None
    return number if abs(number) <= _MAX_INT else None  # an INTEGER column holds 32 bits


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    stripped = text(value)
    if stripped is None:
        return None
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
        stripped.lower()
    )


def _raw_time(value: Any) -> str | None:
    stripped = text(value)
    return None if stripped in (None, "0") else stripped


def _parse_iso(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _plain_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as a standard-library UTC datetime (the models give pendulum ones, slow to convert)."""
    if value.tzinfo is not None:
        offset = value.utcoffset()
        if offset:
            value = value - offset
    return dt.datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=dt.timezone.utc,
    )


#: Each call column a callback carries: the form field it comes from and how that is read.
_FROM_FORM: Final[dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "call_uuid": ("CallUUID", uuid_text),
    "request_uuid": ("RequestUUID", uuid_text),
    "destination": ("To", text),
    "from_number": ("From", text),
    "hangup_cause": ("HangupCause", text),
    "hangup_cause_code": ("HangupCauseCode", _int),
    "hangup_cause_name": ("HangupCauseName", text),
    "hangup_source": ("HangupSource", text),
    "duration": ("Duration", _int),
    "bill_duration": ("BillDuration", _int),
    "start_time": ("StartTime", _raw_time),
    "answer_time": ("AnswerTime", _raw_time),
    "end_time": ("EndTime", _raw_time),
    "machine": ("Machine", _bool),
    "digits": ("Digits", text),
    "dial_status": ("DialStatus", text),
    "dial_b_leg_uuid": ("DialBLegUUID", uuid_text),
    "dial_hangup_cause": ("DialHangupCause", text),
    "recording_url": ("RecordUrl", text),
}
#: The call columns only the ``dial`` and ``record`` routes write.
_DIAL_COLUMNS: Final = ("dial_status", "dial_b_leg_uuid", "dial_hangup_cause")


def log_unreadable(kind: str, fields: Mapping[str, str], problems: Mapping[str, str]) -> None:
    """Log, once per callback and escaped, the fields stored raw but left empty because they did not parse.

    :param kind: The callback route.
    :param fields: The form fields (``CallUUID`` is named).
    :param problems: Each unreadable field with why (:attr:`~vobiz_provider.models.callbacks.VobizCallback.
        unreadable_fields`).
    """
    log.warning(
        "Storing a Vobiz %s callback (CallUUID %s) with fields left empty because they could not be read: %s",
        kind,
        loggable(fields.get("CallUUID")),
        loggable("; ".join(f"{name}: {why}" for name, why in problems.items()), limit=1_000),
    )


# -- keys -----------------------------------------------------------------------------------------------


def dedupe_key(kind: str, fields: Mapping[str, str]) -> str:
    """The key under which a callback is stored once: Vobiz resends the same fields when it retries.

    :param kind: The callback route (``hangup``, ...).
    :param fields: The form fields as received.
    """
    ident = fields.get("CallUUID") or fields.get("RequestUUID") or ""
    stable = sorted((key, value) for key, value in fields.items() if key not in VOLATILE_FIELDS)
    payload = [ident, kind, fields.get("Event"), fields.get("CallStatus"), stable]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def normalise_kind(kind: str) -> str:
    """``kind`` as a receiver route (``machine_detection`` → ``machine-detection``), or ``ValueError``."""
    normalised = kind.strip().lower().replace("_", "-") if isinstance(kind, str) else kind
    if normalised not in CALLBACK_KINDS:
        raise ValueError(f"unknown callback kind {kind!r}; expected one of {', '.join(CALLBACK_KINDS)}")
    return normalised


# -- lengths --------------------------------------------------------------------------------------------


def _length_limits(table: sa.Table) -> dict[str, int]:
    """The longest value each string column of ``table`` holds."""
    return {column.name: length for column in table.columns if (length := _length(column)) is not None}


def _length(column: sa.Column[Any]) -> int | None:
    """The declared length of a string column (``None``: unbounded, or not a string)."""
    length: int | None = getattr(column.type, "length", None)
    return length


#: The longest value of each call column and event field a callback writes (checked before storing).
_CALLBACK_LIMITS: Final = {
    **_length_limits(calls),
    "Event": _length(events.c.event),
    "CallStatus": _length(events.c.call_status),
    "nonce": _length(events.c.nonce),
}


def check_lengths(items: Iterable[tuple[str, sa.Column[Any], Any]]) -> None:
    """Refuse values longer than their column, naming the field (PostgreSQL would fail the transaction).

    :param items: ``(field name, column, value)`` triples.
    :raises VobizValidationError: For the first value that is too long.
    """
    for field, column, value in items:
        limit = getattr(column.type, "length", None)
        if isinstance(value, str) and limit is not None and len(value) > limit:
            raise VobizValidationError(f"callback field {field} is longer than {limit} characters")


def fit_callback_lengths(kind: str, fields: Mapping[str, str], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every text longer than its column left empty (``None``), each such field logged once.

    Lenient ingest: the value stays whole in the event row's raw form; only its column is empty (PostgreSQL
    would otherwise fail the whole transaction).

    :param kind: The callback route.
    :param fields: The form fields as received.
    :param values: ``{column or field name: value}`` (``event_call_status`` names ``Event``/``CallStatus``).
    """
    problems: dict[str, str] = {}
    for name, value in values.items():
        limit = _CALLBACK_LIMITS.get(name)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            values[name] = None
            problems[_FROM_FORM[name][0] if name in _FROM_FORM else name] = f"longer than {limit} characters"
    if problems:
        log_unreadable(kind, fields, problems)
    return values


# -- callbacks ------------------------------------------------------------------------------------------


def callback_status(
    kind: str, fields: Mapping[str, str], code: int | None, cause: str | None, *, answered: bool
) -> str | None:
    """The call status a callback reports, or ``None`` when it does not move the call.

    Decided by the route, not by the body: Vobiz's signature covers the URL (so the route) but not the
    body, and each token opens only its own route. Only the hangup route ends a call; the ring route
    reports ``ringing`` and the answer route ``in-progress``, whatever ``Event`` or ``CallStatus`` say.
    """
    if kind == "hangup":
        # Hangup always ends the call, whatever (if anything) CallStatus says.
        status = (text(fields.get("CallStatus")) or "").lower() or None
        if status in TERMINAL_STATUSES:
            return status
        return status_for_hangup_cause(code, cause, answered=answered)
    if kind == "ring":
        return "ringing"
    if kind == "answer":
        return "in-progress"
    return None  # machine detection and gather happen on an answered call: they do not move it


def stored_form(form: Mapping[str, str]) -> dict[str, str]:
    """The fields kept in a callback's event row.

    NUL characters are removed. A form of at most :data:`MAX_STORED_FORM_BYTES` is kept whole. A larger
    one (Vobiz's are about 1 KiB) keeps the fields the ledger reads, each cut to 256 characters, and says
    how many it dropped under ``_dropped_fields``.

    :param form: The fields as received.
    """
    if any("\x00" in key or "\x00" in value for key, value in form.items()):
        # PostgreSQL's JSONB cannot hold NUL (the receiver refuses it; other writers may not).
        form = {key.replace("\x00", ""): value.replace("\x00", "") for key, value in form.items()}
    if sum(len(key) + len(value) for key, value in form.items()) <= MAX_STORED_FORM_BYTES:
        return dict(form)
    wanted = {name for name, _ in _FROM_FORM.values()} | {"Event", "CallStatus", "ALegRequestUUID"}
    kept = {key: value[:_KEPT_VALUE_CHARS] for key, value in form.items() if key in wanted}
    kept["_dropped_fields"] = str(len(form) - len(kept))
    return kept


def callback_values(kind: str, fields: Mapping[str, str], parsed: VobizCallback | None) -> dict[str, Any]:
    """The call columns a callback carries (``None`` for what it does not say).

    :param kind: The normalised callback kind.
    :param fields: The form fields as strings.
    :param parsed: The callback model of ``fields`` (its UTC times), or ``None`` if they did not parse.
    """
    values = {column: read(fields.get(field)) for column, (field, read) in _FROM_FORM.items()}
    if kind != "machine-detection":
        values["machine"] = None
    if kind != "gather":
        values["digits"] = None
    if kind == "dial":
        # The Dial's DialHangup event names the B leg's cause under its own names.
        values["dial_hangup_cause"] = values["dial_hangup_cause"] or text(
            fields.get("DialBLegHangupCauseName") or fields.get("DialBLegHangupCause")
        )
    else:
        values.update(dict.fromkeys(_DIAL_COLUMNS))
    if kind == "record":
        values["recording_url"] = values["recording_url"] or text(fields.get("RecordFile"))
    else:
        values["recording_url"] = None
    if kind != "hangup":
        values.update(dict.fromkeys(_HANGUP_COLUMNS))
    for column in ("start_time", "answer_time", "end_time"):
        value = getattr(parsed, column, None) if parsed is not None and values[column] else None
        values[f"{column}_utc"] = _plain_utc(value) if isinstance(value, dt.datetime) else None
    return values


def callback_columns(
    kind: str, fields: Mapping[str, str], parsed: VobizCallback | None
) -> tuple[dict[str, Any], str | None, str | None]:
    """The call columns (:func:`callback_values`), ``Event`` and ``CallStatus`` a callback writes, each
    value too long for its column left empty (:func:`fit_callback_lengths`).

    :param kind: The normalised callback kind.
    :param fields: The form fields as strings.
    :param parsed: The callback model of ``fields``.
    """
    both = {"Event": text(fields.get("Event")), "CallStatus": text(fields.get("CallStatus"))}
    values = fit_callback_lengths(kind, fields, {**callback_values(kind, fields, parsed), **both})
    return values, values.pop("Event"), values.pop("CallStatus")


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
        values[f"{name}_utc"] = _parse_iso(iso)
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
