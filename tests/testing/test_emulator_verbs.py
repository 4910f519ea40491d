"""The emulator executes the verbs beyond Speak/Gather over real HTTP: Dial rings a B leg per destination
script and posts the Dial callbacks, Record posts the recording, Conference and Stream are timed, DTMF,
PreAnswer, Play, Wait and Redirect behave as documented."""

from __future__ import annotations

import time

import pytest

from vobiz_provider.models.callbacks import DialActionCallback, DialCallback, RecordCallback, parse_callback
from vobiz_provider.testing import CallScript

TO = "14155550101"
SECONDARY = "+14155550122"
OTHER = "+14155550123"


def _run(handle, client, receiver, document: str, **scripts: CallScript) -> tuple[str, dict[str, str]]:
    """Serve ``document`` at the answer URL, place a call (answered, stays on), wait for its end."""
    handle.script(TO, CallScript.answered(after=0.01, talk_for=None))
    for destination, script in scripts.items():
        handle.script(destination.replace("_", "+", 1), script)
    receiver.xml("/answer", document)
    response = client.post(f"/Account/{handle.auth_id}/Call/", json=receiver.call_body())
    assert response.status_code == 201, response.text
    call_uuid = response.json()["request_uuid"]
    handle.wait_for_call(call_uuid)
    [hangup] = handle.emulator.callbacks_of("hangup", call_uuid=call_uuid)
    return call_uuid, hangup.fields


def _dial(
    receiver, *, redirect: str = "false", extra: str = "", parties: str = f"<Number>{SECONDARY}</Number>"
) -> str:
    return (
        f'<Response><Dial action="{receiver.url("/dial-action")}" callbackUrl="{receiver.url("/dial")}" '
        f'redirect="{redirect}" timeout="5" {extra}>{parties}</Dial>'
        f"<Speak>after the dial</Speak></Response>"
    )


@pytest.fixture
def fast(make_emulator):
    return make_emulator(time_scale=0.01)


def test_an_answered_b_leg_posts_answer_connected_hangup_then_the_action(fast, connect, receiver):
    call_uuid, hangup = _run(
        fast,
        connect(fast),
        receiver,
        _dial(receiver),
        _14155550122=CallScript.answered(after=0.02, talk_for=0.1),
    )
    events = [parse_callback(hit.form) for hit in receiver.hits_for("/dial")]
    assert all(isinstance(event, DialCallback) for event in events)
    assert [e.event for e in events] == ["DialAnswer", "DialConnected", "DialHangup"]
    assert [e.dial_action for e in events] == ["answer", "connected", "hangup"]
    last = events[-1]
    assert isinstance(last, DialCallback)
    assert (last.call_uuid, last.dial_a_leg_uuid, last.dial_b_leg_to) == (call_uuid, call_uuid, SECONDARY)
    assert (last.dial_b_leg_hangup_cause_code, last.dial_b_leg_hangup_cause_name) == (4000, "Normal Hangup")
    assert last.dial_b_leg_hangup_source == "Callee"
    [action_hit] = receiver.hits_for("/dial-action")
    action = parse_callback(action_hit.form)
    assert isinstance(action, DialActionCallback)
    assert (action.dial_status, action.dial_ring_status, action.dial_hangup_cause) == (
        "completed",
        True,
        "NORMAL_CLEARING",
    )
    assert action.dial_b_leg_uuid == last.dial_b_leg_uuid
    # redirect="false": the verbs after the Dial run, then the call ends with the end of the XML
    assert hangup["HangupCauseCode"] == "4010"
    order = [hit.path for hit in receiver.hits if hit.path in ("/dial", "/dial-action", "/hangup")]
    assert order == ["/dial", "/dial", "/dial", "/dial-action", "/hangup"]


@pytest.mark.parametrize(
    ("script", "status", "cause"),
    [
        (CallScript.busy(after=0.01), "busy", "USER_BUSY"),
        (CallScript.rejected(after=0.01), "busy", "CALL_REJECTED"),
        (CallScript.no_answer(after=0.01), "no-answer", "NO_ANSWER"),
        (CallScript.answered(after=1.0), "no-answer", "NO_ANSWER"),  # beyond the Dial's timeout (0.05 s)
        (CallScript.failed(after=0.01), "failed", "INVALID_NUMBER"),
    ],
    ids=["busy", "rejected", "no-answer", "rings-past-timeout", "failed"],
)
def test_an_unanswered_b_leg_reports_why(fast, connect, receiver, script, status, cause):
    _, hangup = _run(fast, connect(fast), receiver, _dial(receiver), _14155550122=script)
    [event] = [parse_callback(hit.form) for hit in receiver.hits_for("/dial")]
    assert isinstance(event, DialCallback)
    assert (event.event, event.dial_b_leg_hangup_cause) == ("DialHangup", cause)
    [action_hit] = receiver.hits_for("/dial-action")
    action = parse_callback(action_hit.form)
    assert isinstance(action, DialActionCallback)
    assert (action.dial_status, action.dial_hangup_cause) == (status, cause)
    assert not action.dial_b_leg_uuid  # sent empty: no leg was bridged
    assert hangup["HangupCauseCode"] == "4010"


