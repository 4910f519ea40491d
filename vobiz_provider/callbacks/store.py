"""The durable store of Vobiz callbacks and of the state of every call placed by the provider.

The receiver writes each callback (:meth:`CallbackStore.record_callback`), the operator records the calls
it fired (:meth:`CallbackStore.record_fired`) and finds those of earlier tries
(:meth:`CallbackStore.find_attempts`), and the shared trigger poller reads the state of all waiting calls
in one query per interval (:meth:`CallbackStore.lookup`).

Built on SQLAlchemy Core (1.4.49+ and 2.x). SQLite (the default, one host) runs in WAL mode and every
write transaction starts with ``BEGIN IMMEDIATE``, so writers queue on ``busy_timeout`` instead of
failing on a lock upgrade. PostgreSQL (several hosts) runs at READ COMMITTED; writes that touch one call
take a transaction-scoped advisory lock on its request and call UUIDs, so "find the row, else insert it"
cannot race, and the unique constraints (``dedupe_key``, ``call_uuid``, ``leg_key``, ``nonce``) with
``INSERT ... ON CONFLICT`` back that up. Deadlocks and serialization failures are retried.

State is monotonic: ``queued < ringing < in-progress < terminal``. A lower-ranked event never overwrites a
higher one (a late ``Ring`` never undoes a ``Hangup``) and a terminal state absorbs: later events only fill
fields that are still empty.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random

from vobiz_provider.callbacks.group_commit import GroupCommitter
from vobiz_provider.callbacks.schema import (
    SCHEMA_VERSION,
    STEPS,
    UTCDateTime,
    answers,
    calls,
    events,
    nonces,
    notifications,
    schema_version,
)
from vobiz_provider.correlation import CALLBACK_KINDS, CorrelationToken
from vobiz_provider.exceptions import LedgerUnavailableError, VobizValidationError
from vobiz_provider.models.call import TERMINAL_STATUSES
from vobiz_provider.models.record import (
    TERMINAL_RANK,
    CallRecord,
    iso_utc,
    status_for_hangup_cause,
    status_rank,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from concurrent.futures import Future

    from sqlalchemy.engine import Connection, Engine, Row, RowMapping

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.models.answer import AnswerSpec
    from vobiz_provider.models.callbacks import VobizCallback

__all__ = [
    "AnswerEntry",
    "CallChange",
    "CallbackStore",
    "LedgerUnavailableError",
    "PreparedCallback",
    "RecordResult",
    "dedupe_key",
    "dispose_stores",
    "get_store",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest number of values in one ``IN (...)`` list (SQLite allows 32766 bound parameters).
MAX_IN_PARAMS: Final = 30_000
#: Form fields that may differ between Vobiz's retries of one callback; left out of the dedupe key.
VOLATILE_FIELDS: Final = frozenset({"timestamp", "Timestamp"})
#: Namespace (first key) of this provider's PostgreSQL advisory locks: "Vobi".
_PG_LOCK_NAMESPACE: Final = 0x566F6269
# PostgreSQL: serialization_failure, deadlock_detected.
_RETRYABLE_PGCODES: Final = frozenset({"40001", "40P01"})

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
_MAX_INT: Final = 2**31 - 1
# The form field each text column of vobiz_calls comes from, to name it when a value is too long.
_FIELD_OF_COLUMN: Final = {
    "call_uuid": "CallUUID",
    "request_uuid": "RequestUUID",
    "destination": "To",
    "from_number": "From",
    "hangup_cause": "HangupCause",
    "hangup_cause_name": "HangupCauseName",
    "hangup_source": "HangupSource",
    "start_time": "StartTime",
    "answer_time": "AnswerTime",
    "end_time": "EndTime",
    "digits": "Digits",
}
_STATE_COLUMNS: Final = frozenset({"status", "rank", "terminal", "source", "updated_at"})
# Details that a newer event of this kind replaces (a second gather, a revised machine detection).
_OVERWRITE_BY_KIND: Final = {
    "machine-detection": frozenset({"machine"}),
    "gather": frozenset({"digits"}),
}



@dataclass(frozen=True, kw_only=True)
class RecordResult:
    """What :meth:`CallbackStore.record_callback` did.

    :param stored: The callback was new and has been stored.
    :param duplicate: The callback was stored before (a Vobiz retry, whatever its nonce): nothing changed.
    :param call_uuid: The call it belongs to, if known.
    :param replayed: The signature nonce was seen within the replay window with *other* fields: a captured
        signature reused on a forged body. Nothing was stored; the receiver should refuse it (403).
    :param record: The call's state after this callback (``None`` when nothing was stored).
    """

    stored: bool
    duplicate: bool
    call_uuid: str | None
    replayed: bool = False
    record: CallRecord | None = None


@dataclass(frozen=True, kw_only=True)
class PreparedCallback:
    """A checked callback and the rows storing it writes (:meth:`CallbackStore.prepare_callback`).

    :param kind: The normalised callback kind.
    :param form: The fields as strings, stored in the event row.
    :param values: The call columns it carries, with the task instance's.
    :param status: The call status it reports, if any.
    :param event: ``Event``.
    :param call_status: ``CallStatus``.
    :param dedupe_key: Its :func:`dedupe_key`.
    :param nonce: The verified signature's nonce, if signed.
    :param nonce_window: Replay window in seconds.
    :param ti_key: The task instance key of its correlation token, if any.
    :param try_number: The try of its correlation token, if any.
    """

    kind: str
    form: dict[str, str] = dataclass_field(repr=False)
    values: dict[str, Any] = dataclass_field(repr=False)
    status: str | None
    event: str | None
    call_status: str | None
    dedupe_key: str
    nonce: str | None = dataclass_field(repr=False)
    nonce_window: float
    ti_key: str | None
    try_number: int | None


@dataclass(frozen=True, kw_only=True)
class AnswerEntry:
    """A stored answer spec (:meth:`CallbackStore.load_answer_entry`).

    :param spec: What the call says and gathers.
    :param callback_base_url: The receiver root the call's callbacks were pointed at, if recorded.
    :param created_at: When it was stored (UTC).
    """

    spec: AnswerSpec
    callback_base_url: str | None
    created_at: dt.datetime


class CallChange:
    """One row of :meth:`CallbackStore.changed_calls`: the call's keys and row version, its record on demand.

    Reading a row is cheap, building its :class:`CallRecord` is not: a reader that already holds this
    :attr:`version` of the row (same ``id``) skips it without building anything.

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
        """The row as a :class:`CallRecord` (built on first use)."""
        if self._record is None:
            self._record = _record(dict(zip(_ROW_COLUMNS, self.version, strict=True)))
        return self._record


_ROW_COLUMNS: Final = tuple(column.name for column in calls.columns)


