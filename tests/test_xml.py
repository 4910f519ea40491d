from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.xml import (
    DTMF,
    MAX_XML_BYTES,
    XML_DECLARATION,
    Gather,
    Hangup,
    Play,
    PreAnswer,
    Redirect,
    Speak,
    VobizXML,
    Wait,
    gather_response,
    message_response,
)

ACTION = "https://hooks.example.com/vobiz/gather"


def parse(text: str) -> ET.Element:
    assert text.startswith(XML_DECLARATION + "\n")
    return ET.fromstring(text.encode("utf-8"))


def render_one(verb: Any) -> ET.Element:
    """Render ``verb`` alone in a Response and return the parsed element."""
    doc = VobizXML()
    doc.add(verb)
    root = parse(doc.to_xml())
    assert root.tag == "Response"
    assert root.attrib == {}
    (element,) = list(root)
    return element


# ---------------------------------------------------------------------------- document


def test_empty_response_is_valid() -> None:
    text = VobizXML().to_xml()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = parse(text)
    assert root.tag == "Response"
    assert list(root) == []


def test_str_is_to_xml() -> None:
    doc = VobizXML()
    doc.speak("hello")
    assert str(doc) == doc.to_xml()


def test_builder_example_structure() -> None:
    doc = VobizXML()
    doc.speak("Your order shipped", voice="WOMAN", language="en-US", loop=1)
    g = doc.gather(action=ACTION, num_digits=1, execution_timeout=10)
    g.speak("Press 1 to confirm, 2 to cancel")
    doc.speak("We did not get your answer. Goodbye.")
    doc.hangup()

    root = parse(doc.to_xml())
    assert [child.tag for child in root] == ["Speak", "Gather", "Speak", "Hangup"]
    speak, gather, fallback, hangup = root
    assert speak.attrib == {"voice": "WOMAN", "language": "en-US", "loop": "1"}
    assert speak.text == "Your order shipped"
    assert gather.attrib == {"action": ACTION, "executionTimeout": "10", "numDigits": "1"}
    assert [(c.tag, c.text) for c in gather] == [("Speak", "Press 1 to confirm, 2 to cancel")]
    assert fallback.attrib == {}
    assert hangup.attrib == {}
    assert hangup.text is None


def test_verb_methods_return_the_child() -> None:
    doc = VobizXML()
    pre = doc.pre_answer()
    assert isinstance(pre, PreAnswer)
    assert isinstance(pre.wait(length=2), Wait)
    assert isinstance(doc.play("https://cdn.example.com/a.mp3"), Play)
    assert isinstance(doc.dtmf("1"), DTMF)
    assert isinstance(doc.redirect("https://example.com/next"), Redirect)
    assert doc.children[0] is pre
    assert [c.tag for c in doc.children] == ["PreAnswer", "Play", "DTMF", "Redirect"]


# ---------------------------------------------------------------------------- Speak


