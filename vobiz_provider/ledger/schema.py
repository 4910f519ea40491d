"""Tables of the callback store, and the linear steps that create and upgrade them.

Why not Alembic: the store is a handful of tables owned by this provider alone, usually a SQLite file next
to ``AIRFLOW_HOME``, and upgraded lazily by whichever process touches it first (receiver, trigger,
operator). A version number in ``vobiz_schema_version`` and a list of plain upgrade functions, run in one
transaction under a lock, give the same guarantees without a migration environment to ship and configure.

Rules for future changes: never edit a step that has shipped; append a new function to :data:`STEPS` (its
index + 1 is the version it produces) and keep the table definitions below equal to the result of all
steps, because step 1 creates them as defined here *at the time it ran*. When a table changes, step 1
must keep creating the old shape (copy the old definition into it) and the new step alters it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection, Dialect

__all__ = [
    "CALL_VIEW_INDEXES",
    "FIRED_OF_TRY_INDEX",
    "SCHEMA_VERSION",
    "STEPS",
    "UTCDateTime",
    "answers",
    "calls",
    "events",
    "events_of_try",
    "inbound_cursors",
    "inbound_events",
    "metadata",
    "nonces",
    "notifications",
    "placements",
    "rate_slots",
    "schema_version",
]


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC (which
    also keeps its text comparison in ``WHERE received_at < ?`` correct) and made aware again when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData()

schema_version = sa.Table(
    "vobiz_schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("upgraded_at", UTCDateTime, nullable=False),
)

#: Every callback received, once (Vobiz retries are dropped by the unique ``dedupe_key``).
events = sa.Table(
    "vobiz_callback_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime, nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("event", sa.String(64)),
    sa.Column("call_uuid", sa.String(64), index=True),
    sa.Column("request_uuid", sa.String(64), index=True),
    sa.Column("call_status", sa.String(32)),
    sa.Column("ti_key", sa.String(1024)),
    sa.Column("try_number", sa.Integer),
    sa.Column("dedupe_key", sa.String(64), nullable=False, unique=True),
    sa.Column("nonce", sa.String(128)),
    sa.Column("fields", _JSON, nullable=False),
)
#: The callbacks a try's URLs stored, counted against its budget (schema 3).
events_of_try = sa.Index("ix_vobiz_callback_events_try", events.c.ti_key, events.c.try_number)

#: One row per call (per destination of a Make-Call request): the merged, monotonic state.
calls = sa.Table(
    "vobiz_calls",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("call_uuid", sa.String(64), unique=True),
    sa.Column("request_uuid", sa.String(64), index=True),
    # "<request_uuid>|<normalised destination>": finds the row register_fired_calls() made before the
    # CallUUID was known. Unique, so a callback and register_fired_calls() cannot both create a row for the
    # same leg.
    sa.Column("leg_key", sa.String(1024), unique=True),
    sa.Column("destination", sa.String(512)),
    sa.Column("from_number", sa.String(128)),
    sa.Column("ti_key", sa.String(1024), index=True),
    sa.Column("dag_id", sa.String(250)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("task_id", sa.String(250)),
    sa.Column("map_index", sa.Integer),
    sa.Column("try_number", sa.Integer),
    sa.Column("conn_id", sa.String(250)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("terminal", sa.Boolean, nullable=False),
    sa.Column("hangup_cause", sa.String(128)),
    sa.Column("hangup_cause_code", sa.Integer),
    sa.Column("hangup_cause_name", sa.String(128)),
    sa.Column("hangup_source", sa.String(64)),
    sa.Column("duration", sa.Integer),
    sa.Column("bill_duration", sa.Integer),
    sa.Column("start_time", sa.String(64)),
    sa.Column("start_time_utc", UTCDateTime),
    sa.Column("answer_time", sa.String(64)),
    sa.Column("answer_time_utc", UTCDateTime),
    sa.Column("end_time", sa.String(64)),
    sa.Column("end_time_utc", UTCDateTime),
    sa.Column("machine", sa.Boolean),
    sa.Column("digits", sa.String(256)),
    # What the <Dial> and <Record> callbacks said (schema 7).
    sa.Column("dial_status", sa.String(32)),
    sa.Column("dial_b_leg_uuid", sa.String(64)),
    sa.Column("dial_hangup_cause", sa.String(128)),
    sa.Column("recording_url", sa.String(2048)),
    sa.Column("fired_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),
)

#: What Vobiz's valid signatures signed, hashed (``SignatureCheck.replay_keys``: URL + nonce), for
#: ``[vobiz] nonce_window``: a second use is a replay. The column is still called ``nonce`` (schema 1).
nonces = sa.Table(
    "vobiz_nonces",
    metadata,
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("seen_at", UTCDateTime, nullable=False, index=True),
)


#: What the receiver answers when Vobiz fetches a call's answer URL: the spoken message and keypad prompt
#: (``AnswerSpec`` as JSON) of one try of one task instance, so that no XML has to be hosted by the user and
#: the message never travels in the URL.
answers = sa.Table(
    "vobiz_answers",
    metadata,
    sa.Column("ti_key", sa.String(1024), primary_key=True),
    sa.Column("try_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("spec", _JSON, nullable=False),
    # The receiver root the call's callbacks were pointed at: the Gather action goes to the same receiver.
    sa.Column("callback_base_url", sa.String(1024)),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
)

#: One row per try that placed (or is placing) a call with receiver URLs: what binds a callback URL to the
#: calls of its try. Opened before dialling; ``registered_at`` is set when the try records the calls Vobiz
#: accepted.
placements = sa.Table(
    "vobiz_placements",
    metadata,
    sa.Column("ti_key", sa.String(1024), primary_key=True),
    sa.Column("try_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("registered_at", UTCDateTime),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    sa.Column("destinations", sa.Integer, nullable=False),
    # When a try of the task reported the outcome of this try's calls (schema 4): a retry that finds the
    # calls ended but unsettled knows the try that placed them died before saying how they ended.
    sa.Column("settled_at", UTCDateTime),
)

#: Notifications recently placed, by the SHA-256 of their dedupe key: a callback that Airflow fires twice
#: phones once within the dedupe window.
notifications = sa.Table(
    "vobiz_notifications",
    metadata,
    sa.Column("dedupe_key", sa.String(64), primary_key=True),
    sa.Column("claimed_at", UTCDateTime, nullable=False, index=True),
)

#: Each account's next free ``POST /Call/`` slot, in seconds since the epoch on the database's clock
#: (:mod:`vobiz_provider.ledger.rate_bucket`). One row per account; nothing to prune.
rate_slots = sa.Table(
    "vobiz_rate_slots",
    metadata,
    sa.Column("bucket", sa.String(64), primary_key=True),
    sa.Column("next_slot", sa.Float(precision=53), nullable=False),
)


#: Calls *to* an inbound application (``/inbound/{application}``): one row per call, per key press and per
#: hangup (issue 12). ``id`` orders them for the event trigger's cursor; ``dedupe_key`` drops Vobiz's retries.
inbound_events = sa.Table(
    "vobiz_inbound_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime, nullable=False, index=True),
    sa.Column("application", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("call_uuid", sa.String(64), nullable=False),
    sa.Column("from_number", sa.String(128)),
    sa.Column("to_number", sa.String(128)),
    sa.Column("digits", sa.String(256)),
    sa.Column("call_status", sa.String(32)),
    sa.Column("hangup_cause_code", sa.Integer),
    sa.Column("hangup_cause_name", sa.String(128)),
    sa.Column("duration", sa.Integer),
    sa.Column("dedupe_key", sa.String(64), nullable=False, unique=True),
    sa.Column("fields", _JSON, nullable=False),
)

#: How far each inbound-event stream has been delivered as Airflow asset events (the event trigger's
#: cursor, advanced only once Airflow confirmed it stored the events: it survives triggerer restarts).
inbound_cursors = sa.Table(
    "vobiz_inbound_cursors",
    metadata,
    sa.Column("stream", sa.String(128), primary_key=True),
    sa.Column("last_id", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

#: The call columns added after step 1 (which keeps creating the table without them).
_DIAL_RECORD_COLUMNS = ("dial_status", "dial_b_leg_uuid", "dial_hangup_cause", "recording_url")


def _step_1(conn: Connection) -> None:
    """Version 1: the callback events, the calls and the nonces."""
    metadata.create_all(conn, tables=[events, nonces], checkfirst=True)
    if not sa.inspect(conn).has_table(calls.name):
        # Step 1 keeps creating the calls table of its time: without the columns of later steps.
        old = sa.MetaData()
        columns = [c._copy() for c in calls.columns if c.name not in _DIAL_RECORD_COLUMNS]
        sa.Table(calls.name, old, *columns).create(conn)
    events_of_try.drop(conn, checkfirst=True)  # schema 3 adds it: step 1 keeps creating the old shape


def _step_2(conn: Connection) -> None:
    """Version 2: the answers served for spoken messages, and the notification dedupe claims."""
    metadata.create_all(conn, tables=[answers, notifications], checkfirst=True)


def _step_3(conn: Connection) -> None:
    """Version 3: the placements that bind callbacks to the calls of their try; events by try (budget)."""
    metadata.create_all(conn, tables=[placements], checkfirst=True)
    events_of_try.create(conn, checkfirst=True)


def _step_4(conn: Connection) -> None:
    """Version 4: when each placement's outcome was reported (``settled_at``)."""
    columns = {column["name"] for column in sa.inspect(conn).get_columns(placements.name)}
    if "settled_at" not in columns:
        column_type = sa.DateTime(timezone=True).compile(dialect=conn.dialect)  # UTCDateTime's column
        conn.execute(sa.text(f"ALTER TABLE {placements.name} ADD COLUMN settled_at {column_type}"))