def test_the_first_party_to_answer_wins_a_simultaneous_dial(fast, connect, receiver):
    parties = f"<Number>{OTHER}</Number><Number>{SECONDARY}</Number>"
    _run(
        fast,
        connect(fast),
        receiver,
        _dial(receiver, parties=parties),
        _14155550122=CallScript.answered(after=0.01, talk_for=0.02),
        _14155550123=CallScript.answered(after=0.2, talk_for=0.02),
    )
    answer = parse_callback(receiver.hits_for("/dial")[0].form)
    assert isinstance(answer, DialCallback)
    assert answer.dial_b_leg_to == SECONDARY


def test_dial_with_redirect_runs_the_action_document(fast, connect, receiver):
    receiver.xml("/dial-action", "<Response><Speak>the action speaks</Speak><Hangup/></Response>")
    _, hangup = _run(
        fast,
        connect(fast),
        receiver,
        _dial(receiver, redirect="true"),
        _14155550122=CallScript.busy(after=0.01),
    )
    assert hangup["HangupSource"] == "Answer XML"  # the action document's <Hangup/>
    [call] = fast.calls.values()
    assert any("Dial action XML: Speak, Hangup" in line for line in call.xml_log)
    assert not any("after the dial" in line for line in call.xml_log)


def test_the_caller_hanging_up_ends_the_bridge_and_reports_it(fast, connect, receiver):
    fast.script(TO, CallScript.answered(after=0.01, talk_for=0.15))  # the A leg hangs up mid-bridge
    fast.script(SECONDARY, CallScript.answered(after=0.01, talk_for=None))
    receiver.xml("/answer", _dial(receiver))
    response = connect(fast).post(f"/Account/{fast.auth_id}/Call/", json=receiver.call_body())
    fast.wait_for_call(response.json()["request_uuid"])
    order = [hit.path for hit in receiver.hits if hit.path in ("/dial", "/dial-action", "/hangup")]
    assert order == ["/dial", "/dial", "/hangup", "/dial", "/dial-action"]
    hangup_event = parse_callback(receiver.hits_for("/dial")[-1].form)
    assert isinstance(hangup_event, DialCallback)
    assert (hangup_event.event, hangup_event.dial_b_leg_hangup_source) == ("DialHangup", "Caller")
    assert receiver.hits_for("/dial-action")[0].form["DialStatus"] == "completed"


def test_dial_time_limit_ends_the_bridge(fast, connect, receiver):
    _run(
        fast,
        connect(fast),
        receiver,
        _dial(receiver, extra='timeLimit="5"'),  # 0.05 s scaled
        _14155550122=CallScript.answered(after=0.01, talk_for=None),
    )
    hangup_event = parse_callback(receiver.hits_for("/dial")[-1].form)
    assert isinstance(hangup_event, DialCallback)
    assert (hangup_event.dial_b_leg_hangup_cause_code, hangup_event.dial_b_leg_hangup_source) == (
        6000,
        "Vobiz",
    )


def test_record_posts_the_recording_url_to_callback_and_action(fast, connect, receiver):
    document = (
        f'<Response><Record action="{receiver.url("/record-action")}" '
        f'callbackUrl="{receiver.url("/record")}" '
        'maxLength="60" timeout="5" fileFormat="wav"/><Speak>bye</Speak></Response>'
    )
    call_uuid, hangup = _run(fast, connect(fast), receiver, document)
    [stop_hit] = receiver.hits_for("/record")
    stop = parse_callback(stop_hit.form)
    assert isinstance(stop, RecordCallback)
    assert stop.event == "RecordStop"
    assert stop.recording_end_reason == "RecordingTimeout"
    assert stop.url is not None and stop.url.endswith(f"/{stop.recording_id}.wav")
    assert stop.call_uuid == call_uuid
    [action_hit] = receiver.hits_for("/record-action")
    assert action_hit.form["RecordingID"] == stop.recording_id
    assert action_hit.form["RecordUrl"] == stop.url
    assert hangup["HangupCauseCode"] == "4010"  # redirect defaults to false: the Speak ran, then the end


