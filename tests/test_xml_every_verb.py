"""Every VobizXML verb and attribute: the builder emits each documented attribute, the emulator's strict
parser accepts every document the builder emits, and the two agree on the attribute names."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import fields
from typing import Any

import pytest

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.testing.emulator.answer_xml import _ATTRIBUTES, InvalidXmlError, parse_response
from vobiz_provider.xml import (
    DTMF,
    Conference,
    Dial,
    Gather,
    Hangup,
    Number,
    Play,
    Record,
    Redirect,
    Speak,
    Stream,
    User,
    VobizXML,
    Wait,
)

URL = "https://hooks.example.com/vobiz"

#: Every attribute of every verb set to a valid value (the builder's Python names).
FULL: dict[type[Any], tuple[tuple[Any, ...], dict[str, Any]]] = {
    Speak: (("Hello",), {"voice": "MAN", "language": "hi-IN", "loop": 2}),
    Play: ((f"{URL}/a.mp3",), {"loop": 0}),
    Wait: ((), {"length": 3, "silence": True, "min_silence": 500}),
    Hangup: ((), {"reason": "busy", "schedule": 30}),
    Redirect: ((f"{URL}/next",), {"method": "GET"}),
    DTMF: (("12w3W#",), {"async_": False}),
    Gather: (
        (),
        {
            "action": f"{URL}/gather",
            "method": "POST",
            "input_type": "dtmf speech",
            "execution_timeout": 20,
            "digit_end_timeout": "auto",
            "speech_end_timeout": 3,
            "finish_on_key": "*",
            "num_digits": 4,
            "speech_model": "phone_call",
            "hints": ["yes", "no"],
            "language": "en-GB",
            "interim_speech_results_callback": f"{URL}/interim",
            "interim_speech_results_callback_method": "GET",
            "log": False,
            "redirect": False,
            "profanity_filter": True,
        },
    ),
    Record: (
        (),
        {
            "action": f"{URL}/record-action",
            "method": "GET",
            "file_format": "wav",
            "redirect": True,
            "timeout": 5,
            "max_length": 120,
            "play_beep": False,
            "finish_on_key": "#*",
            "record_session": False,
            "start_on_dial_answer": False,
            "transcription_type": "hybrid",
            "transcription_url": f"{URL}/transcription",
            "transcription_method": "POST",
            "callback_url": f"{URL}/record",
            "callback_method": "POST",
        },
    ),
    Dial: (
        (),
        {
            "action": f"{URL}/dial-action",
            "method": "POST",
            "callback_url": f"{URL}/dial",
            "callback_method": "GET",
            "redirect": False,
            "caller_id": "+14155550100",
            "caller_name": "Ops",
            "timeout": 25,
            "time_limit": 600,
            "hangup_on_star": True,
            "dial_music": f"{URL}/music.xml",
            "confirm_sound": f"{URL}/confirm.xml",
            "confirm_key": "5",
            "confirm_timeout": 10,
            "digits_match": "*1,*22",
            "digits_match_b_leg": "#9",
            "sip_headers": "team=ops,level=2",
        },
    ),
    Conference: (
        ("incident-42",),
        {
            "muted": False,
            "enter_sound": "beep:1",
            "exit_sound": f"{URL}/bye.xml",
            "start_conference_on_enter": True,
            "end_conference_on_exit": True,
            "stay_alone": False,
            "wait_sound": f"{URL}/wait.xml",
            "max_members": 10,
            "record": True,
            "record_file_format": "wav",
            "time_limit": 3600,
            "hangup_on_star": True,
            "action": f"{URL}/conf-action",
            "method": "POST",
            "callback_url": f"{URL}/conf",
            "callback_method": "POST",
            "digits_match": "*0",
            "floor_event": True,
            "redirect": False,
            "relay_dtmf": True,
        },
    ),
    Stream: (
        ("wss://stream.example.com/audio",),
        {
            "bidirectional": True,
            "audio_track": "both",
            "stream_timeout": 600,
            "status_callback_url": f"{URL}/stream",
            "status_callback_method": "POST",
            "content_type": "audio/x-l16;rate=16000",
            "extra_headers": "tenant=acme",
            "keep_call_alive": True,
            "max_retries": 2,
        },
    ),
}


def _document(verb: Any) -> str:
    doc = VobizXML()
    doc.add(verb)
    if isinstance(verb, Dial):
        verb.number("+14155550122", send_digits="1w2@500", send_on_preanswer=True)
        verb.user("sip:oncall@example.com", sip_headers="a=b")
    if isinstance(verb, Gather):
        verb.speak("Press 1")
    return doc.to_xml()


def _attribute_names(verb_class: type[Any]) -> set[str]:
    return {f.metadata["attr"] for f in fields(verb_class) if "attr" in f.metadata}


@pytest.mark.parametrize("verb_class", list(FULL), ids=lambda c: c.tag)
def test_every_attribute_is_emitted_and_accepted_by_the_emulator(verb_class: type[Any]) -> None:
    args, kwargs = FULL[verb_class]
    text = _document(verb_class(*args, **kwargs))
    [element] = list(ET.fromstring(text.split("\n", 1)[1]))
    # <Wait beep> is used only without silence: FULL sets silence, and the next test sets beep.
    assert set(element.attrib) == _attribute_names(verb_class) - ({"beep"} if verb_class is Wait else set())
    [parsed] = parse_response(text.split("\n", 1)[1])
    assert parsed.name == verb_class.tag
    assert parsed.attributes == element.attrib


@pytest.mark.parametrize("verb_class", [*FULL, Number, User], ids=lambda c: c.tag)
def test_the_builder_and_the_emulator_know_the_same_attributes(verb_class: type[Any]) -> None:
    assert _attribute_names(verb_class) == set(_ATTRIBUTES[verb_class.tag])


def test_wait_beep_is_emitted_and_accepted() -> None:
    [parsed] = parse_response(_document(Wait(length=5, beep=True)).split("\n", 1)[1])
    assert parsed.attributes == {"length": "5", "beep": "true"}


def test_pre_answer_holds_speak_play_and_wait() -> None:
    doc = VobizXML()
    early = doc.pre_answer()
    early.speak("Connecting")
    early.play(f"{URL}/tone.mp3")
    early.wait(length=1)
    [pre] = parse_response(doc.to_xml().split("\n", 1)[1])
    assert [child.name for child in pre.children] == ["Speak", "Play", "Wait"]


def test_dial_renders_its_parties_in_order() -> None:
    doc = VobizXML()
    dial = doc.dial(callback_url=f"{URL}/dial", timeout=30)
    dial.number("+14155550122")
    dial.user("sip:bob@example.com")
    root = ET.fromstring(doc.to_xml().split("\n", 1)[1])
    [element] = list(root)
    assert [(child.tag, child.text) for child in element] == [
        ("Number", "+14155550122"),
        ("User", "sip:bob@example.com"),
    ]


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: VobizXML().dial(), None),  # rendered below: no party
        (lambda: Dial(method="GET"), "method needs action"),
        (lambda: Dial(callback_method="GET"), "callbackMethod needs callbackUrl"),
        (lambda: Dial(caller_id="ops"), "callerId"),
        (lambda: Dial(caller_name="x" * 51), "at most 50"),
        (lambda: Dial(timeout=0), "timeout"),
        (lambda: Dial(confirm_timeout=5), "confirmTimeout needs confirmKey"),
        (lambda: Dial(digits_match="*1,x"), "digitsMatch"),
        (lambda: Dial(sip_headers="no pairs"), "sipHeaders"),
        (lambda: Dial(dial_music="loud"), "dialMusic"),
        (lambda: Number("call me"), "E.164"),
        (lambda: Number("+14155550122", send_digits="12@x"), "sendDigits"),
        (lambda: User("bob@example.com"), "SIP URI"),
        (lambda: Record(file_format="ogg"), "fileFormat"),
        (lambda: Record(finish_on_key="a"), "finishOnKey"),
        (lambda: Record(callback_method="GET"), "callback_method needs callback_url"),
        (lambda: Record(transcription_url=URL), "transcriptionUrl needs transcriptionType"),
        (lambda: Conference(""), "must not be empty"),
        (lambda: Conference("room", max_members=1), "maxMembers"),
        (lambda: Conference("room", record_file_format="mp3"), "only with record=True"),
        (lambda: Conference("room", enter_sound="ding"), "enterSound"),
        (lambda: Stream("https://not-a-socket.example.com"), "ws(s) URL"),
        (lambda: Stream("wss://s.example.com", keep_call_alive=True), "needs bidirectional"),
        (lambda: Stream("wss://s.example.com", content_type="audio/ogg"), "contentType"),
        (lambda: Stream("wss://s.example.com", audio_track="left"), "audioTrack"),
    ],
)
def test_bad_values_are_refused_naming_the_attribute(build: Any, problem: str | None) -> None:
    with pytest.raises(VobizValidationError) as caught:
        built = build()
        if isinstance(built, Dial):
            doc = VobizXML()
            doc.add(built)
            doc.to_xml()
    assert problem is None or problem in str(caught.value)
    if problem is None:
        assert "<Dial> needs at least one <Number> or <User>" in str(caught.value)


def test_verbs_after_a_dial_or_record_still_run() -> None:
    doc = VobizXML()
    doc.record(max_length=30, callback_url=f"{URL}/record")
    doc.dial(redirect=False).number("+14155550122")
    doc.speak("Goodbye")
    doc.hangup()
    assert [verb.name for verb in parse_response(doc.to_xml().split("\n", 1)[1])] == [
        "Record",
        "Dial",
        "Speak",
        "Hangup",
    ]


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Dial/></Response>",
        "<Response><Dial><Speak>x</Speak></Dial></Response>",
        "<Response><Dial><Number>not a number</Number></Dial></Response>",
        '<Response><Dial unknownAttr="1"><Number>+14155550122</Number></Dial></Response>',
        "<Response><Conference/></Response>",
        "<Response><Conference><Speak>x</Speak>room</Conference></Response>",
        '<Response><Conference beep="true">room</Conference></Response>',
        "<Response><Stream>https://s.example.com</Stream></Response>",
        '<Response><Stream contentType="audio/ogg">wss://s.example.com</Stream></Response>',
        '<Response><Record callbackUrl="not-a-url"/></Response>',
        '<Response><Record transcriptionType="manual"/></Response>',
    ],
)
def test_the_emulator_refuses_what_vobiz_would_refuse(document: str) -> None:
    with pytest.raises(InvalidXmlError):
        parse_response(document)