#: The indexes the calls page and ``vobiz-callbacks calls list`` walk, newest first, per filter (schema 5:
#: ``vobiz_provider.ledger.call_views``). Plain DDL rather than ``sa.Index`` on the table, so that step 1
#: keeps creating the old shape.
CALL_VIEW_INDEXES: tuple[tuple[str, str], ...] = (
    ("ix_vobiz_calls_view_dag", "dag_id, id"),
    ("ix_vobiz_calls_view_run", "run_id, id"),
    ("ix_vobiz_calls_view_status", "status, id"),
)


def _create_calls_index(conn: Connection, name: str, columns: str) -> None:
    conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON {calls.name} ({columns})"))


def _step_5(conn: Connection) -> None:
    """Version 5: the calls by DAG, run and status, newest first (the calls page's filtered pages)."""
    for name, columns in CALL_VIEW_INDEXES:
        _create_calls_index(conn, name, columns)


def _step_6(conn: Connection) -> None:
    """Version 6: the inbound calls, key presses and hangups, and the event trigger's cursors (issue 12)."""
    metadata.create_all(conn, tables=[inbound_events, inbound_cursors], checkfirst=True)


def _step_7(conn: Connection) -> None:
    """Version 7: what the ``<Dial>`` and ``<Record>`` callbacks report on the call (B leg, recording)."""
    present = {column["name"] for column in sa.inspect(conn).get_columns(calls.name)}
    for name in _DIAL_RECORD_COLUMNS:
        if name not in present:
            column_type = calls.c[name].type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {calls.name} ADD COLUMN {name} {column_type}"))


def _step_8(conn: Connection) -> None:
    """Version 8: the accounts' shared CPS budgets (``vobiz_rate_slots``)."""
    rate_slots.create(conn, checkfirst=True)


#: The fired calls of a try (schema 9): the receiver counts them for every try whose callbacks it stores
#: (:func:`~vobiz_provider.ledger.binding.load_tries`), and reading them from this index alone, rather than
#: each call's row found through ``ti_key``, keeps that count cheap when a try dials many destinations.
FIRED_OF_TRY_INDEX: tuple[str, str] = ("ix_vobiz_calls_fired_of_try", "ti_key, try_number, fired_at")


def _step_9(conn: Connection) -> None:
    """Version 9: the fired calls of a try, counted from an index alone (:data:`FIRED_OF_TRY_INDEX`)."""
    _create_calls_index(conn, *FIRED_OF_TRY_INDEX)


#: The upgrade steps, in order; step ``i`` (0-based) brings the schema to version ``i + 1``.
STEPS: tuple[Callable[[Connection], None], ...] = (
    _step_1,
    _step_2,
    _step_3,
    _step_4,
    _step_5,
    _step_6,
    _step_7,
    _step_8,
    _step_9,
)

#: The version this code expects.
SCHEMA_VERSION = len(STEPS)