class _Conflict(Exception):
    """A unique constraint was hit where the locks should have prevented it: retry the transaction."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = int(float(text))
    except (ValueError, OverflowError):
        return None
    return number if abs(number) <= _MAX_INT else None  # an INTEGER column holds 32 bits


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value)
    if text is None:
        return None
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())


def _raw_time(value: Any) -> str | None:
    text = _text(value)
    return None if text in (None, "0") else text


def _parse_iso(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def normalise_destination(destination: str) -> str:
    """The form of a destination used to match callbacks to fired calls (``+`` and case insensitive)."""
    value = destination.strip()
    if value.lower().startswith("sip:"):
        return value.lower()
    return value.lstrip("+")


def _leg_key(request_uuid: str | None, destination: str | None) -> str | None:
    if not request_uuid or not destination:
        return None
    return f"{request_uuid}|{normalise_destination(destination)}"


def dedupe_key(kind: str, fields: Mapping[str, str]) -> str:
    """The key under which a callback is stored once: Vobiz resends the same fields when it retries.

    :param kind: The callback route (``hangup``, ...).
    :param fields: The form fields as received.
    """
    ident = fields.get("CallUUID") or fields.get("RequestUUID") or ""
    stable = sorted((key, value) for key, value in fields.items() if key not in VOLATILE_FIELDS)
    payload = [ident, kind, fields.get("Event"), fields.get("CallStatus"), stable]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def _length_limits(table: sa.Table) -> dict[str, int]:
    """The longest value each string column of ``table`` holds."""
    return {
        column.name: column.type.length
        for column in table.columns
        if getattr(column.type, "length", None) is not None
    }


#: The longest value of each call column and event field a callback writes (checked before storing).
_CALLBACK_LIMITS: Final = {
    **_length_limits(calls),
    "Event": events.c.event.type.length,
    "CallStatus": events.c.call_status.type.length,
    "nonce": events.c.nonce.type.length,
}


def _check_lengths(items: Iterable[tuple[str, sa.Column[Any], Any]]) -> None:
    """Refuse values longer than their column, naming the field (PostgreSQL would fail the transaction)."""
    for field, column, value in items:
        limit = getattr(column.type, "length", None)
        if isinstance(value, str) and limit is not None and len(value) > limit:
            raise VobizValidationError(f"callback field {field} is longer than {limit} characters")


def _normalise_kind(kind: str) -> str:
    normalised = kind.strip().lower().replace("_", "-") if isinstance(kind, str) else kind
    if normalised not in CALLBACK_KINDS:
        raise ValueError(f"unknown callback kind {kind!r}; expected one of {', '.join(CALLBACK_KINDS)}")
    return normalised


def _callback_status(
    kind: str, fields: Mapping[str, str], code: int | None, cause: str | None, *, answered: bool
) -> str | None:
    """The call status a callback reports, or ``None`` when it does not move the call."""
    if kind in ("machine-detection", "gather"):
        return None
    event = (_text(fields.get("Event")) or "").lower()
    status = (_text(fields.get("CallStatus")) or "").lower() or None
    if kind == "hangup" or event == "hangup":
        # Hangup always ends the call, whatever (if anything) CallStatus says.
        if status in TERMINAL_STATUSES:
            return status
        return status_for_hangup_cause(code, cause, answered=answered)
    if status is not None and status_rank(status) is not None:
        return status
    if kind == "ring" or event == "ring":
        return "ringing"
    if kind == "answer" or event in ("startapp", "answer"):
        return "in-progress"
    return None


def _callback_values(
    kind: str, fields: Mapping[str, str], timezone: str, parsed: VobizCallback | None = None
) -> dict[str, Any]:
    """The call columns a callback carries (``None`` for what it does not say).

    ``parsed`` is the callback model of ``fields`` when the caller already has it (the receiver validates
    before storing); otherwise the fields are parsed here, only for the UTC times.
    """

    values: dict[str, Any] = {
        "call_uuid": _text(fields.get("CallUUID")),
        "request_uuid": _text(fields.get("RequestUUID")),
        "destination": _text(fields.get("To")),
        "from_number": _text(fields.get("From")),
        "hangup_cause": _text(fields.get("HangupCause")),
        "hangup_cause_code": _int(fields.get("HangupCauseCode")),
        "hangup_cause_name": _text(fields.get("HangupCauseName")),
        "hangup_source": _text(fields.get("HangupSource")),
        "duration": _int(fields.get("Duration")),
        "bill_duration": _int(fields.get("BillDuration")),
        "start_time": _raw_time(fields.get("StartTime")),
        "answer_time": _raw_time(fields.get("AnswerTime")),
        "end_time": _raw_time(fields.get("EndTime")),
        "machine": _bool(fields.get("Machine")) if kind == "machine-detection" else None,
        "digits": _text(fields.get("Digits")) if kind == "gather" else None,
    }
    if parsed is None:
        from vobiz_provider.models.callbacks import parse_callback

        try:
            parsed = parse_callback(fields, timezone=timezone, kind=kind)
        except VobizValidationError as err:
            # Keep the raw fields; only the UTC times are lost. The receiver validates before storing.
            log.warning("Storing a %s callback whose fields could not all be parsed: %s", kind, err)
    for column in ("start_time", "answer_time", "end_time"):
        value = getattr(parsed, column, None) if parsed is not None else None
        values[f"{column}_utc"] = _plain_utc(value) if isinstance(value, dt.datetime) else None
    return values


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


def _event_row(prepared: PreparedCallback, now: dt.datetime) -> dict[str, Any]:
    return {
        "received_at": now,
        "kind": prepared.kind,
        "event": prepared.event,
        "call_uuid": prepared.values["call_uuid"],
        "request_uuid": prepared.values["request_uuid"],
        "call_status": prepared.call_status,
        "ti_key": prepared.ti_key,
        "try_number": prepared.try_number,
        "dedupe_key": prepared.dedupe_key,
        "nonce": prepared.nonce,
        "fields": prepared.form,
    }


def _correlation_values(correlation: CorrelationToken | None) -> dict[str, Any]:
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


def _merge(
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


_CALL_COLUMNS: Final = tuple(column.name for column in calls.columns if column.name != "id")


def _new_call_row(
    values: Mapping[str, Any], *, leg: str | None, insert_status: str, source: str, now: dt.datetime
) -> dict[str, Any]:
    """The row of a call first seen through ``values`` (an event, or a state from the API)."""
    rank = status_rank(insert_status)
    if rank is None:
        insert_status, rank = "queued", 0
    row: dict[str, Any] = dict.fromkeys(_CALL_COLUMNS)
    row.update((column, value) for column, value in values.items() if column in row)
    row.update(
        leg_key=leg,
        status=insert_status,
        rank=rank,
        terminal=rank == TERMINAL_RANK,
        source=source,
        updated_at=now,
    )
    return row


def _record(row: Mapping[str, Any]) -> CallRecord:
    return CallRecord(
        call_uuid=row["call_uuid"],
        request_uuid=row["request_uuid"],
        to=row["destination"],
        from_number=row["from_number"],
        status=row["status"],
        terminal=bool(row["terminal"]),
        hangup_cause=row["hangup_cause"],
        hangup_cause_code=row["hangup_cause_code"],
        hangup_cause_name=row["hangup_cause_name"],
        hangup_source=row["hangup_source"],
        duration=row["duration"],
        bill_duration=row["bill_duration"],
        start_time=iso_utc(row["start_time_utc"]),
        answer_time=iso_utc(row["answer_time_utc"]),
        end_time=iso_utc(row["end_time_utc"]),
        machine=row["machine"],
        digits=row["digits"],
        dag_id=row["dag_id"],
        run_id=row["run_id"],
        task_id=row["task_id"],
        map_index=row["map_index"],
        try_number=row["try_number"],
        conn_id=row["conn_id"],
        source=row["source"],
        updated_at=iso_utc(row["updated_at"]),
    )


def _pair(request_uuids: Sequence[str], destinations: Sequence[str]) -> list[tuple[str, str]]:
    if isinstance(request_uuids, str) or isinstance(destinations, str):
        raise TypeError("request_uuids and destinations must be sequences of strings, not a string")
    request_uuids = [_text(value) for value in request_uuids]
    destinations = [_text(value) for value in destinations]
    if not request_uuids or any(value is None for value in request_uuids):
        raise ValueError("record_fired needs at least one non-empty request_uuid")
    if not destinations or any(value is None for value in destinations):
        raise ValueError("record_fired needs at least one non-empty destination")
    if len(request_uuids) == len(destinations):
        return list(zip(request_uuids, destinations, strict=True))  # type: ignore[arg-type]
    if len(request_uuids) == 1:
        return [(request_uuids[0], destination) for destination in destinations]  # type: ignore[misc]
    raise ValueError(
        f"record_fired got {len(request_uuids)} request_uuids for {len(destinations)} destinations; "
        "expected one per destination or a single one for all"
    )


def _with_postgres_driver(url: sa.engine.URL) -> sa.engine.URL:
    """``postgresql://`` means psycopg2 here (SQLAlchemy 2.1 defaults to psycopg 3; either works)."""
    if url.drivername != "postgresql":
        return url
    import importlib.util

    for driver in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(driver) is not None:
            return url.set(drivername=f"postgresql+{driver}")
    return url.set(drivername="postgresql+psycopg2")  # fails with a clear ImportError below


