"""What a call says: AnswerSpec validation and the answer documents it renders (no user-hosted XML)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models.answer import AnswerSpec, GatherSpec, render_answer, render_gather_reply
from vobiz_provider.testing.emulator.answer_xml import parse_response

ACTION = "https://hooks.example.com/vobiz/callbacks/gather?t=abc.def&x=1"
BASE = "https://hooks.example.com/vobiz"
SECRET = "answers-test-secret-0123456789abcdef"


def _children(xml: str) -> list[ET.Element]:
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml.split("\n", 1)[1])
    assert root.tag == "Response"
    return list(root)


# -- rendering ---------------------------------------------------------------------------------------------


def test_message_only_is_spoken_then_the_call_ends() -> None:
    spec = AnswerSpec.build(message="The nightly load failed.", voice="man", language="hi-IN", loop=2)
    speak, hangup = _children(render_answer(spec))
    assert speak.tag == "Speak"
    assert speak.text == "The nightly load failed."
    assert speak.attrib == {"voice": "MAN", "language": "hi-IN", "loop": "2"}
    assert hangup.tag == "Hangup"
    assert hangup.attrib == {}


def test_gather_nests_its_prompt_and_posts_to_the_action_url() -> None:
    spec = AnswerSpec.build(
        gather={"prompt": "Press 1 to confirm, 2 to cancel", "num_digits": 1, "timeout": 20}
    )
    gather, hangup = _children(render_answer(spec, gather_action_url=ACTION))
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "action": ACTION,
        "method": "POST",
        "inputType": "dtmf",
        "executionTimeout": "20",
        "finishOnKey": "#",
        "numDigits": "1",
    }
    (prompt,) = list(gather)
    assert prompt.tag == "Speak"
    assert prompt.text == "Press 1 to confirm, 2 to cancel"
    assert prompt.attrib == {"voice": "WOMAN", "language": "en-US"}
    assert hangup.tag == "Hangup"


def test_message_then_gather_then_no_input_message_then_hangup() -> None:
    spec = AnswerSpec.build(
        message="Disk almost full.",
        gather=GatherSpec(prompt="Press 1 to acknowledge.", no_input_message="No answer. Goodbye."),
    )
    verbs = _children(render_answer(spec, gather_action_url=ACTION))
    assert [verb.tag for verb in verbs] == ["Speak", "Gather", "Speak", "Hangup"]
    assert verbs[0].text == "Disk almost full."
    assert verbs[2].text == "No answer. Goodbye."
    assert "numDigits" not in verbs[1].attrib  # None leaves Vobiz's default


def test_finish_on_key_can_be_disabled_or_left_out() -> None:
    disabled = AnswerSpec.build(gather={"prompt": "Enter the code", "finish_on_key": ""})
    omitted = AnswerSpec.build(gather={"prompt": "Enter the code", "finish_on_key": None})
    assert _children(render_answer(disabled, gather_action_url=ACTION))[0].attrib["finishOnKey"] == ""
    assert "finishOnKey" not in _children(render_answer(omitted, gather_action_url=ACTION))[0].attrib


def test_text_and_urls_are_escaped() -> None:
    hostile = "Tom & Jerry <Hangup/> \"quoted\" 'single' ]]>"
    spec = AnswerSpec.build(message=hostile, gather={"prompt": "<Redirect>x</Redirect>"})
    xml = render_answer(spec, gather_action_url=ACTION)
    assert "<Hangup/>" not in xml and "<Redirect>" not in xml
    assert "&amp;x=1" in xml
    verbs = _children(xml)
    assert [verb.tag for verb in verbs] == ["Speak", "Gather", "Hangup"]
    assert verbs[0].text == hostile
    assert verbs[1][0].text == "<Redirect>x</Redirect>"
    assert verbs[1].attrib["action"] == ACTION


@pytest.mark.parametrize(
    "spec",
    [
        {"message": "Hello"},
        {"gather": {"prompt": "Press 1", "num_digits": 1, "no_input_message": "Bye"}},
        {"message": "Hello", "loop": 3, "gather": {"prompt": "Press 1", "timeout": 60, "finish_on_key": "*"}},
    ],
)
def test_rendered_documents_pass_the_emulators_xml_validator(spec: dict[str, Any]) -> None:
    xml = render_answer(AnswerSpec.build(**spec), gather_action_url=ACTION)
    names = [verb.name for verb in parse_response(xml)]
    assert names[-1] == "Hangup"
    assert ("Gather" in names) == ("gather" in spec)


def test_a_gather_needs_an_action_url() -> None:
    spec = AnswerSpec.build(gather={"prompt": "Press 1"})
    with pytest.raises(VobizValidationError, match="gather_action_url"):
        render_answer(spec)


# -- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({}, "give a message, a gather prompt, or both"),
        ({"message": "   "}, "message: must not be empty"),
        ({"message": 42}, "message: must be a string"),
        ({"message": "bell \x07"}, "message: contains a character XML cannot carry"),
        ({"message": "x", "voice": "CHILD"}, "voice:"),
        ({"message": "x", "language": "english"}, "language: must be a language code"),
        ({"message": "x", "loop": 0}, "loop:"),
        ({"message": "x", "loop": True}, "loop: must be an integer, not a boolean"),
        ({"message": "x", "speed": 2}, "speed: unknown field"),
        ({"gather": {"prompt": "p", "num_digits": 33}}, "gather.num_digits:"),
        ({"gather": {"prompt": "p", "timeout": 4}}, "gather.timeout:"),
        ({"gather": {"prompt": "p", "timeout": 61}}, "gather.timeout:"),
        ({"gather": {"prompt": "p", "finish_on_key": "##"}}, "gather.finish_on_key:"),
        ({"gather": {"num_digits": 1}}, "gather.prompt: required"),
        ({"gather": {"prompt": "p", "no_input_message": ""}}, "gather.no_input_message: must not be empty"),
        ({"message": "x" * 100_001}, "Vobiz accepts at most 100000 bytes"),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(VobizValidationError) as info:
        AnswerSpec.build(**fields)
    assert named in str(info.value)
    assert str(info.value).startswith("invalid spoken message: ")


def test_gather_spec_build_names_its_fields() -> None:
    with pytest.raises(VobizValidationError, match=r"invalid keypad prompt: num_digits: .*; timeout: "):
        GatherSpec.build(prompt="p", num_digits=0, timeout=1)


def test_spec_survives_a_json_round_trip() -> None:
    spec = AnswerSpec.build(
        message="M", voice="MAN", gather={"prompt": "P", "num_digits": 2, "reply_message": None}
    )
    assert AnswerSpec.model_validate(spec.to_json()) == spec


# -- the reply to the gather action ------------------------------------------------------------------------


def test_digits_get_the_reply_and_a_hangup() -> None:
    spec = AnswerSpec.build(language="hi-IN", gather={"prompt": "Press 1", "reply_message": "Noted."})
    speak, hangup = _children(render_gather_reply(spec, digits="1"))
    assert (speak.tag, speak.text, speak.attrib["language"]) == ("Speak", "Noted.", "hi-IN")
    assert hangup.tag == "Hangup"


def test_default_reply_thanks_the_caller_and_none_just_hangs_up() -> None:
    default = AnswerSpec.build(gather={"prompt": "Press 1"})
    silent = AnswerSpec.build(gather={"prompt": "Press 1", "reply_message": None})
    assert _children(render_gather_reply(default, digits="1"))[0].text == "Thank you."
    assert [verb.tag for verb in _children(render_gather_reply(silent, digits="12"))] == ["Hangup"]


@pytest.mark.parametrize("digits", ["", None, "  "])
def test_timeout_answers_an_empty_response_so_the_call_falls_through(digits: str | None) -> None:
    spec = AnswerSpec.build(gather={"prompt": "Press 1", "no_input_message": "Bye"})
    assert _children(render_gather_reply(spec, digits=digits)) == []