def test_speak_attributes() -> None:
    element = render_one(Speak("hi", voice="man", language="hi-IN", loop=0))
    assert element.attrib == {"voice": "MAN", "language": "hi-IN", "loop": "0"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"voice": "CHILD"}, "<Speak> voice"),
        ({"loop": -1}, "<Speak> loop must be an integer >= 0"),
        ({"loop": True}, "<Speak> loop"),
        ({"loop": "2"}, "<Speak> loop"),
        ({"language": "english"}, "<Speak> language"),
    ],
)
def test_speak_rejects_bad_attributes(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(VobizValidationError, match=message):
        Speak("hi", **kwargs)


@pytest.mark.parametrize("text", ["", "   ", "bell\x07"])
def test_speak_rejects_empty_or_unencodable_text(text: str) -> None:
    with pytest.raises(VobizValidationError, match="<Speak> text"):
        VobizXML().speak(text)


def test_speak_ssml_is_embedded_as_markup() -> None:
    element = render_one(Speak('Hello <break time="1s"/> there &amp; bye', ssml=True))
    assert element.text == "Hello "
    (pause,) = list(element)
    assert pause.tag == "break"
    assert pause.attrib == {"time": "1s"}
    assert pause.tail == " there & bye"


def test_speak_bad_ssml_is_refused() -> None:
    with pytest.raises(VobizValidationError, match="not well-formed SSML"):
        Speak("Hello <break", ssml=True)


# ---------------------------------------------------------------------------- escaping


def test_text_and_attributes_are_escaped() -> None:
    nasty = """Tom & Jerry <script> "quoted" 'single'"""
    doc = VobizXML()
    doc.speak(nasty)
    url = "https://example.com/g?a=1&b=<2>&c=\"3\"&d='4'"
    doc.gather(action=url).speak(nasty)
    text = doc.to_xml()
    assert "<script>" not in text
    root = parse(text)
    assert root[0].text == nasty
    assert root[1].get("action") == url
    assert root[1][0].text == nasty
    # Escaped text stays text: no element was injected.
    assert [el.tag for el in root.iter()] == ["Response", "Speak", "Gather", "Speak"]


def test_markup_in_plain_speak_is_read_not_parsed() -> None:
    element = render_one(Speak("</Speak><Hangup/>"))
    assert element.text == "</Speak><Hangup/>"
    assert list(element) == []


# ---------------------------------------------------------------------------- Play


def test_play() -> None:
    element = render_one(Play("https://cdn.example.com/hold.mp3", loop=3))
    assert element.attrib == {"loop": "3"}
    assert element.text == "https://cdn.example.com/hold.mp3"


@pytest.mark.parametrize(
    "url", ["ftp://cdn.example.com/a.mp3", "/relative.mp3", "https://", "https://a b/c", 3]
)
def test_play_requires_an_absolute_http_url(url: Any) -> None:
    with pytest.raises(VobizValidationError, match="<Play> url must be an absolute http"):
        Play(url)


# ---------------------------------------------------------------------------- Wait


def test_wait_attributes_and_booleans_are_lowercase() -> None:
    element = render_one(Wait(length=5, silence=True, min_silence=500))
    assert element.attrib == {"length": "5", "silence": "true", "minSilence": "500"}
    element = render_one(Wait(length=15, silence=False, beep=True))
    assert element.attrib == {"length": "15", "silence": "false", "beep": "true"}
    assert render_one(Wait()).attrib == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 0}, "<Wait> length must be an integer >= 1"),
        ({"silence": "yes"}, "<Wait> silence must be True or False"),
        ({"silence": True, "min_silence": 0}, r"<Wait> minSilence \(min_silence\)"),
        ({"min_silence": 500}, "minSilence is used only with silence=True"),
        ({"silence": True, "beep": True}, "beep is used only when silence is false"),
    ],
)
def test_wait_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(VobizValidationError, match=message):
        Wait(**kwargs)


# ---------------------------------------------------------------------------- Gather


def test_gather_every_attribute_maps_to_camel_case() -> None:
    doc = VobizXML()
    doc.gather(
        action=ACTION,
        method="get",
        input_type="speech dtmf",
        execution_timeout=60,
        digit_end_timeout="auto",
        speech_end_timeout=2,
        finish_on_key="*",
        num_digits=32,
        speech_model="phone_call",
        hints=["yes", "no", "talk to an agent"],
        language="en-IN",
        interim_speech_results_callback="https://example.com/interim",
        interim_speech_results_callback_method="POST",
        log=False,
        redirect=True,
        profanity_filter=True,
    )
    (gather,) = parse(doc.to_xml())
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "action": ACTION,
        "method": "GET",
        "inputType": "dtmf speech",
        "executionTimeout": "60",
        "digitEndTimeout": "auto",
        "speechEndTimeout": "2",
        "finishOnKey": "*",
        "numDigits": "32",
        "speechModel": "phone_call",
        "hints": "yes,no,talk to an agent",
        "language": "en-IN",
        "interimSpeechResultsCallback": "https://example.com/interim",
        "interimSpeechResultsCallbackMethod": "POST",
        "log": "false",
        "redirect": "true",
        "profanityFilter": "true",
    }


def test_gather_is_never_get_digits_and_never_timeout() -> None:
    text = gather_response("Press 1", action_url=ACTION, timeout=20)
    assert "GetDigits" not in text
    assert "GetInput" not in text
    for element in parse(text).iter():
        assert "timeout" not in element.attrib
    (gather,) = parse(text)
    assert gather.tag == "Gather"
    assert gather.get("executionTimeout") == "20"