def _lock_id(key: str) -> int:
    return struct.unpack(">i", hashlib.sha256(key.encode()).digest()[:4])[0]


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, _Conflict):
        return True
    return isinstance(err, sa_exc.DBAPIError) and getattr(err.orig, "pgcode", None) in _RETRYABLE_PGCODES


def _chunks(items: Sequence[T], size: int = MAX_IN_PARAMS) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class _Statements:
    """The statements of the callback write path, built once per store and run with parameters.

    Building ``insert(...).values(**row)`` for every callback costs about ten times its execution
    (SQLAlchemy derives a cache key from every literal); these take their values as execute parameters.
    """

    claim_nonce: Any
    insert_event: Any
    insert_call: Any
    call_by_uuid: Any
    call_by_leg: Any
    update_call: Any
    advisory_locks: Any
    claim_nonces: Any
    insert_events: Any
    insert_calls: Any
    known_calls: Any

    @classmethod
    def build(cls, dialect: str) -> _Statements:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        claim = insert(nonces)
        claim = claim.on_conflict_do_update(
            index_elements=["nonce"],
            set_={"seen_at": claim.excluded.seen_at},
            where=nonces.c.seen_at < sa.bindparam("cutoff", type_=UTCDateTime()),
        )
        insert_events = insert(events).on_conflict_do_nothing(index_elements=["dedupe_key"])
        insert_calls = insert(calls).on_conflict_do_nothing()
        return cls(
            claim_nonces=claim.returning(nonces.c.nonce),
            insert_events=insert_events.returning(events.c.dedupe_key),
            insert_calls=insert_calls.returning(calls.c.id),
            known_calls=sa.select(calls.c.call_uuid, calls.c.leg_key, calls.c.request_uuid).where(
                sa.or_(
                    calls.c.call_uuid.in_(sa.bindparam("b_call_uuids", expanding=True)),
                    calls.c.leg_key.in_(sa.bindparam("b_leg_keys", expanding=True)),
                    calls.c.request_uuid.in_(sa.bindparam("b_request_uuids", expanding=True)),
                )
            ),
            claim_nonce=claim,
            insert_event=insert(events).on_conflict_do_nothing(index_elements=["dedupe_key"]),
            insert_call=insert(calls).on_conflict_do_nothing(),
            call_by_uuid=sa.select(calls)
            .where(calls.c.call_uuid == sa.bindparam("b_call_uuid"))
            .with_for_update()
            .limit(1),
            call_by_leg=sa.select(calls)
            .where(calls.c.leg_key == sa.bindparam("b_leg_key"))
            .with_for_update()
            .limit(1),
            update_call=calls.update().where(calls.c.id == sa.bindparam("b_id")),
            # Volatile functions in the select list run after ORDER BY: the locks are taken in key order,
            # so two writers locking overlapping sets cannot deadlock each other.
            advisory_locks=sa.text(
                "SELECT pg_advisory_xact_lock(:namespace, key) "
                "FROM unnest(CAST(:keys AS integer[])) AS key ORDER BY key"
            ),
        )


#: One lock per SQLite database file, shared by every store of this process on that file.
_SQLITE_WRITE_LOCKS: dict[str, threading.RLock] = {}
_SQLITE_WRITE_LOCKS_GUARD = threading.Lock()


def _sqlite_write_lock(url: sa.engine.URL) -> threading.RLock:
    import os.path

    database = url.database or ""
    key = os.path.realpath(database) if database not in ("", ":memory:") else f"memory:{id(url)}"
    with _SQLITE_WRITE_LOCKS_GUARD:
        return _SQLITE_WRITE_LOCKS.setdefault(key, threading.RLock())


