"""Lenient ingest, strict authentication (issue 9, part 1), over real HTTP.

Once a callback is authentic (its token valid) and bound (it names a call its URL's try placed), it is
stored whatever its values: the raw form is kept in the event row (control characters escaped), a value
that does not parse leaves its typed column empty and is logged once, and the call's status still moves.
Only requests that fail authentication or binding, or that are not callbacks at all, get a 4xx.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from test_app import (
    AUTH_TOKEN,
    Receiver,
    answer_fields,
    call_row,
    event_count,
    fire,
    hangup_fields,
    new_uuid,
    nothing_stored,
    running_receiver,
    ti,
)

from vobiz_provider.ledger.schema import calls, events
from vobiz_provider.models.record import CallRecord
from vobiz_provider.signatures import signature_headers
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

# The receiver's connection is in Asia/Kolkata (UTC+05:30): a naive local time is read in it.
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def stored_forms(receiver: Receiver, call_uuid: str) -> list[dict[str, str]]:
    """The forms kept in the event rows of ``call_uuid``, oldest first."""
    query = sa.select(events.c.fields).where(events.c.call_uuid == call_uuid).order_by(events.c.id)
    with receiver.store.engine.connect() as conn:
        return [dict(fields) for fields in conn.execute(query).scalars()]


def call_columns(receiver: Receiver, call_uuid: str) -> Mapping[str, Any]:
    """The ``vobiz_calls`` row of ``call_uuid``, every column."""
    with receiver.store.engine.connect() as conn:
        return conn.execute(sa.select(calls).where(calls.c.call_uuid == call_uuid)).mappings().one()


def utc(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- the first bug: SessionStart with a zone suffix --------------------------------------------------


def test_a_hangup_whose_session_start_has_a_zone_suffix_is_stored(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The Make-a-call page prints ``SessionStart`` as ``2026-12-02 21:22:36.000000 UTC``: was 422, and is
    read (not merely tolerated: no field is left empty)."""
    call_uuid = new_uuid()
    fields = hangup_fields(call_uuid, SessionStart="2026-12-02 21:22:36.000000 UTC")
    with caplog.at_level(logging.WARNING, logger="vobiz_provider"):
        response = receiver.post("hangup", fields)
    assert response.status_code == 200, response.text
    assert "could not be read" not in caplog.text
    assert call_row(receiver, call_uuid).status == "completed"
    assert stored_forms(receiver, call_uuid)[0]["SessionStart"] == "2026-12-02 21:22:36.000000 UTC"


# Each spelling of a time Vobiz's pages show, and what EndTime then is (the connection is in Asia/Kolkata).
TIME_FORMATS = [
    pytest.param("2026-12-02 21:22:36", "2026-12-02T15:52:36Z", id="local"),
    pytest.param("2026-12-02 21:22:36.000000", "2026-12-02T15:52:36Z", id="local-fraction"),
    pytest.param("2026-12-02 21:22:36 UTC", "2026-12-02T21:22:36Z", id="utc-suffix"),
    pytest.param("2026-12-02 21:22:36.000000 UTC", "2026-12-02T21:22:36Z", id="fraction-utc-suffix"),
    pytest.param("2026-12-02T21:22:36Z", "2026-12-02T21:22:36Z", id="iso-z"),
    pytest.param("2026-12-02T21:22:36+05:30", "2026-12-02T15:52:36Z", id="iso-offset"),
    pytest.param("2026-12-02T21:22:36.123456+00:00", "2026-12-02T21:22:36.123456Z", id="iso-fraction-offset"),
    pytest.param("", None, id="blank"),
    pytest.param("null", None, id="null"),
    pytest.param("None", None, id="None"),
]


@pytest.mark.parametrize(("spelt", "end_time"), TIME_FORMATS)
def test_every_time_format_is_read(receiver: Receiver, spelt: str, end_time: str | None) -> None:
    call_uuid = new_uuid()
    fields = hangup_fields(call_uuid, EndTime=spelt, SessionStart=spelt)
    response = receiver.post("hangup", fields)
    assert response.status_code == 200, response.text
    record = call_row(receiver, call_uuid)
    assert record.status == "completed"
    assert utc(record.end_time) == utc(end_time)


# -- the second bug: a machine detection or gather whose RequestUUID is "null" ----------------------