def test_record_max_length_cuts_a_long_recording(fast, connect, receiver):
    fast.script(TO, CallScript.answered(after=0.01, talk_for=None))
    document = f'<Response><Record callbackUrl="{receiver.url("/record")}" maxLength="2"/></Response>'
    _run(fast, connect(fast), receiver, document)
    [stop_hit] = receiver.hits_for("/record")
    assert stop_hit.form["RecordingEndReason"] == "maxLength"


def test_a_session_recording_started_on_dial_answer_covers_the_bridge(fast, connect, receiver):
    document = (
        '<Response><Record recordSession="true" startOnDialAnswer="true" '
        f'callbackUrl="{receiver.url("/record")}"/>' + _dial(receiver).removeprefix("<Response>")
    )
    _run(fast, connect(fast), receiver, document, _14155550122=CallScript.answered(after=0.01, talk_for=0.2))
    [stop_hit] = receiver.hits_for("/record")
    assert int(stop_hit.form["RecordingDurationMs"]) >= 150
    order = [hit.path for hit in receiver.hits if hit.path in ("/dial", "/record", "/hangup")]
    assert order == ["/dial", "/dial", "/dial", "/record", "/hangup"]


def test_a_session_recording_ends_with_the_call_after_its_hangup_callback(fast, connect, receiver):
    fast.script(TO, CallScript.answered(after=0.01, talk_for=0.1))
    document = (
        f'<Response><Record recordSession="true" callbackUrl="{receiver.url("/record")}"/>'
        '<Wait length="60"/></Response>'
    )
    receiver.xml("/answer", document)
    response = connect(fast).post(f"/Account/{fast.auth_id}/Call/", json=receiver.call_body())
    call_uuid = response.json()["request_uuid"]
    fast.wait_for_call(call_uuid)
    order = [hit.path for hit in receiver.hits if hit.path in ("/record", "/hangup")]
    assert order == ["/hangup", "/record"]
    assert receiver.hits_for("/record")[0].form["RecordingEndReason"] == "HungUp"


@pytest.mark.parametrize(
    ("verb", "script_field"),
    [
        ('<Conference timeLimit="{limit}">room-1</Conference>', "conference_for"),
        (
            '<Stream streamTimeout="{limit}" bidirectional="true">wss://stream.example.com/a</Stream>',
            "stream_for",
        ),
    ],
    ids=["conference", "stream"],
)
def test_conference_and_stream_are_accepted_and_timed(fast, connect, receiver, verb, script_field):
    # The script's stay (0.3 s) decides when it is shorter than the limit; the limit otherwise.
    short = CallScript(outcome="completed", answer_after=0.01, talk_for=None, **{script_field: 0.3})
    fast.script(TO, short)
    receiver.xml("/answer", f"<Response>{verb.format(limit=1000)}</Response>")
    started = time.monotonic()
    response = connect(fast).post(f"/Account/{fast.auth_id}/Call/", json=receiver.call_body())
    fast.wait_for_call(response.json()["request_uuid"])
    assert time.monotonic() - started >= 0.3
    [call] = fast.calls.values()
    assert [line for line in call.xml_log if line.endswith(("joined", "left"))] != []
    assert call.hangup_cause_code == 4010
    assert not any("time limit" in line for line in call.xml_log)

    fast.emulator.reset()
    fast.script(TO, CallScript(outcome="completed", answer_after=0.01, talk_for=None, **{script_field: None}))
    receiver.xml("/answer", f"<Response>{verb.format(limit=10)}</Response>")  # 0.1 s scaled
    response = connect(fast).post(f"/Account/{fast.auth_id}/Call/", json=receiver.call_body())
    fast.wait_for_call(response.json()["request_uuid"])
    [call] = fast.calls.values()
    assert any(line.endswith("left (time limit)") for line in call.xml_log)


def test_dtmf_is_sent_or_ignored_as_documented(fast, connect, receiver):
    document = (
        '<Response><DTMF async="false">12wW#</DTMF><DTMF>12a</DTMF>'
        "<PreAnswer><Speak>early</Speak><Play>https://x.example/a.mp3</Play><Wait length='1'/></PreAnswer>"
        "</Response>"
    )
    _run(fast, connect(fast), receiver, document)
    [call] = fast.calls.values()
    assert "DTMF sent: 12wW#" in call.xml_log
    assert "DTMF ignored: invalid content" in call.xml_log
    assert call.hangup_cause_code == 4010