class CallbackStore:
    """The callback store at one SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``).

    The schema is created or upgraded on first use (or explicitly with :meth:`upgrade`). Instances are
    thread-safe; share one per URL with :func:`get_store`. Methods are synchronous: from asyncio code use
    :meth:`alookup` or ``asyncio.to_thread``.

    :param url: SQLAlchemy URL. PostgreSQL needs ``psycopg2`` (extra ``airflow-provider-vobiz[postgres]``).
    :param echo: Log every SQL statement (debugging).
    :param nonce_window: Default replay window of signature nonces, in seconds.
    :param busy_timeout: Seconds a SQLite writer waits for the lock, or a PostgreSQL connection attempt
        waits, before :class:`LedgerUnavailableError` is raised.
    """

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        nonce_window: float = 300.0,
        busy_timeout: float = 5.0,
    ) -> None:
        self.url = sa.engine.make_url(url)
        self.nonce_window = nonce_window
        self._busy_timeout = busy_timeout
        self._engine = self._create_engine(echo=echo)
        self._dialect = self._engine.dialect.name
        self._sql = _Statements.build(self._dialect)
        # SQLite admits one writer at a time and its busy handler sleeps (1, 2, 5, 10... ms) between
        # attempts: this process's writers queue on a lock instead, in arrival order.
        self._write_lock = _sqlite_write_lock(self.url) if self._dialect == "sqlite" else None
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._committer: GroupCommitter[PreparedCallback, RecordResult] | None = None
        self._committer_lock = threading.Lock()
        self._last_nonce_purge = 0.0

    def __repr__(self) -> str:
        return f"CallbackStore({self.url.render_as_string(hide_password=True)!r})"

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: VobizSettings | None = None) -> CallbackStore:
        """A new store at ``[vobiz] callback_store`` (prefer :func:`get_store` to share one engine).

        :param settings: The settings; read from Airflow's configuration when omitted.
        """
        if settings is None:
            from vobiz_provider.config import get_settings

            settings = get_settings()
        return cls(settings.callback_store, nonce_window=settings.nonce_window)

    def _create_engine(self, *, echo: bool) -> Engine:
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            return self._create_sqlite_engine(echo=echo)
        if backend == "postgresql":
            try:
                return sa.create_engine(
                    _with_postgres_driver(self.url),
                    echo=echo,
                    future=True,
                    pool_pre_ping=True,
                    connect_args={"connect_timeout": max(1, round(self._busy_timeout))},
                )
            except ImportError as err:
                raise ImportError(
                    f"a PostgreSQL callback store needs a driver ({err}); install "
                    "'airflow-provider-vobiz[postgres]' (psycopg2)"
                ) from err
        raise ValueError(
            f"unsupported callback store {self.url.render_as_string(hide_password=True)!r}: "
            "use a sqlite:/// or postgresql:// URL"
        )

    def _create_sqlite_engine(self, *, echo: bool) -> Engine:
        in_memory = self.url.database in (None, "", ":memory:")
        options: dict[str, Any] = {"echo": echo, "future": True}
        if in_memory:
            # One shared connection, or every checkout would see its own empty database.
            options["poolclass"] = sa.pool.StaticPool
        engine = sa.create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": self._busy_timeout},
            **options,
        )
        busy_ms = int(self._busy_timeout * 1000)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own implicit BEGIN is
            # deferred and cannot be made IMMEDIATE).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                if not in_memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front: a deferred transaction that reads and then writes
            # fails with SQLITE_BUSY when another writer committed in between, without waiting.
            immediate = conn.get_execution_options().get("vobiz_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for event listeners in tests and diagnostics)."""
        return self._engine

    def dispose(self) -> None:
        """Write the callbacks still queued, stop the group-commit writer and close the pooled connections.

        The store can still be used; it reconnects (and restarts the writer) on demand.
        """
        with self._committer_lock:
            committer, self._committer = self._committer, None
        if committer is not None:
            committer.close(timeout=self._busy_timeout + 5)
        self._engine.dispose()

    # -- transactions -------------------------------------------------------------------------------

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as err:
            reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
            raise LedgerUnavailableError(
                f"callback store {self.url.render_as_string(hide_password=True)} is unavailable: {reason}"
            ) from err
        except sa_exc.DBAPIError as err:
            if err.connection_invalidated:
                raise LedgerUnavailableError(
                    f"callback store {self.url.render_as_string(hide_password=True)} lost its connection"
                ) from err
            raise

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """Wait for this process's turn to write (SQLite only), at most ``busy_timeout``."""
        lock = self._write_lock
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=self._busy_timeout):
            raise LedgerUnavailableError(
                f"callback store {self.url.render_as_string(hide_password=True)} stayed locked for "
                f"{self._busy_timeout:g} s"
            )
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _begin(self, *, write: bool) -> Iterator[Connection]:
        if not write:
            with self._engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._write_turn(), self._engine.connect() as conn:
            conn = conn.execution_options(vobiz_write=True)
            with conn.begin():
                yield conn

    def _run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """Run ``work`` in one transaction, retrying deadlocks; connection problems → LedgerUnavailableError."""
        with self._translate_errors():
            self._ensure_schema()
            for attempt in Retrying(
                retry=retry_if_exception(_is_retryable),
                stop=stop_after_attempt(5),
                wait=wait_random(0, 0.05),
                reraise=True,
            ):
                with attempt, self._begin(write=write) as conn:
                    return work(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def _lock(self, conn: Connection, keys: Iterable[str | None]) -> None:
        """Serialise the writers of these request/call UUIDs (PostgreSQL; SQLite writers are serial).

        One statement takes every lock, in key order.
        """
        if self._dialect != "postgresql":
            return
        lock_ids = sorted({_lock_id(key) for key in keys if key})
        if lock_ids:
            conn.execute(self._sql.advisory_locks, {"namespace": _PG_LOCK_NAMESPACE, "keys": lock_ids})

    def _insert(self, table: sa.Table) -> Any:
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    # -- schema -------------------------------------------------------------------------------------

    def upgrade(self) -> int:
        """Create the tables or bring them to the current version (idempotent); returns the version.

        Runs in one transaction under a lock (PostgreSQL advisory lock, SQLite write lock), so several
        processes may call it at once.
        """
        with self._translate_errors(), self._begin(write=True) as conn:
            if self._dialect == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:namespace, 0)"), {"namespace": _PG_LOCK_NAMESPACE}
                )
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(
                sa.select(schema_version.c.version).where(schema_version.c.id == 1)
            ).scalar_one_or_none()
            version = current or 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the callback store has schema version {version}, newer than this provider's "
                    f"{SCHEMA_VERSION}: upgrade airflow-provider-vobiz on this host"
                )
            for step in STEPS[version:]:
                step(conn)
            if current is None:
                conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION, upgraded_at=_now()))
            elif version < SCHEMA_VERSION:
                conn.execute(
                    schema_version.update()
                    .where(schema_version.c.id == 1)
                    .values(version=SCHEMA_VERSION, upgraded_at=_now())
                )
        self._schema_ready = True
        return SCHEMA_VERSION

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self.upgrade()

    # -- writes -------------------------------------------------------------------------------------

    def record_fired(
        self,
        *,
        request_uuids: Sequence[str],
        destinations: Sequence[str],
        from_number: str | None = None,
        correlation: CorrelationToken | None = None,
    ) -> None:
        """Record the calls of one accepted Make-Call request, as ``queued`` (idempotent).

        One row per destination. With one request UUID per destination they are paired in order; a single
        request UUID for several destinations (bulk dial) goes on every row. A row a callback already
        created for the same leg is completed instead (callbacks can arrive before this is called).

        :param request_uuids: ``CallFiredResponse.request_uuids``.
        :param destinations: The destinations, in the order of the request's ``to``.
        :param from_number: The caller ID used.
        :param correlation: The task instance (and try) that placed the call.
        """
        pairs = _pair(request_uuids, destinations)
        from_number = _text(from_number)
        _check_lengths(
            [("from_number", calls.c.from_number, from_number)]
            + [("request_uuid", calls.c.request_uuid, request_uuid) for request_uuid, _ in pairs]
            + [("to", calls.c.destination, destination) for _, destination in pairs]
        )
        ti_values = _correlation_values(correlation)
        per_request: dict[str, int] = {}
        for request_uuid, _ in pairs:
            per_request[request_uuid] = per_request.get(request_uuid, 0) + 1

        def work(conn: Connection) -> None:
            self._lock(conn, per_request)
            now = _now()
            existing = [
                dict(row)
                for chunk in _chunks(list(per_request))
                for row in conn.execute(
                    sa.select(calls).where(calls.c.request_uuid.in_(chunk)).with_for_update()
                ).mappings()
            ]
            by_leg = {row["leg_key"]: row for row in existing if row["leg_key"]}
            by_request: dict[str, list[dict[str, Any]]] = {}
            for row in existing:
                by_request.setdefault(row["request_uuid"], []).append(row)
            new_rows: list[dict[str, Any]] = []
            new_legs: set[str | None] = set()
            for request_uuid, destination in pairs:
                leg = _leg_key(request_uuid, destination)
                values = {
                    "request_uuid": request_uuid,
                    "destination": destination,
                    "from_number": from_number,
                    "leg_key": leg,
                    "fired_at": now,
                    **ti_values,
                }
                row = by_leg.get(leg)
                if (
                    row is None
                    and per_request[request_uuid] == 1
                    and len(by_request.get(request_uuid, ())) == 1
                ):
                    # A callback came first and spelt the destination differently: it is this call.
                    row = by_request[request_uuid][0]
                if row is None:
                    if leg in new_legs:
                        continue  # the same destination twice in one request: one row per leg
                    new_legs.add(leg)
                    new_rows.append(
                        {
                            **{column.name: None for column in calls.columns if column.name != "id"},
                            **values,
                            "status": "queued",
                            "rank": 0,
                            "terminal": False,
                            "source": "fired",
                            "updated_at": now,
                        }
                    )
                    continue
                changes = _merge(row, values, status=None, source="fired")
                if changes.get("leg_key") and changes["leg_key"] in by_leg:
                    changes.pop("leg_key")
                if changes:
                    changes["updated_at"] = now
                    conn.execute(calls.update().where(calls.c.id == row["id"]).values(**changes))
            if new_rows:
                # The advisory locks (PostgreSQL) or the write lock (SQLite) rule out a concurrent insert
                # of these legs; ON CONFLICT only guards against a row made outside this provider's code.
                conn.execute(self._insert(calls).on_conflict_do_nothing(), new_rows)

        self._run(work, write=True)

    def record_callback(
        self,
        kind: str,
        fields: Mapping[str, str],
        *,
        correlation: CorrelationToken | None = None,
        nonce: str | None = None,
        timezone: str | None = None,
        nonce_window: float | None = None,
        callback: VobizCallback | None = None,
    ) -> RecordResult:
        """Store one callback and apply it to its call, in one transaction.

        The nonce, the event and the call update commit together: if storing fails (503 to Vobiz), the
        nonce is not burnt, so Vobiz's retry with the same signature is still accepted; and a nonce that was
        accepted always has its callback stored. A repeated callback (same fields, a Vobiz retry) is stored
        once and changes nothing the second time.

        :param kind: The receiver route: ``ring``, ``answer``, ``hangup``, ``machine-detection``, ``gather``.
        :param fields: The form (or query) fields exactly as received (``CallUUID``, ``Event``, ...).
        :param correlation: The verified correlation token of the callback URL, if any.
        :param nonce: The verified signature's nonce; a nonce seen within the replay window makes the
            callback ``replayed`` and nothing is stored.
        :param timezone: The account timezone of ``StartTime``/``AnswerTime``/``EndTime`` (the connection's
            ``timezone``); UTC when omitted.
        :param nonce_window: Replay window in seconds (default: the store's ``nonce_window``).
        :param callback: The callback model already parsed from ``fields`` in ``timezone``
            (:func:`~vobiz_provider.models.callbacks.parse_callback`), so they are not parsed again.
        """
        prepared = self.prepare_callback(
            kind,
            fields,
            correlation=correlation,
            nonce=nonce,
            timezone=timezone,
            nonce_window=nonce_window,
            callback=callback,
        )
        return self.record_prepared(prepared)

    def record_prepared(self, prepared: PreparedCallback) -> RecordResult:
        """Store a prepared callback in its own transaction (see :meth:`record_callback`).

        :param prepared: From :meth:`prepare_callback`.
        """
        return self._run(lambda conn: self._write_callback(conn, prepared, now=_now()), write=True)

    def prepare_callback(
        self,
        kind: str,
        fields: Mapping[str, str],
        *,
        correlation: CorrelationToken | None = None,
        nonce: str | None = None,
        timezone: str | None = None,
        nonce_window: float | None = None,
        callback: VobizCallback | None = None,
    ) -> PreparedCallback:
        """Check one callback and work out what storing it writes, without touching the database.

        The parameters are those of :meth:`record_callback`. Pass the result to :meth:`submit_callback` (or
        :meth:`arecord_callback`).

        :raises VobizValidationError: When a value is longer than its column (naming the field).
        :raises ValueError: For an unknown ``kind``.
        """
        kind = _normalise_kind(kind)
        form = {str(key): "" if value is None else str(value) for key, value in fields.items()}
        values = _callback_values(kind, form, timezone or "UTC", callback)
        event = _text(form.get("Event"))
        call_status = _text(form.get("CallStatus"))
        for name, value in (*values.items(), ("Event", event), ("CallStatus", call_status), ("nonce", nonce)):
            limit = _CALLBACK_LIMITS.get(name)
            if limit is not None and isinstance(value, str) and len(value) > limit:
                raise VobizValidationError(
                    f"callback field {_FIELD_OF_COLUMN.get(name, name)} is longer than {limit} characters"
                )
        status = _callback_status(
            kind,
            form,
            values["hangup_cause_code"],
            values["hangup_cause"],
            answered=values["answer_time"] is not None,
        )
        return PreparedCallback(
            kind=kind,
            form=form,
            values={**values, **_correlation_values(correlation)},
            status=status,
            event=event,
            call_status=call_status,
            dedupe_key=dedupe_key(kind, form),
            nonce=nonce,
            nonce_window=self.nonce_window if nonce_window is None else nonce_window,
            ti_key=correlation.ti_key if correlation else None,
            try_number=correlation.try_number if correlation else None,
        )

    def submit_callback(self, prepared: PreparedCallback) -> Future[RecordResult]:
        """Queue a prepared callback for the store's writer; the future resolves once it is committed.

        Group commit: one writer thread per store writes every callback queued meanwhile in ONE transaction
        (nonce, event and call row of each, as :meth:`record_callback` does), commits, and only then resolves
        their futures. If the batch cannot be committed, every future fails with :class:`LedgerUnavailableError`
        and nothing of the batch is stored. A callback that fails on its own (a bug, a constraint) does not
        fail the others: the batch is then written again one callback per transaction. Cancelling the future
        before the writer takes it withdraws the callback.

        :param prepared: From :meth:`prepare_callback`.
        """
        committer = self._committer
        if committer is None:
            with self._committer_lock:
                if self._committer is None:
                    self._committer = GroupCommitter(apply_batch=self._write_batch)
                committer = self._committer
        return committer.submit(prepared)

    async def arecord_callback(
        self,
        kind: str,
        fields: Mapping[str, str],
        *,
        correlation: CorrelationToken | None = None,
        nonce: str | None = None,
        timezone: str | None = None,
        nonce_window: float | None = None,
        callback: VobizCallback | None = None,
    ) -> RecordResult:
        """:meth:`record_callback` for asyncio callers, through the group-commit writer (see
        :meth:`submit_callback`): returns once the callback is committed, without blocking the loop."""
        prepared = self.prepare_callback(
            kind,
            fields,
            correlation=correlation,
            nonce=nonce,
            timezone=timezone,
            nonce_window=nonce_window,
            callback=callback,
        )
        return await asyncio.wrap_future(self.submit_callback(prepared))

    def _write_batch(self, items: Sequence[PreparedCallback]) -> list[RecordResult | BaseException]:
        """Write ``items`` in one transaction and commit (the group-commit writer's ``apply_batch``).

        :raises LedgerUnavailableError: When the store cannot be reached or the commit fails: nothing is stored.
        """
        lock_keys = [key for item in items for key in (item.values["request_uuid"], item.values["call_uuid"])]

        def work(conn: Connection) -> list[RecordResult | BaseException]:
            self._lock(conn, lock_keys)
            return list(self._write_many(conn, items, now=_now()))

        try:
            return self._run(work, write=True)
        except LedgerUnavailableError:
            raise
        except Exception as err:
            if len(items) == 1:
                return [err]
            reason = str(getattr(err, "orig", None) or err).strip().splitlines()
            log.warning(
                "A batch of %d callbacks failed (%s: %s); writing them one by one",
                len(items),
                type(err).__name__,
                reason[0] if reason else "",
            )
        results: list[RecordResult | BaseException] = []
        for item in items:
            try:
                results.append(self.record_prepared(item))
            except Exception as err:  # this callback's own failure, answered to its sender alone
                results.append(err)
        return results

    def _write_many(
        self, conn: Connection, items: Sequence[PreparedCallback], *, now: dt.datetime
    ) -> list[RecordResult]:
        """:meth:`_write_callback` for each item, in order, with one statement per step for the whole batch.

        The caller holds the advisory locks of every item's UUIDs (PostgreSQL) or the write lock (SQLite).
        Each item ends as if written alone after the ones before it: a nonce or a dedupe key repeated within
        the batch counts as seen, and items that touch the same call, or a call already stored, are applied
        one after the other by :meth:`_apply`. Only calls new to the store and to the batch are inserted in
        bulk.
        """
        results: list[RecordResult | None] = [None] * len(items)

        # 1. Nonces: the first use of each nonce within the batch claims it.
        claimants: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.nonce is not None:
                claimants.setdefault(item.nonce, index)
        fresh: set[str] = set()
        by_window: dict[float, list[str]] = {}
        for nonce, index in claimants.items():
            by_window.setdefault(items[index].nonce_window, []).append(nonce)
        for window, batch_nonces in by_window.items():
            cutoff = now - dt.timedelta(seconds=window)
            rows = [{"nonce": nonce, "seen_at": now, "cutoff": cutoff} for nonce in batch_nonces]
            fresh.update(conn.execute(self._sql.claim_nonces, rows).scalars())
            self._purge_nonces(conn, cutoff=cutoff, window=window)

        # 2. Events: the first of each dedupe key among the items that claimed their nonce (or are unsigned).
        inserting: list[int] = []
        keys: set[str] = set()
        reused: list[int] = []
        for index, item in enumerate(items):
            if item.nonce is not None and (item.nonce not in fresh or claimants[item.nonce] != index):
                reused.append(index)
            elif item.dedupe_key in keys:
                results[index] = RecordResult(
                    stored=False, duplicate=True, call_uuid=item.values["call_uuid"]
                )
            else:
                keys.add(item.dedupe_key)
                inserting.append(index)
        inserted: set[str] = set()
        if inserting:
            rows = [_event_row(items[index], now) for index in inserting]
            inserted.update(conn.execute(self._sql.insert_events, rows).scalars())
        stored = [index for index in inserting if items[index].dedupe_key in inserted]
        for index in inserting:
            if items[index].dedupe_key not in inserted:
                results[index] = RecordResult(
                    stored=False, duplicate=True, call_uuid=items[index].values["call_uuid"]
                )

        # 3. A nonce seen before: Vobiz resending the same callback, or a captured signature reused.
        for index in reused:
            item = items[index]
            resent = conn.execute(
                sa.select(events.c.id)
                .where(events.c.dedupe_key == item.dedupe_key, events.c.nonce == item.nonce)
                .limit(1)
            ).first()
            results[index] = RecordResult(
                stored=False, duplicate=True, replayed=resent is None, call_uuid=item.values["call_uuid"]
            )

        # 4. Calls: insert those new to the store and to the batch at once; apply the others in order.
        records = self._apply_many(conn, [items[index] for index in stored], now=now)
        for index, record in zip(stored, records, strict=True):
            results[index] = RecordResult(
                stored=True,
                duplicate=False,
                call_uuid=record.call_uuid if record else items[index].values["call_uuid"],
                record=record,
            )
        return results  # type: ignore[return-value]

    def _apply_many(
        self, conn: Connection, items: Sequence[PreparedCallback], *, now: dt.datetime
    ) -> list[CallRecord | None]:
        """Apply stored callbacks to their calls, in order (the caller holds the locks)."""
        if not items:
            return []
        idents = [
            (
                item.values["call_uuid"],
                _leg_key(item.values["request_uuid"], item.values.get("destination")),
                item.values["request_uuid"],
            )
            for item in items
        ]
        known = conn.execute(
            self._sql.known_calls,
            {
                "b_call_uuids": sorted({call for call, _, _ in idents if call}),
                "b_leg_keys": sorted({leg for _, leg, _ in idents if leg}),
                "b_request_uuids": sorted({request for _, _, request in idents if request}),
            },
        ).all()
        taken: dict[tuple[str, str], int] = {}
        for row in known:
            for name, value in (("c", row.call_uuid), ("l", row.leg_key), ("r", row.request_uuid)):
                if value:
                    taken[(name, value)] = 2  # already stored: never a bulk insert
        for call, leg, request in idents:
            for name, value in (("c", call), ("l", leg), ("r", request)):
                if value:
                    taken[(name, value)] = taken.get((name, value), 0) + 1
        records: list[CallRecord | None] = []
        new_rows: list[dict[str, Any]] = []
        for item, (call, leg, request) in zip(items, idents, strict=True):
            status = item.status
            if not call and not request:
                records.append(None)
                continue
            alone = all(
                taken.get((name, value), 0) == 1
                for name, value in (("c", call), ("l", leg), ("r", request))
                if value
            )
            if alone:
                row = _new_call_row(
                    item.values, leg=leg, insert_status=status or "in-progress", source="callback", now=now
                )
                new_rows.append(row)
                records.append(_record(row))
            else:
                records.append(
                    self._apply(
                        conn,
                        dict(item.values),
                        status=status,
                        # A machine detection or gather can only happen on an answered call.
                        insert_status=status or "in-progress",
                        source="callback",
                        overwrite=_OVERWRITE_BY_KIND.get(item.kind, frozenset()),
                        now=now,
                        locked=True,
                    )
                )
        if new_rows and len(conn.execute(self._sql.insert_calls, new_rows).all()) != len(new_rows):
            raise _Conflict("a call row appeared while its writer held the locks")
        return records

    def _write_callback(
        self, conn: Connection, prepared: PreparedCallback, *, now: dt.datetime, locked: bool = False
    ) -> RecordResult:
        """Claim the nonce, insert the event and apply it to its call, inside the caller's transaction."""
        call_uuid = prepared.values["call_uuid"]
        nonce, key = prepared.nonce, prepared.dedupe_key
        if nonce is not None and not self._claim_nonce(conn, nonce, now=now, window=prepared.nonce_window):
            # A nonce is only ever claimed together with its callback. The same fields under the same
            # nonce are Vobiz resending a callback whose answer it lost; anything else reuses a captured
            # signature (Vobiz signs URL + nonce, not the body) and is refused.
            resent = conn.execute(
                sa.select(events.c.id).where(events.c.dedupe_key == key, events.c.nonce == nonce).limit(1)
            ).first()
            return RecordResult(stored=False, duplicate=True, replayed=resent is None, call_uuid=call_uuid)
        inserted = conn.execute(self._sql.insert_event, _event_row(prepared, now)).rowcount
        if not inserted:
            return RecordResult(stored=False, duplicate=True, call_uuid=call_uuid)
        record = self._apply(
            conn,
            dict(prepared.values),
            status=prepared.status,
            # A machine detection or gather can only happen on an answered call.
            insert_status=prepared.status or "in-progress",
            source="callback",
            overwrite=_OVERWRITE_BY_KIND.get(prepared.kind, frozenset()),
            now=now,
            locked=locked,
        )
        return RecordResult(
            stored=True,
            duplicate=False,
            call_uuid=record.call_uuid if record else call_uuid,
            record=record,
        )

    def record_api_result(self, record: CallRecord) -> None:
        """Store a state learned from the Vobiz API (CDR, live call), under the same monotonic rules.

        :param record: The state, with at least ``call_uuid`` or ``request_uuid``.
        """
        if not record.call_uuid and not record.request_uuid:
            raise ValueError("record_api_result needs a record with a call_uuid or a request_uuid")
        status = record.status
        if record.terminal and status not in TERMINAL_STATUSES:
            status = status_for_hangup_cause(record.hangup_cause_code, record.hangup_cause)
        values: dict[str, Any] = {
            "call_uuid": record.call_uuid,
            "request_uuid": record.request_uuid,
            "destination": record.to,
            "from_number": record.from_number,
            "hangup_cause": record.hangup_cause,
            "hangup_cause_code": record.hangup_cause_code,
            "hangup_cause_name": record.hangup_cause_name,
            "hangup_source": record.hangup_source,
            "duration": record.duration,
            "bill_duration": record.bill_duration,
            "machine": record.machine,
            "digits": record.digits,
            "dag_id": record.dag_id,
            "run_id": record.run_id,
            "task_id": record.task_id,
            "map_index": record.map_index,
            "try_number": record.try_number,
            "conn_id": record.conn_id,
        }
        if record.dag_id and record.run_id and record.task_id and record.map_index is not None:
            values["ti_key"] = f"{record.dag_id}/{record.run_id}/{record.task_id}/{record.map_index}"
        for column in ("start_time", "answer_time", "end_time"):
            text = getattr(record, column)
            values[column] = text
            values[f"{column}_utc"] = _parse_iso(text)
        _check_lengths((column, calls.c[column], value) for column, value in values.items())

        def work(conn: Connection) -> None:
            self._apply(conn, values, status=status, insert_status=status, source="api", now=_now())

        self._run(work, write=True)

    def _apply(
        self,
        conn: Connection,
        values: dict[str, Any],
        *,
        status: str | None,
        insert_status: str,
        source: str,
        now: dt.datetime,
        overwrite: frozenset[str] = frozenset(),
        locked: bool = False,
    ) -> CallRecord | None:
        """Find (or create) the call row that ``values`` describe and merge them in; the row afterwards.

        ``locked``: the caller already holds the PostgreSQL advisory locks of its UUIDs.
        """
        call_uuid = values.get("call_uuid")
        request_uuid = values.get("request_uuid")
        if not call_uuid and not request_uuid:
            return None
        leg = _leg_key(request_uuid, values.get("destination"))
        if not locked:
            self._lock(conn, (request_uuid, call_uuid))

        def select_one(*conditions: Any) -> dict[str, Any] | None:
            row = (
                conn.execute(sa.select(calls).where(*conditions).with_for_update().limit(1))
                .mappings()
                .first()
            )
            return dict(row) if row is not None else None

        def fetch(statement: Any, params: dict[str, Any]) -> dict[str, Any] | None:
            row = conn.execute(statement, params).mappings().first()
            return dict(row) if row is not None else None

        row = fetch(self._sql.call_by_uuid, {"b_call_uuid": call_uuid}) if call_uuid else None
        if row is not None and leg and row["leg_key"] is None:
            # A row for this call exists without its leg (its first callback lacked To/RequestUUID), and
            # record_fired made a placeholder for the leg: fold the placeholder into the call's row.
            placeholder = select_one(calls.c.leg_key == leg, calls.c.call_uuid.is_(None))
            if placeholder is not None:
                conn.execute(calls.delete().where(calls.c.id == placeholder["id"]))
                fired = {column: value for column, value in placeholder.items() if column != "id"}
                absorbed = _merge(row, fired, status=placeholder["status"], source=placeholder["source"])
                if absorbed:
                    absorbed["updated_at"] = now  # the trigger poller reads rows by updated_at
                row.update(absorbed)
                if absorbed:
                    conn.execute(self._sql.update_call, {"b_id": row["id"], **absorbed})
        if row is None and leg:
            candidate = fetch(self._sql.call_by_leg, {"b_leg_key": leg})
            if candidate is not None and candidate["call_uuid"] in (None, call_uuid):
                row = candidate
            elif candidate is not None:
                leg = None  # another call to the same destination within the same request
        if row is None and request_uuid and call_uuid:
            # A single-destination request whose To was spelt differently in record_fired.
            candidates = [
                dict(found)
                for found in conn.execute(
                    sa.select(calls).where(calls.c.request_uuid == request_uuid).with_for_update().limit(2)
                ).mappings()
            ]
            if len(candidates) == 1 and candidates[0]["call_uuid"] is None:
                row = candidates[0]

        if row is None:
            new_row = _new_call_row(values, leg=leg, insert_status=insert_status, source=source, now=now)
            result = conn.execute(self._sql.insert_call, new_row)
            if result.rowcount == 0:
                raise _Conflict("a call row appeared while its writer held the locks")
            return _record(new_row)

        values = {column: value for column, value in values.items() if column in calls.c}
        if leg and not row["leg_key"]:
            values["leg_key"] = leg
        changes = _merge(row, values, status=status, source=source, overwrite=overwrite)
        if changes:
            changes["updated_at"] = now
            conn.execute(self._sql.update_call, {"b_id": row["id"], **changes})
            row.update(changes)
        return _record(row)

    def _claim_nonce(self, conn: Connection, nonce: str, *, now: dt.datetime, window: float) -> bool:
        cutoff = now - dt.timedelta(seconds=window)
        fresh = (
            conn.execute(self._sql.claim_nonce, {"nonce": nonce, "seen_at": now, "cutoff": cutoff}).rowcount
            == 1
        )
        self._purge_nonces(conn, cutoff=cutoff, window=window)
        return fresh

    def _purge_nonces(self, conn: Connection, *, cutoff: dt.datetime, window: float) -> None:
        # Purge expired nonces now and then, not on every callback.
        if time.monotonic() - self._last_nonce_purge > max(30.0, window / 2):
            self._last_nonce_purge = time.monotonic()
            conn.execute(nonces.delete().where(nonces.c.seen_at < cutoff))

    def save_answer(
        self,
        correlation: CorrelationToken,
        spec: AnswerSpec,
        *,
        callback_base_url: str | None = None,
    ) -> None:
        """Store what the call placed under ``correlation`` says when answered (idempotent upsert).

        Keyed by the task instance and its try (``ti_key``, ``try_number``): a new try stores its own spec,
        saving again for the same try replaces it.

        :param correlation: The call's correlation token.
        :param spec: The message and keypad prompt.
        :param callback_base_url: The receiver root the call's callbacks go to (the Gather action uses it).
        """
        base = _text(callback_base_url)
        _check_lengths(
            [
                ("ti_key", answers.c.ti_key, correlation.ti_key),
                ("callback_base_url", answers.c.callback_base_url, base),
            ]
        )
        values = {"spec": spec.to_json(), "callback_base_url": base, "created_at": _now()}

        def work(conn: Connection) -> None:
            statement = self._insert(answers).values(
                ti_key=correlation.ti_key, try_number=correlation.try_number, **values
            )
            conn.execute(
                statement.on_conflict_do_update(index_elements=["ti_key", "try_number"], set_=values)
            )

        self._run(work, write=True)

    def load_answer_entry(self, correlation: CorrelationToken) -> AnswerEntry | None:
        """The stored answer of ``correlation``'s task instance and try, with its receiver root, or ``None``.

        :param correlation: The verified correlation token of the answer or gather request.
        """
        from vobiz_provider.models.answer import AnswerSpec

        statement = sa.select(answers.c.spec, answers.c.callback_base_url, answers.c.created_at).where(
            answers.c.ti_key == correlation.ti_key, answers.c.try_number == correlation.try_number
        )
        row = self._run(lambda conn: conn.execute(statement).mappings().first(), write=False)
        if row is None:
            return None
        spec = row["spec"]
        return AnswerEntry(
            spec=AnswerSpec.model_validate(json.loads(spec) if isinstance(spec, str) else spec),
            callback_base_url=row["callback_base_url"],
            created_at=row["created_at"],
        )

    def load_answer(self, correlation: CorrelationToken) -> AnswerSpec | None:
        """The stored answer spec of ``correlation``'s task instance and try, or ``None``.

        :param correlation: The verified correlation token of the answer or gather request.
        """
        entry = self.load_answer_entry(correlation)
        return entry.spec if entry is not None else None

    def claim_notification(self, key: str, *, window: dt.timedelta) -> bool:
        """Claim the right to place the notification ``key``; ``False`` if it was claimed within ``window``.

        Atomic on both backends (one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE claimed_at < cutoff``): of
        several callers racing for one key, exactly one gets ``True``.

        :param key: The dedupe key (any length; stored as its SHA-256).
        :param window: How long a claim blocks the same key.
        """
        if not isinstance(key, str) or not key:
            raise ValueError("claim_notification needs a non-empty key")
        if window.total_seconds() < 0:
            raise ValueError("claim_notification(window=...) must not be negative")
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()

        def work(conn: Connection) -> bool:
            now = _now()
            statement = self._insert(notifications).values(dedupe_key=digest, claimed_at=now)
            statement = statement.on_conflict_do_update(
                index_elements=["dedupe_key"],
                set_={"claimed_at": now},
                where=notifications.c.claimed_at <= now - window,
            )
            return conn.execute(statement).rowcount == 1

        return self._run(work, write=True)

    def release_notification(self, key: str) -> None:
        """Forget the claim on ``key`` (the call could not be placed, so a later attempt may phone).

        :param key: The dedupe key given to :meth:`claim_notification`.
        """
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        self._run(
            lambda conn: conn.execute(notifications.delete().where(notifications.c.dedupe_key == digest)),
            write=True,
        )

    def remember_nonce(self, nonce: str, *, window: float | None = None) -> bool:
        """Remember a signature nonce; ``False`` if it was already seen within ``window`` seconds.

        :meth:`record_callback` does the same inside its own transaction (pass ``nonce=``); use this only
        where no callback is stored.

        :param nonce: The ``X-Vobiz-Signature-V3-Nonce`` (or V2) value.
        :param window: Replay window in seconds (default: the store's ``nonce_window``).
        """
        window = self.nonce_window if window is None else window
        return self._run(lambda conn: self._claim_nonce(conn, nonce, now=_now(), window=window), write=True)

    # -- reads --------------------------------------------------------------------------------------

    def lookup(
        self, *, request_uuids: Sequence[str] = (), call_uuids: Sequence[str] = ()
    ) -> list[CallRecord]:
        """The calls with any of these request or call UUIDs, in ONE query (per 30,000 UUIDs).

        A bulk request UUID returns one record per destination. Unknown UUIDs are simply absent.

        :param request_uuids: Request UUIDs returned by Make-Call.
        :param call_uuids: Call UUIDs.
        """
        items = [("r", value) for value in dict.fromkeys(request_uuids) if value]
        items += [("c", value) for value in dict.fromkeys(call_uuids) if value]
        if not items:
            return []

        def work(conn: Connection) -> list[CallRecord]:
            rows: dict[int, RowMapping] = {}
            for chunk in _chunks(items):
                conditions = []
                requests = [value for tag, value in chunk if tag == "r"]
                call_ids = [value for tag, value in chunk if tag == "c"]
                if requests:
                    conditions.append(calls.c.request_uuid.in_(requests))
                if call_ids:
                    conditions.append(calls.c.call_uuid.in_(call_ids))
                statement = sa.select(calls).where(sa.or_(*conditions)).order_by(calls.c.id)
                for row in conn.execute(statement).mappings():
                    rows[row["id"]] = row
            return [_record(rows[key]) for key in sorted(rows)]

        return self._run(work, write=False)

    async def alookup(
        self, *, request_uuids: Sequence[str] = (), call_uuids: Sequence[str] = ()
    ) -> list[CallRecord]:
        """:meth:`lookup` in a worker thread, for asyncio callers (the trigger poller)."""
        return await asyncio.to_thread(self.lookup, request_uuids=request_uuids, call_uuids=call_uuids)

    def changed_calls(
        self,
        *,
        since: dt.datetime | None,
        request_uuids: Sequence[str] = (),
        call_uuids: Sequence[str] = (),
    ) -> list[CallChange]:
        """The calls updated at or after ``since``, and every call with one of these UUIDs, in ONE query.

        What the shared trigger poller asks each interval: the rows that changed since its last look (every
        write of a call row sets its indexed ``updated_at``), together with the rows of the waiters that
        subscribed since (whatever their age), so its cost grows with the number of changes, not with the
        number of waiting calls. ``updated_at`` is the writer's clock when its transaction began, not when
        it committed: ask again from some seconds before the newest ``updated_at`` seen (an overlap longer
        than a write transaction plus the clock skew between writers) and skip the rows whose
        :attr:`CallChange.version` is already known. Beyond 30,000 UUIDs the rest go in further queries.

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
            for index, chunk in enumerate(list(_chunks(items)) or [()]):
                conditions = []
                if index == 0 and since is not None:
                    conditions.append(calls.c.updated_at >= since)
                requests = [value for tag, value in chunk if tag == "r"]
                call_ids = [value for tag, value in chunk if tag == "c"]
                if requests:
                    conditions.append(calls.c.request_uuid.in_(requests))
                if call_ids:
                    conditions.append(calls.c.call_uuid.in_(call_ids))
                for row in conn.execute(sa.select(calls).where(sa.or_(*conditions))):
                    rows[row.id] = row
            return [CallChange(rows[key]) for key in sorted(rows)]

        return self._run(work, write=False)

    def lookup_by_ti_keys(self, ti_keys: Sequence[str]) -> list[CallRecord]:
        """The calls placed by these task instances (``CorrelationToken.ti_key``), in one query.

        :param ti_keys: ``dag_id/run_id/task_id/map_index`` keys.
        """
        keys = [key for key in dict.fromkeys(ti_keys) if key]
        if not keys:
            return []

        def work(conn: Connection) -> list[CallRecord]:
            found: list[CallRecord] = []
            for chunk in _chunks(keys):
                statement = (
                    sa.select(calls)
                    .where(calls.c.ti_key.in_(chunk))
                    .order_by(calls.c.try_number.desc(), calls.c.id.desc())
                )
                found.extend(_record(row) for row in conn.execute(statement).mappings())
            return found

        return self._run(work, write=False)

    def find_attempts(
        self, *, dag_id: str, run_id: str, task_id: str, map_index: int = -1, before_try: int | None = None
    ) -> list[CallRecord]:
        """The calls fired for this task instance by its tries, newest try first.

        :param dag_id: DAG id.
        :param run_id: Run id.
        :param task_id: Task id.
        :param map_index: Map index (``-1`` when not mapped).
        :param before_try: Only tries before this one (pass the current try number).
        """
        ti_key = CorrelationToken(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index).ti_key

        def work(conn: Connection) -> list[CallRecord]:
            statement = sa.select(calls).where(calls.c.ti_key == ti_key)
            if before_try is not None:
                statement = statement.where(calls.c.try_number < before_try)
            statement = statement.order_by(calls.c.try_number.desc(), calls.c.id.desc())
            return [_record(row) for row in conn.execute(statement).mappings()]

        return self._run(work, write=False)

    def last_callback_at(self) -> dt.datetime | None:
        """When the newest stored callback was received (health checks), or ``None``."""
        return self._run(
            lambda conn: conn.execute(sa.select(sa.func.max(events.c.received_at))).scalar(), write=False
        )

    # -- maintenance --------------------------------------------------------------------------------

    def prune(self, *, older_than: dt.timedelta) -> int:
        """Delete callbacks, ended calls, nonces, answers and notification claims older than ``older_than``.

        Returns the number of rows deleted.

        Calls still in progress are kept whatever their age: a waiting task may still need them.

        :param older_than: Age limit; keep it longer than any task waits for its call.
        """
        if older_than.total_seconds() < 0:
            raise ValueError("prune(older_than=...) must not be negative")

        def work(conn: Connection) -> int:
            cutoff = _now() - older_than
            deleted = conn.execute(events.delete().where(events.c.received_at < cutoff)).rowcount
            deleted += conn.execute(
                calls.delete().where(calls.c.terminal.is_(True), calls.c.updated_at < cutoff)
            ).rowcount
            deleted += conn.execute(nonces.delete().where(nonces.c.seen_at < cutoff)).rowcount
            deleted += conn.execute(answers.delete().where(answers.c.created_at < cutoff)).rowcount
            deleted += conn.execute(
                notifications.delete().where(notifications.c.claimed_at < cutoff)
            ).rowcount
            return deleted

        return self._run(work, write=True)


_STORES: dict[str, CallbackStore] = {}
_STORES_LOCK = threading.Lock()


def get_store(url: str | None = None) -> CallbackStore:
    """The process-wide store for ``url`` (default ``[vobiz] callback_store``): one engine per URL.

    :param url: SQLAlchemy URL of the store.
    """
    settings = None
    if url is None:
        from vobiz_provider.config import get_settings

        settings = get_settings()
        url = settings.callback_store
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            store = CallbackStore.from_settings(settings) if settings is not None else CallbackStore(url)
            _STORES[url] = store
        return store


def dispose_stores() -> None:
    """Dispose of every store made by :func:`get_store` and forget them (process shutdown, tests)."""
    with _STORES_LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.dispose()