def test_gather_requires_action() -> None:
    with pytest.raises(TypeError, match="action"):
        Gather()  # type: ignore[call-arg]
    with pytest.raises(VobizValidationError, match="<Gather> action is required"):
        Gather(action=None)  # type: ignore[arg-type]
    with pytest.raises(VobizValidationError, match="<Gather> action must be an absolute http"):
        Gather(action="gather.php")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"execution_timeout": 4}, r"<Gather> executionTimeout \(execution_timeout\) must be .* 5 to 60"),
        ({"execution_timeout": 61}, "executionTimeout"),
        ({"digit_end_timeout": 1}, r"digitEndTimeout .* 2 to 10 or \"auto\""),
        ({"digit_end_timeout": 11}, "digitEndTimeout"),
        ({"digit_end_timeout": "never"}, "digitEndTimeout"),
        ({"speech_end_timeout": 11}, "speechEndTimeout"),
        ({"num_digits": 0}, r"numDigits \(num_digits\) must be an integer from 1 to 32"),
        ({"num_digits": 33}, "numDigits"),
        ({"input_type": "voice"}, "inputType"),
        ({"input_type": "dtmf dtmf"}, "inputType"),
        ({"finish_on_key": "##"}, "finishOnKey"),
        ({"finish_on_key": "a"}, "finishOnKey"),
        ({"speech_model": "whisper"}, "speechModel"),
        ({"method": "PUT"}, "<Gather> method"),
        ({"hints": []}, "hints"),
        ({"log": "true"}, "<Gather> log must be True or False"),
        ({"interim_speech_results_callback_method": "GET"}, "needs interimSpeechResultsCallback"),
    ],
)
def test_gather_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(VobizValidationError, match=message):
        Gather(action=ACTION, **kwargs)


@pytest.mark.parametrize("key", ["", "none", "#", "0"])
def test_gather_finish_on_key_can_be_disabled(key: str) -> None:
    element = render_one(Gather(action=ACTION, finish_on_key=key))
    assert element.get("finishOnKey") == key


def test_gather_boundaries_accepted() -> None:
    element = render_one(Gather(action=ACTION, execution_timeout=5, digit_end_timeout=10, num_digits=1))
    assert element.attrib == {
        "action": ACTION,
        "executionTimeout": "5",
        "digitEndTimeout": "10",
        "numDigits": "1",
    }


# ---------------------------------------------------------------------------- Hangup, Redirect, DTMF


def test_hangup() -> None:
    assert render_one(Hangup(reason="busy")).attrib == {"reason": "busy"}
    doc = VobizXML()
    doc.hangup(schedule=30)
    doc.speak("This call ends in thirty seconds")
    root = parse(doc.to_xml())
    assert root[0].attrib == {"schedule": "30"}
    assert root[1].tag == "Speak"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reason": "normal"}, "<Hangup> reason"),
        ({"schedule": 0}, "<Hangup> schedule must be an integer >= 1"),
    ],
)
def test_hangup_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(VobizValidationError, match=message):
        Hangup(**kwargs)


def test_redirect() -> None:
    element = render_one(Redirect("https://example.com/next?x=1&y=2", method="GET"))
    assert element.attrib == {"method": "GET"}
    assert element.text == "https://example.com/next?x=1&y=2"
    with pytest.raises(VobizValidationError, match="<Redirect> url"):
        Redirect("next.xml")


def test_dtmf() -> None:
    element = render_one(DTMF("1234567890*#wW", async_=False))
    assert element.attrib == {"async": "false"}
    assert element.text == "1234567890*#wW"
    assert render_one(DTMF("1")).attrib == {}


@pytest.mark.parametrize("digits", ["", "12a", "1 2", "+1"])
def test_dtmf_rejects_characters_vobiz_would_ignore(digits: str) -> None:
    with pytest.raises(VobizValidationError, match="<DTMF> digits must contain only"):
        DTMF(digits)


# ---------------------------------------------------------------------------- nesting


def test_gather_nests_speak_and_play_only() -> None:
    gather = Gather(action=ACTION)
    gather.speak("Press 1")
    gather.play("https://cdn.example.com/menu.mp3")
    for child in (Gather(action=ACTION), Wait(), Hangup(), PreAnswer(), DTMF("1")):
        with pytest.raises(VobizValidationError, match=r"<Gather> may contain only <Speak>, <Play>"):
            gather.add(child)
    assert not hasattr(gather, "gather")
    assert [c.tag for c in gather.children] == ["Speak", "Play"]


def test_pre_answer_nests_speak_play_wait_only() -> None:
    doc = VobizXML()
    pre = doc.pre_answer()
    pre.speak("Connecting you")
    pre.wait(length=2)
    pre.play("https://cdn.example.com/ring.wav")
    for child in (Gather(action=ACTION), Hangup(), Redirect("https://example.com/x"), PreAnswer()):
        with pytest.raises(VobizValidationError, match="<PreAnswer> may contain only"):
            pre.add(child)
    (element,) = parse(doc.to_xml())
    assert element.tag == "PreAnswer"
    assert element.attrib == {}
    assert [c.tag for c in element] == ["Speak", "Wait", "Play"]


