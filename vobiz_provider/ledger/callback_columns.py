"""Callback fields → call columns: what one Vobiz callback writes to the ledger.

:func:`callback_columns` reads the call columns, ``Event`` and ``CallStatus`` a callback carries (each value
too long for its column left empty: lenient ingest), :func:`callback_status` the status its route reports,
:func:`stored_form` the fields kept with its event row, :func:`dedupe_key` the key under which it is stored
once. The rules that merge those columns into a call row are in :mod:`~vobiz_provider.ledger.rows`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, Final

from vobiz_provider.correlation import CALLBACK_KINDS
from vobiz_provider.ledger.rows import int_value, text, uuid_text
from vobiz_provider.ledger.schema import calls, events
from vobiz_provider.models.call import TERMINAL_STATUSES
from vobiz_provider.models.record import status_for_hangup_cause
from vobiz_provider.untrusted import loggable

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import sqlalchemy as sa

    from vobiz_provider.models.callbacks import VobizCallback

__all__ = [
    "MAX_STORED_FORM_BYTES",
    "VOLATILE_FIELDS",
    "callback_columns",
    "callback_status",
    "callback_values",
    "dedupe_key",
    "fit_callback_lengths",
    "log_unreadable",
    "normalise_kind",
    "stored_form",
]

log = logging.getLogger(__name__)

#: Form fields that may differ between Vobiz's retries of one callback; left out of the dedupe key.
VOLATILE_FIELDS: Final = frozenset({"timestamp", "Timestamp"})
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
    "hangup_cause_code": ("HangupCauseCode", int_value),
    "hangup_cause_name": ("HangupCauseName", text),
    "hangup_source": ("HangupSource", text),
    "duration": ("Duration", int_value),
    "bill_duration": ("BillDuration", int_value),
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