@pytest.mark.parametrize("kind", ["machine-detection", "gather"])
@pytest.mark.parametrize("request_uuid", ["null", "", "None"])
def test_a_callback_whose_request_uuid_is_null_binds_by_its_call_uuid(
    receiver: Receiver, kind: str, request_uuid: str
) -> None:
    """Was 403 (``null`` read as a RequestUUID the try never placed); before binding, a UNIQUE leg_key
    failure and 503 on every retry."""
    call_uuid = new_uuid()
    assert receiver.post("answer", answer_fields(call_uuid)).status_code == 200
    fields = {**answer_fields(call_uuid), "RequestUUID": request_uuid, "ALegRequestUUID": request_uuid}
    if kind == "machine-detection":
        fields.update(Event="MachineDetection", Machine="true")
    else:
        fields.update(Event="Gather", Digits="1", InputType="dtmf")
    response = receiver.post(kind, fields, bind=False)
    assert response.status_code == 200, response.text
    assert event_count(receiver, call_uuid) == 2
    row = call_columns(receiver, call_uuid)
    assert row["request_uuid"] == f"req-{call_uuid}"  # not overwritten, nor a second row made
    assert row["leg_key"] == f"req-{call_uuid}|919876543210"
    if kind == "machine-detection":
        assert row["machine"] is True
    else:
        assert row["digits"] == "1"


def test_a_null_request_uuid_does_not_take_another_tasks_call(receiver: Receiver) -> None:
    """Binding stays: with no RequestUUID, the CallUUID must be a call this try already stored."""
    call_uuid = new_uuid()
    fields = {**answer_fields(call_uuid), "RequestUUID": "null", "Event": "MachineDetection"}
    response = receiver.post("machine-detection", fields, bind=False)
    assert response.status_code == 403, response.text
    assert nothing_stored(receiver, call_uuid)


# -- values that do not parse: stored, typed column empty, logged once, status applied ----------------------


@pytest.mark.parametrize(
    ("overrides", "column"),
    [
        pytest.param({"EndTime": "2026-11-27 06:30:17\x00"}, "end_time_utc", id="nul-in-end-time"),
        pytest.param({"EndTime": "yesterday at noon"}, "end_time_utc", id="unknown-time-format"),
        pytest.param({"SessionStart": "2026-13-45 99:00:00"}, None, id="impossible-session-start"),
        pytest.param({"Duration": "1" * 400 + ".0"}, "duration", id="400-digit-duration"),
        pytest.param({"BillDuration": "9" * 400}, "bill_duration", id="400-digit-int"),
        pytest.param({"BillRate": "1e999999999"}, None, id="huge-decimal"),
        pytest.param({"TotalCost": "NaN"}, None, id="nan-decimal"),
        pytest.param({"Duration": "ten"}, "duration", id="word-for-a-number"),
        pytest.param({"HangupCauseCode": "Normal Hangup"}, "hangup_cause_code", id="name-for-a-code"),
    ],
)
def test_an_authentic_callback_with_a_value_that_does_not_parse_is_stored(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, overrides: dict[str, str], column: str | None
) -> None:
    """Was 400 (control character) or 422 (validation): the hangup was lost after Vobiz's retries."""
    call_uuid = new_uuid()
    with caplog.at_level(logging.WARNING, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(call_uuid, **overrides))
    assert response.status_code == 200, response.text
    assert event_count(receiver, call_uuid) == 1
    row = call_columns(receiver, call_uuid)
    assert row["status"] == "completed"
    assert row["terminal"]
    if column is not None:
        assert row[column] is None
    (name,) = overrides
    unread = [message for record in caplog.records if "could not be read" in (message := record.getMessage())]
    warnings = [message for message in unread if name in message]
    assert len(warnings) == 1, caplog.text
    assert "\x00" not in caplog.text
    assert "1" * 201 not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "stored"),
    [
        pytest.param({"HangupCauseName": "Normal\x00Hangup"}, "Normal\\x00Hangup", id="nul-in-cause"),
        pytest.param({"HangupSource": "Callee\x1b[31m"}, "Callee\\x1b[31m", id="escape-sequence"),
        pytest.param({"HangupCause": "USER_BUSY\r"}, "USER_BUSY\\r", id="cr-in-cause"),
        pytest.param({"X-PH-Note": "a\x00b"}, "a\\x00b", id="nul-in-unknown-field"),
    ],
)
def test_control_characters_are_escaped_in_what_is_stored(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, overrides: dict[str, str], stored: str
) -> None:
    call_uuid = new_uuid()
    with caplog.at_level(logging.WARNING, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(call_uuid, **overrides))
    assert response.status_code == 200, response.text
    ((name, _),) = overrides.items()
    assert stored_forms(receiver, call_uuid)[0][name] == stored
    assert call_row(receiver, call_uuid).status == "completed"
    assert "\x00" not in caplog.text
    assert "\x1b" not in caplog.text


def test_a_control_character_in_a_field_name_is_escaped(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid, **{"X-PH-\x00": "b"}))
    assert response.status_code == 200, response.text
    assert stored_forms(receiver, call_uuid)[0]["X-PH-\\x00"] == "b"