def test_response_refuses_non_verbs() -> None:
    with pytest.raises(VobizValidationError, match="<Response> may contain only"):
        VobizXML().add("<Speak>hi</Speak>")  # type: ignore[arg-type]
    with pytest.raises(VobizValidationError, match="<Response> may contain only"):
        VobizXML().add(VobizXML())


def test_nothing_may_follow_redirect_or_immediate_hangup() -> None:
    doc = VobizXML()
    doc.redirect("https://example.com/next")
    with pytest.raises(VobizValidationError, match="<Speak> after <Redirect> would never run"):
        doc.speak("never heard")
    doc = VobizXML()
    doc.hangup(reason="rejected")
    with pytest.raises(VobizValidationError, match="<Play> after <Hangup> would never run"):
        doc.play("https://cdn.example.com/a.mp3")


def test_mutation_after_building_is_rechecked_at_render() -> None:
    doc = VobizXML()
    gather = doc.gather(action=ACTION)
    gather.speak("Press 1")
    gather.num_digits = 99
    with pytest.raises(VobizValidationError, match="numDigits"):
        doc.validate()
    gather.num_digits = 2
    gather.children.append(Hangup())  # bypasses add()
    with pytest.raises(VobizValidationError, match="<Gather> may contain only"):
        doc.to_xml()
    gather.children.pop()
    doc.validate()
    assert parse(doc.to_xml())[0].get("numDigits") == "2"


# ---------------------------------------------------------------------------- size limit


def test_size_limit_refuses_101_kb_with_the_actual_size() -> None:
    doc = VobizXML()
    doc.speak("a" * (101 * 1024))
    with pytest.raises(VobizValidationError, match=r"<Response> is (\d+) bytes") as excinfo:
        doc.to_xml()
    size = int(excinfo.value.message.split()[2])
    assert size > 101 * 1024
    assert str(MAX_XML_BYTES) in excinfo.value.message


def test_size_limit_counts_utf8_bytes_and_accepts_the_limit_exactly() -> None:
    overhead = len(message_response("x", loop=1).encode("utf-8")) - 1
    fits = message_response("a" * (MAX_XML_BYTES - overhead))
    assert len(fits.encode("utf-8")) == MAX_XML_BYTES
    # One more byte, as a multi-byte character that is a single str character.
    with pytest.raises(VobizValidationError, match=f"is {MAX_XML_BYTES + 2} bytes"):
        message_response("a" * (MAX_XML_BYTES - overhead - 1) + "\u20ac")


# ---------------------------------------------------------------------------- convenience builders


def test_message_response() -> None:
    root = parse(message_response("Backup & restore finished <ok>", voice="MAN", language="en-GB", loop=2))
    (speak,) = root
    assert speak.tag == "Speak"
    assert speak.attrib == {"voice": "MAN", "language": "en-GB", "loop": "2"}
    assert speak.text == "Backup & restore finished <ok>"


def test_message_response_defaults_and_errors() -> None:
    (speak,) = parse(message_response("hi"))
    assert speak.attrib == {"voice": "WOMAN", "language": "en-US", "loop": "1"}
    with pytest.raises(VobizValidationError, match="<Speak> loop"):
        message_response("hi", loop=-1)


def test_gather_response_with_fallback() -> None:
    text = gather_response(
        "Press 1 to approve, 2 to reject",
        action_url=ACTION,
        num_digits=1,
        timeout=15,
        no_input_message="No answer received. Goodbye.",
        voice="MAN",
    )
    gather, fallback = parse(text)
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "action": ACTION,
        "method": "POST",
        "inputType": "dtmf",
        "executionTimeout": "15",
        "finishOnKey": "#",
        "numDigits": "1",
    }
    (prompt,) = gather
    assert (prompt.tag, prompt.text) == ("Speak", "Press 1 to approve, 2 to reject")
    assert prompt.attrib == {"voice": "MAN", "language": "en-US"}
    assert (fallback.tag, fallback.text) == ("Speak", "No answer received. Goodbye.")


def test_gather_response_minimal_and_errors() -> None:
    (gather,) = parse(gather_response("Enter your PIN", action_url=ACTION, finish_on_key=None))
    assert "numDigits" not in gather.attrib
    assert "finishOnKey" not in gather.attrib
    assert gather.get("executionTimeout") == "10"
    with pytest.raises(VobizValidationError, match="executionTimeout"):
        gather_response("x", action_url=ACTION, timeout=2)
    with pytest.raises(VobizValidationError, match="<Gather> action"):
        gather_response("x", action_url="not a url")
