"""The ``<Dial>`` and ``<Record>`` callbacks reach the call record: the B leg's outcome and the recording's
URL, stored like the digits of a Gather (and the schema step that adds their columns)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from _ledger_helpers import store_callback, store_of_version

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import CallLedger, schema
from vobiz_provider.ledger.schema import SCHEMA_VERSION, STEPS, calls

TRY = CorrelationToken(dag_id="alerts", run_id="r1", task_id="page", conn_id="vobiz_default")
TO = "+14155550121"


def _form(call_uuid: str, **fields: str) -> dict[str, str]:
    return {"CallUUID": call_uuid, "RequestUUID": call_uuid, "To": TO, **fields}


def _record(store: CallLedger, call_uuid: str = "a-1"):  # type: ignore[no-untyped-def]
    [record] = store.lookup(call_uuids=[call_uuid])
    return record


def test_dial_events_and_action_fill_the_b_leg_outcome(store: CallLedger) -> None:
    store_callback(store, "answer", _form("a-1", Event="StartApp"), correlation=TRY)
    hangup_event = _form(
        "a-1",
        Event="DialHangup",
        DialAction="hangup",
        DialBLegUUID="b-1",
        DialBLegHangupCauseName="Normal Hangup",
    )
    store_callback(store, "dial", hangup_event, correlation=TRY)
    record = _record(store)
    assert (record.status, record.dial_b_leg_uuid, record.dial_hangup_cause) == (
        "in-progress",
        "b-1",
        "Normal Hangup",
    )
    assert record.dial_status is None
    action = _form("a-1", DialStatus="completed", DialBLegUUID="b-1", DialHangupCause="NORMAL_CLEARING")
    store_callback(store, "dial", action, correlation=TRY)
    record = _record(store)
    assert (record.dial_status, record.dial_hangup_cause) == ("completed", "NORMAL_CLEARING")
    assert record.to_event()["dial_status"] == "completed"


def test_a_second_dial_replaces_the_first_outcome_while_the_call_is_up(store: CallLedger) -> None:
    store_callback(store, "answer", _form("a-1", Event="StartApp"), correlation=TRY)
    store_callback(
        store, "dial", _form("a-1", DialStatus="busy", DialHangupCause="USER_BUSY"), correlation=TRY
    )
    store_callback(store, "dial", _form("a-1", DialStatus="completed", DialBLegUUID="b-2"), correlation=TRY)
    record = _record(store)
    assert (record.dial_status, record.dial_b_leg_uuid) == ("completed", "b-2")


def test_record_stop_stores_the_recording_url_even_after_the_hangup(store: CallLedger) -> None:
    store_callback(store, "hangup", _form("a-1", Event="Hangup", CallStatus="completed"), correlation=TRY)
    stop = _form("a-1", Event="RecordStop", RecordingID="rec-1", RecordUrl="https://media.example/rec-1.mp3")
    store_callback(store, "record", stop, correlation=TRY)
    record = _record(store)
    assert (record.status, record.terminal) == ("completed", True)
    assert record.recording_url == "https://media.example/rec-1.mp3"


def test_other_routes_never_write_the_dial_and_recording_columns(store: CallLedger) -> None:
    forged = _form("a-1", Event="StartApp", DialStatus="completed", RecordUrl="https://evil.example/x")
    store_callback(store, "answer", forged, correlation=TRY)
    record = _record(store)
    assert (record.dial_status, record.recording_url) == (None, None)


def test_upgrade_adds_the_columns_and_keeps_the_calls(store_url: str) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    # A store of the release before: every step before the one that adds the Dial and Record columns.
    engine = store_of_version(store_url, STEPS.index(schema._step_7))
    with engine.begin() as conn:
        old_columns = {c["name"] for c in sa.inspect(conn).get_columns(calls.name)}
        assert "recording_url" not in old_columns
        conn.execute(
            sa.text(
                f"INSERT INTO {calls.name} (call_uuid, status, rank, terminal, updated_at, source) "
                "VALUES ('kept', 'completed', 9, 1, :t, 'callback')"
            ),
            {"t": now.replace(tzinfo=None)},
        )
    engine.dispose()

    store = CallLedger(store_url)
    try:
        assert store.upgrade() == SCHEMA_VERSION
        assert store.upgrade() == SCHEMA_VERSION  # idempotent
        [kept] = store.lookup(call_uuids=["kept"])
        assert (kept.status, kept.recording_url, kept.dial_status) == ("completed", None, None)
        with store.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(calls.name)}
        assert {"dial_status", "dial_b_leg_uuid", "dial_hangup_cause", "recording_url"} <= columns
    finally:
        store.dispose()