def test_unknown_fields_are_kept(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid, NewVobizField="42", **{"X-PH-Team": "ops"}))
    assert response.status_code == 200, response.text
    form = stored_forms(receiver, call_uuid)[0]
    assert (form["NewVobizField"], form["X-PH-Team"]) == ("42", "ops")


def test_blank_values_are_stored_as_empty(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    blanks = {"AnswerTime": "", "Duration": "", "BillRate": "", "HangupCauseCode": "", "StartTime": "null"}
    response = receiver.post("hangup", hangup_fields(call_uuid, **blanks))
    assert response.status_code == 200, response.text
    row = call_columns(receiver, call_uuid)
    assert (row["answer_time_utc"], row["duration"], row["hangup_cause_code"]) == (None, None, None)
    assert row["start_time_utc"] is None
    assert row["status"] == "completed"


def test_a_value_too_long_for_its_column_is_left_empty_and_the_callback_stored(receiver: Receiver) -> None:
    """Was 422: a value the column cannot hold is kept in the event row, its column left empty."""
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid, HangupCause="X" * 500))
    assert response.status_code == 200, response.text
    row = call_columns(receiver, call_uuid)
    assert row["hangup_cause"] is None
    assert row["status"] == "completed"
    assert stored_forms(receiver, call_uuid)[0]["HangupCause"] == "X" * 500


# -- still refused: not authentic, not bound, not a callback -------------------------------------------------


def test_an_odd_value_does_not_let_an_unbound_callback_in(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid, Duration="ten"), bind=False)
    assert response.status_code == 403, response.text
    assert nothing_stored(receiver, call_uuid)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"Event=Hangup&CallStatus=completed", id="no-uuid"),
        pytest.param(b"CallUUID=null&RequestUUID=&Event=Hangup", id="null-uuids"),
    ],
)
def test_a_form_naming_no_call_is_not_a_callback(receiver: Receiver, body: bytes) -> None:
    url = receiver.url("hangup")
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signature_headers(url, AUTH_TOKEN)}
    response = receiver.client.post(url, content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert "CallUUID" in response.json()["detail"]


# -- the leg_key collision, as Vobiz would meet it: 503 on every retry ---------------------------------------


def test_a_callback_of_a_call_known_without_its_leg_does_not_take_another_calls_leg(
    receiver: Receiver,
) -> None:
    """Call B is known from the API (reconciliation) without its request; call A holds the request's leg.

    B's hangup then named the same request and destination: storing it set B's leg_key to A's, failed with
    ``IntegrityError: UNIQUE constraint failed: vobiz_calls.leg_key`` and was answered 503 on every retry.
    """
    call_a, call_b = new_uuid(), new_uuid()
    assert receiver.post("answer", answer_fields(call_a)).status_code == 200
    correlation = ti()
    receiver.store.cache_api_result(
        CallRecord(
            call_uuid=call_b,
            status="in-progress",
            dag_id=correlation.dag_id,
            run_id=correlation.run_id,
            task_id=correlation.task_id,
            map_index=correlation.map_index,
            try_number=correlation.try_number,
            conn_id=correlation.conn_id,
        )
    )
    fields = hangup_fields(call_b, RequestUUID=f"req-{call_a}", ALegRequestUUID=f"req-{call_a}")
    response = receiver.post("hangup", fields, bind=False)
    assert response.status_code == 200, response.text
    assert call_columns(receiver, call_b)["leg_key"] is None
    assert call_columns(receiver, call_a)["leg_key"] == f"req-{call_a}|919876543210"
    assert call_row(receiver, call_b).status == "completed"


# -- the emulator's variant: SessionStart as the Make-a-call page prints it ---------------------------------


def test_emulated_callbacks_with_a_zoned_session_start_end_in_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vobiz_emulator_factory: Any
) -> None:
    emulator = vobiz_emulator_factory(session_start_format="utc-suffix")
    destination = "919876543210"
    emulator.script(destination, CallScript.answered(after=0.05, talk_for=0.05))
    with running_receiver(monkeypatch, f"sqlite:///{tmp_path / 'cb.db'}") as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", emulator.connection_json(timezone="Asia/Kolkata"))
        monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "True")
        request = {
            "from": "911171366900",
            "to": destination,
            "answer_url": receiver.url("answer"),
            "ring_url": receiver.url("ring"),
            "hangup_url": receiver.url("hangup"),
        }
        [request_uuid] = fire(receiver, ti(), request)
        [hangup] = emulator.wait_for_callbacks("hangup", timeout=20)
        [row] = receiver.store.lookup(request_uuids=[request_uuid])
    assert hangup.fields["SessionStart"].endswith(" UTC")
    assert [(record.kind, record.status) for record in emulator.callbacks] == [
        (record.kind, 200) for record in emulator.callbacks
    ]
    assert (row.call_uuid, row.status) == (hangup.call_uuid, "completed")
