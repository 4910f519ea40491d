"""The emulator's strict VobizXML validator (what makes Vobiz hang up with 8011)."""

from __future__ import annotations

import pytest

from vobiz_provider.testing.emulator.answer_xml import InvalidXmlError, dtmf_is_valid, parse_response
from vobiz_provider.xml import VobizXML


def test_documented_verbs_and_attributes_parse_in_order():
    verbs = parse_response(
        """<?xml version="1.0" encoding="UTF-8"?>
        <Response>
          <PreAnswer><Speak>early</Speak><Wait length="1"/></PreAnswer>
          <Speak voice="MAN" language="en-IN" loop="2">Hello <break time="1s"/> there</Speak>
          <Play loop="1">https://example.com/a.mp3</Play>
          <Gather action="https://example.com/g" method="GET" inputType="dtmf speech" numDigits="4"
                  executionTimeout="10" digitEndTimeout="auto" finishOnKey="*" redirect="false">
            <Speak>Press a key</Speak><Play>https://example.com/b.wav</Play>
          </Gather>
          <DTMF async="false">12w3</DTMF>
          <Wait length="2" silence="true" minSilence="500" beep="false"/>
          <Dial callerId="14155550100" timeout="20"><Number sendDigits="1">14155550102</Number></Dial>
          <Redirect method="POST">https://example.com/next</Redirect>
          <Hangup reason="busy" schedule="5"/>
        </Response>"""
    )
    assert [v.name for v in verbs] == [
        "PreAnswer",
        "Speak",
        "Play",
        "Gather",
        "DTMF",
        "Wait",
        "Dial",
        "Redirect",
        "Hangup",
    ]
    assert verbs[1].text == "Hello there"
    assert [c.name for c in verbs[3].children] == ["Speak", "Play"]
    assert verbs[3].integer("numDigits", 32) == 4
    assert verbs[3].flag("redirect", True) is False


def test_empty_response_is_valid():
    assert parse_response("<Response></Response>") == []
    assert parse_response("<Response/>") == []


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("<Response><GetDigits action='https://e.x/a'/></Response>", "renamed to <Gather>"),
        ("<Response><GetInput action='https://e.x/a'/></Response>", "renamed to <Gather>"),
        ("<Response><Speak timeout='3'>x</Speak></Response>", "unknown attribute"),
        ("<Response><Gather action='https://e.x/a' timeout='5'/></Response>", "unknown attribute"),
        ("<Response><Gather/></Response>", "action"),
        ("<Response><Gather action='https://e.x/a'><Wait/></Gather></Response>", "not allowed in <Gather>"),
        ("<Response><Gather action='https://e.x/a' numDigits='40'/></Response>", "numDigits"),
        ("<Response><Gather action='https://e.x/a' inputType='voice'/></Response>", "inputType"),
        ("<Response><Speak voice='ROBOT'>x</Speak></Response>", "voice"),
        ("<Response><Play>not a url</Play></Response>", "URL"),
        ("<Response><Redirect/></Response>", "URL"),
        ("<Response><Hangup reason='angry'/></Response>", "reason"),
        ("<Response><Wait length='soon'/></Response>", "integer"),
        ("<Response><Record method='PUT'/></Response>", "method"),
        ("<Response><Dial/></Response>", "Number"),
        ("<Response><Number>1</Number></Response>", "not allowed"),
        ("<Response lang='en'/>", "no attributes"),
        ("<Response>text</Response>", "text"),
        ("<Reply/>", "root"),
        ("not xml", "well-formed"),
    ],
)
def test_invalid_documents_are_refused_with_a_reason(document, reason):
    with pytest.raises(InvalidXmlError, match=reason):
        parse_response(document)


def test_dtmf_content_check():
    assert dtmf_is_valid("12#*wW")
    assert not dtmf_is_valid("12a")


def test_documents_built_with_the_provider_builder_are_accepted():
    doc = VobizXML()
    doc.speak("Your order shipped", voice="WOMAN", language="en-US", loop=1)
    menu = doc.gather(action="https://example.com/gather", num_digits=1, execution_timeout=10)
    menu.speak("Press 1 to confirm, 2 to cancel")
    doc.wait(length=2)
    doc.dtmf("1w2", async_=False)
    doc.hangup(reason="rejected", schedule=5)
    doc.redirect("https://example.com/next", method="GET")
    verbs = parse_response(doc.to_xml())
    assert [v.name for v in verbs] == ["Speak", "Gather", "Wait", "DTMF", "Hangup", "Redirect"]
    assert verbs[1].attributes["action"] == "https://example.com/gather"
