"""Callback models: parsing Vobiz's form fields, local times, unknown fields, and the to_form round trip."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pendulum
import pytest

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models.callbacks import (
    AnswerCallback,
    DialActionCallback,
    DialCallback,
    GatherCallback,
    HangupCallback,
    MachineDetectionCallback,
    RecordActionCallback,
    RecordCallback,
    RingCallback,
    VobizCallback,
    parse_callback,
    read_callback,
)

# The full Plivo hangup body (vobiz-api.md §2.4), with Vobiz's lowercase ``stir_verification`` and two
# fields no model declares.
HANGUP_FORM = {
    "ALegRequestUUID": "3c5b7f0e-7a65-11ef-9d3e-0242ac110002",
    "ALegUUID": "3c5b7f0e-7a65-11ef-9d3e-0242ac110002",
    "AnswerTime": "2026-11-27 10:00:05",
    "BillDuration": "120",
    "BillRate": "0.005",
    "CallStatus": "completed",
    "CallUUID": "3c5b7f0e-7a65-11ef-9d3e-0242ac110002",
    "Direction": "outbound",
    "Duration": "66",
    "EndTime": "2026-11-27 10:01:11",
    "Event": "Hangup",
    "From": "14155551234",
    "HangupCause": "NORMAL_CLEARING",
    "HangupCauseCode": "4000",
    "HangupCauseName": "Normal Hangup",
    "HangupSource": "Callee",
    "ParentAuthID": "MA_PARENT0001",
    "RequestUUID": "3c5b7f0e-7a65-11ef-9d3e-0242ac110002",
    "STIRAttestation": "Not Applicable",
    "STIRVerification": "Not Applicable",
    "SessionStart": "2026-11-27 04:29:58.123456",
    "StartTime": "2026-11-27 09:59:58",
    "To": "919876543210",
    "TotalCost": "0.01000",
    "stir_verification": "Not Applicable",
    "timestamp": "2026-11-27T04:31:11Z",
    "X-VH-Campaign": "spring",
}


def test_hangup_body_is_parsed_with_local_times_in_the_account_timezone() -> None:
    callback = parse_callback(HANGUP_FORM, timezone="Asia/Kolkata")
    assert isinstance(callback, HangupCallback)
    # 10:00:05 in Kolkata (UTC+05:30) is 04:30:05 UTC
    assert callback.answer_time == pendulum.datetime(2026, 11, 27, 4, 30, 5, tz="UTC")
    assert callback.start_time == pendulum.datetime(2026, 11, 27, 4, 29, 58, tz="UTC")
    assert callback.end_time == pendulum.datetime(2026, 11, 27, 4, 31, 11, tz="UTC")
    assert callback.answer_time is not None and callback.answer_time.utcoffset() == dt.timedelta(0)
    assert callback.session_start == pendulum.datetime(2026, 11, 27, 4, 29, 58, 123456, tz="UTC")
    assert callback.answered
    assert (callback.duration, callback.bill_duration) == (66, 120)
    assert callback.bill_rate == Decimal("0.005")
    assert callback.total_cost == Decimal("0.01000")
    assert (callback.hangup_cause, callback.hangup_cause_code, callback.hangup_cause_name) == (
        "NORMAL_CLEARING",
        4000,
        "Normal Hangup",
    )
    assert callback.hangup_source == "Callee"
    assert callback.parent_auth_id == "MA_PARENT0001"
    assert callback.stir_verification == callback.stir_verification_lowercase == "Not Applicable"
    assert (callback.call_uuid, callback.from_number, callback.to) == (
        "3c5b7f0e-7a65-11ef-9d3e-0242ac110002",
        "14155551234",
        "919876543210",
    )


def test_the_same_local_time_means_a_different_instant_in_utc() -> None:
    in_utc = parse_callback(HANGUP_FORM)
    in_kolkata = parse_callback(HANGUP_FORM, timezone="Asia/Kolkata")
    assert isinstance(in_utc, HangupCallback) and isinstance(in_kolkata, HangupCallback)
    assert in_utc.answer_time == pendulum.datetime(2026, 11, 27, 10, 0, 5, tz="UTC")
    assert in_utc.answer_time - in_kolkata.answer_time == dt.timedelta(hours=5, minutes=30)


def test_unknown_fields_are_kept() -> None:
    callback = parse_callback(HANGUP_FORM, timezone="Asia/Kolkata")
    assert callback.model_extra == {"timestamp": "2026-11-27T04:31:11Z", "X-VH-Campaign": "spring"}


def test_to_form_round_trip_is_exact() -> None:
    callback = parse_callback(HANGUP_FORM, timezone="Asia/Kolkata")
    assert callback.to_form(timezone="Asia/Kolkata") == HANGUP_FORM


def test_to_form_renders_local_times_in_the_requested_timezone() -> None:
    callback = parse_callback(HANGUP_FORM, timezone="Asia/Kolkata")
    form = callback.to_form(timezone="UTC")
    assert form["AnswerTime"] == "2026-11-27 04:30:05"
    assert form["SessionStart"] == HANGUP_FORM["SessionStart"]  # always UTC


@pytest.mark.parametrize("blank", ["", "0"])
def test_unanswered_call_has_no_answer_time_and_round_trips(blank: str) -> None:
    form = {
        **HANGUP_FORM,
        "AnswerTime": blank,
        "CallStatus": "no-answer",
        "BillDuration": "0",
        "Duration": "0",
        "HangupCause": "NO_ANSWER",
        "HangupCauseCode": "3000",
        "HangupCauseName": "No Answer",
    }
    callback = parse_callback(form, timezone="Asia/Kolkata")
    assert isinstance(callback, HangupCallback)
    assert callback.answer_time is None
    assert not callback.answered
    assert callback.call_status == "no-answer"
    assert callback.to_form(timezone="Asia/Kolkata") == form


def test_dispatch_on_event() -> None:
    base = {"CallUUID": "c", "From": "14155551234", "To": "14155555678"}
    assert isinstance(parse_callback({**base, "Event": "Ring", "CallStatus": "ringing"}), RingCallback)
    assert isinstance(parse_callback({**base, "Event": "StartApp"}), AnswerCallback)
    assert isinstance(parse_callback({**base, "Event": "Hangup"}), HangupCallback)
    assert isinstance(parse_callback({**base, "Event": "MachineDetection"}), MachineDetectionCallback)
    assert isinstance(parse_callback({**base, "InputType": "dtmf", "Digits": "1"}), GatherCallback)
    redirect = parse_callback({**base, "Event": "Redirect"})
    assert type(redirect) is VobizCallback
    assert redirect.event == "Redirect"


def test_kind_forces_the_model() -> None:
    form = {"CallUUID": "c", "Event": "Something"}
    assert isinstance(parse_callback(form, kind="gather"), GatherCallback)
    assert isinstance(parse_callback(form, kind="machine_detection"), MachineDetectionCallback)
    assert isinstance(parse_callback(form, kind="dial"), DialCallback)
    assert isinstance(parse_callback({**form, "DialStatus": "busy"}, kind="dial"), DialActionCallback)
    assert isinstance(parse_callback(form, kind="record"), RecordActionCallback)
    assert isinstance(parse_callback({**form, "Event": "RecordStop"}, kind="record"), RecordCallback)
    with pytest.raises(VobizValidationError, match="unknown callback kind 'conference'"):
        parse_callback(form, kind="conference")


def test_ring_and_answer_callbacks() -> None:
    ring_form = {
        "From": "14155551234",
        "To": "14155555678",
        "RequestUUID": "r",
        "ALegRequestUUID": "r",
        "CallUUID": "c",
        "Direction": "outbound",
        "Event": "Ring",
        "CallStatus": "ringing",
        "SessionStart": "2026-11-27 04:29:58.000001",
        "STIRAttestation": "A",
    }
    ring = parse_callback(ring_form)
    assert ring.call_status == "ringing"
    assert ring.to_form() == ring_form
    answer = parse_callback(
        {**ring_form, "Event": "StartApp", "CallStatus": "in-progress", "CallerName": "Bob"}
    )
    assert isinstance(answer, AnswerCallback)
    assert answer.caller_name == "Bob"


def test_machine_detection_callback() -> None:
    form = {"CallUUID": "c", "Event": "MachineDetection", "Machine": "true", "IfMachine": "continue"}
    callback = parse_callback(form)
    assert isinstance(callback, MachineDetectionCallback)
    assert callback.machine is True
    assert callback.if_machine == "continue"
    assert callback.to_form() == form
    human = parse_callback({**form, "Machine": "false"})
    assert isinstance(human, MachineDetectionCallback) and human.machine is False


def test_gather_callback_digits_and_timeout() -> None:
    form = {
        "CallUUID": "xyz789",
        "From": "14155551234",
        "To": "14155555678",
        "Direction": "inbound",
        "InputType": "dtmf",
        "Digits": "1",
        "Speech": "",
        "SpeechConfidenceScore": "",
        "BilledAmount": "0.00",
    }
    pressed = parse_callback(form)
    assert isinstance(pressed, GatherCallback)
    assert pressed.digits == "1"
    assert not pressed.timed_out
    assert pressed.speech_confidence_score is None
    assert pressed.billed_amount == Decimal("0.00")
    assert pressed.to_form() == form
    timed_out = parse_callback({**form, "Digits": ""})
    assert isinstance(timed_out, GatherCallback) and timed_out.timed_out
    speech = parse_callback(
        {**form, "InputType": "speech", "Digits": "", "Speech": "yes", "SpeechConfidenceScore": "0.92"}
    )
    assert isinstance(speech, GatherCallback)
    assert speech.speech_confidence_score == pytest.approx(0.92)
    assert not speech.timed_out


def test_unreadable_values_are_refused_naming_the_field() -> None:
    with pytest.raises(VobizValidationError, match="StartTime: 'yesterday' is not a local time"):
        parse_callback({**HANGUP_FORM, "StartTime": "yesterday"}, timezone="Asia/Kolkata")
    with pytest.raises(VobizValidationError, match="Duration"):
        parse_callback({**HANGUP_FORM, "Duration": "long"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("Duration", "1" * 400 + ".0", id="400-digit-whole-float"),
        pytest.param("Duration", "1" * 400, id="400-digit-int"),
        pytest.param("HangupCauseCode", "-" + "9" * 33, id="33-digit-int"),
        pytest.param("Duration", " " * 10 + "7" * 40 + " ", id="padded-long-int"),
        pytest.param("BillRate", "1e999999999", id="decimal-huge-exponent"),
        pytest.param("TotalCost", "1e-999999999", id="decimal-tiny-exponent"),
        pytest.param("BillRate", "0." + "1" * 400, id="400-digit-decimal"),
        pytest.param("BillRate", "Infinity", id="decimal-infinity"),
        pytest.param("TotalCost", "NaN", id="decimal-nan"),
    ],
)
def test_absurd_numbers_are_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(VobizValidationError, match=f"invalid HangupCallback callback: {field}: ") as err:
        parse_callback({**HANGUP_FORM, field: value}, kind="hangup")
    assert len(str(err.value)) < 200


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999", "1" * 400])
def test_non_finite_floats_are_refused_naming_the_field(value: str) -> None:
    form = {"CallUUID": "c-1", "Digits": "", "Speech": "yes", "SpeechConfidenceScore": value}
    with pytest.raises(VobizValidationError, match="SpeechConfidenceScore: "):
        parse_callback(form, kind="gather")


def test_ordinary_numbers_still_read() -> None:
    hangup = parse_callback(
        {**HANGUP_FORM, "Duration": " 66.000 ", "BillDuration": "+120", "HangupCauseCode": "4000.0"}
    )
    assert isinstance(hangup, HangupCallback)
    assert (hangup.duration, hangup.bill_duration, hangup.hangup_cause_code) == (66, 120, 4000)
    exact = "9" * 20 + ".0"  # whole, but more digits than a float holds: read exactly
    assert parse_callback({**HANGUP_FORM, "Duration": exact}).duration == int("9" * 20)  # type: ignore[attr-defined]
    cheap = parse_callback({**HANGUP_FORM, "BillRate": "1E-5", "TotalCost": "12345.678900"})
    assert (cheap.bill_rate, cheap.total_cost) == (Decimal("0.00001"), Decimal("12345.6789"))  # type: ignore[attr-defined]


def test_a_long_unreadable_value_is_quoted_short() -> None:
    with pytest.raises(VobizValidationError) as err:
        parse_callback({**HANGUP_FORM, "StartTime": "y" * 61_440}, timezone="Asia/Kolkata")
    message = str(err.value)
    assert "StartTime: 'yyyy" in message
    assert "61440 characters" in message
    assert len(message) < 300


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(VobizValidationError, match="unknown timezone 'Mars/Olympus'"):
        parse_callback(HANGUP_FORM, timezone="Mars/Olympus")


def test_callback_built_in_python_renders_vobiz_form() -> None:
    """How the emulator builds a hangup callback: Python names, datetimes, the fixed Event filled in."""
    answered = pendulum.datetime(2026, 11, 27, 4, 30, 5, tz="UTC")
    callback = HangupCallback(
        call_uuid="c",
        from_number="14155551234",
        to="14155555678",
        call_status="busy",
        start_time=answered,
        answer_time=None,
        duration=0,
        total_cost=Decimal("0.00000"),
        hangup_cause_code=3010,
    )
    form = callback.to_form(timezone="Asia/Kolkata")
    assert form == {
        "CallUUID": "c",
        "From": "14155551234",
        "To": "14155555678",
        "Event": "Hangup",
        "CallStatus": "busy",
        "StartTime": "2026-11-27 10:00:05",
        "AnswerTime": "",
        "Duration": "0",
        "TotalCost": "0.00000",
        "HangupCauseCode": "3010",
    }
    # and the receiver reads back the same instant
    again = parse_callback(form, timezone="Asia/Kolkata")
    assert isinstance(again, HangupCallback)
    assert again.start_time == answered
    assert again.answer_time is None


def test_model_dump_json_gives_iso_utc_times_for_storage() -> None:
    callback = parse_callback(HANGUP_FORM, timezone="Asia/Kolkata")
    dumped = callback.model_dump(mode="json")
    assert dumped["answer_time"] == "2026-11-27T04:30:05Z"
    assert dumped["total_cost"] == "0.01000"
    assert dumped["X-VH-Campaign"] == "spring"


# -- lenient reading (issue 9) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelt", "expected"),
    [
        pytest.param("2026-12-02 21:22:36", "2026-12-02T15:52:36+00:00", id="local"),
        pytest.param("2026-12-02 21:22:36.000000", "2026-12-02T15:52:36+00:00", id="local-fraction"),
        pytest.param("2026-12-02 21:22:36 UTC", "2026-12-02T21:22:36+00:00", id="utc-suffix"),
        pytest.param("2026-12-02 21:22:36.000000 UTC", "2026-12-02T21:22:36+00:00", id="fraction-utc"),
        pytest.param("2026-12-02T21:22:36Z", "2026-12-02T21:22:36+00:00", id="iso-z"),
        pytest.param("2026-12-02T21:22:36+05:30", "2026-12-02T15:52:36+00:00", id="iso-offset"),
        pytest.param(
            "2026-12-02T21:22:36.123456+00:00", "2026-12-02T21:22:36.123456+00:00", id="iso-fraction"
        ),
        pytest.param("", None, id="blank"),
        pytest.param("null", None, id="null"),
        pytest.param("None", None, id="None"),
    ],
)
def test_local_and_session_times_read_every_spelling(spelt: str, expected: str | None) -> None:
    form = {"CallUUID": "c1", "EndTime": spelt, "SessionStart": spelt}
    parsed = parse_callback(form, timezone="Asia/Kolkata", kind="hangup")
    assert isinstance(parsed, HangupCallback)
    want = None if expected is None else dt.datetime.fromisoformat(expected)
    assert parsed.end_time == want
    # SessionStart is UTC when it names no zone, where EndTime is in the connection's timezone.
    naive = want is not None and "T" not in spelt and "UTC" not in spelt
    assert parsed.session_start == (want + dt.timedelta(hours=5, minutes=30) if naive else want)


def test_read_callback_leaves_what_does_not_parse_empty_and_says_why() -> None:
    form = {
        "CallUUID": "c1",
        "EndTime": "yesterday",
        "Duration": "1" * 400,
        "HangupCauseCode": "Normal Hangup",
        "StartTime": "2026-12-02 21:22:36",
        "X-PH-Note": "kept",
    }
    with pytest.raises(VobizValidationError, match="EndTime"):
        parse_callback(form, kind="hangup")
    parsed = read_callback(form, timezone="Asia/Kolkata", kind="hangup")
    assert isinstance(parsed, HangupCallback)
    assert (parsed.end_time, parsed.duration, parsed.hangup_cause_code) == (None, None, None)
    assert parsed.start_time == dt.datetime(2026, 12, 2, 15, 52, 36, tzinfo=dt.timezone.utc)
    assert set(parsed.unreadable_fields) == {"EndTime", "Duration", "HangupCauseCode"}
    assert "400 characters" in parsed.unreadable_fields["Duration"]
    assert parsed.model_extra == {"X-PH-Note": "kept"}


def test_read_callback_with_an_unknown_timezone_leaves_the_local_times_empty() -> None:
    parsed = read_callback(
        {"CallUUID": "c1", "EndTime": "2026-12-02 21:22:36"}, timezone="Mars/Base", kind="hangup"
    )
    assert isinstance(parsed, HangupCallback)
    assert parsed.end_time is None
    assert "Mars/Base" in parsed.unreadable_fields["EndTime"]


# -- the <Dial> and <Record> callbacks ---------------------------------------------------------------------

DIAL_HANGUP_FORM = {
    "CallUUID": "a-leg",
    "Event": "DialHangup",
    "DialAction": "hangup",
    "DialALegUUID": "a-leg",
    "DialBLegUUID": "b-leg",
    "DialBLegTo": "+14155550122",
    "DialBLegStatus": "hangup",
    "DialBLegDuration": "42",
    "DialBLegHangupCause": "NORMAL_CLEARING",
    "DialBLegHangupCauseCode": "4000",
    "DialBLegHangupCauseName": "Normal Hangup",
    "DialBLegHangupSource": "Callee",
}


def test_dial_events_follow_their_event_and_round_trip() -> None:
    parsed = parse_callback(DIAL_HANGUP_FORM)
    assert isinstance(parsed, DialCallback)
    assert (parsed.dial_b_leg_uuid, parsed.dial_b_leg_duration) == ("b-leg", 42)
    assert (parsed.dial_b_leg_hangup_cause_code, parsed.dial_b_leg_hangup_source) == (4000, "Callee")
    assert parsed.to_form() == DIAL_HANGUP_FORM


def test_dial_action_is_recognised_by_its_dial_status() -> None:
    form = {
        "CallUUID": "a",
        "DialStatus": "no-answer",
        "DialRingStatus": "true",
        "DialHangupCause": "NO_ANSWER",
    }
    parsed = parse_callback(form)
    assert isinstance(parsed, DialActionCallback)
    assert (parsed.dial_status, parsed.dial_ring_status, parsed.dial_hangup_cause) == (
        "no-answer",
        True,
        "NO_ANSWER",
    )


def test_record_stop_carries_the_recording_url_under_either_documented_name() -> None:
    form = {
        "CallUUID": "a",
        "Event": "RecordStop",
        "RecordingID": "r-1",
        "RecordUrl": "https://media.example/r-1.mp3",
        "RecordingDuration": "7",
        "RecordingEndReason": "HungUp",
    }
    parsed = parse_callback(form)
    assert isinstance(parsed, RecordCallback)
    assert (parsed.url, parsed.recording_duration, parsed.recording_end_reason) == (
        "https://media.example/r-1.mp3",
        7,
        "HungUp",
    )
    legacy = parse_callback(
        {**{k: v for k, v in form.items() if k != "RecordUrl"}, "RecordFile": "https://m/x"}
    )
    assert isinstance(legacy, RecordCallback)
    assert legacy.url == "https://m/x"
    action = parse_callback({"CallUUID": "a", "RecordingID": "r-1", "RecordUrl": "https://m/r-1.mp3"})
    assert isinstance(action, RecordActionCallback)
    assert not isinstance(action, RecordCallback)
