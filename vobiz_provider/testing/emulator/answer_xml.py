"""Strict parsing of VobizXML documents, as Vobiz's validator does it.

Vobiz hangs up with "Invalid Answer XML" (8011) on anything it does not know: an unknown verb, an
attribute that is not documented for the verb, a verb nested where it may not be, or a bad value. Plivo's
``<GetDigits>``/``<GetInput>`` were renamed to ``<Gather>``; whether Vobiz still accepts the old names is
undocumented, so the emulator treats them as unknown (the strict choice).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

__all__ = ["InvalidXmlError", "Verb", "parse_response"]

_BOOL = ("true", "false")
#: The boolean attributes of ``<Conference>``.
_CONFERENCE_SWITCHES = (
    "muted",
    "startConferenceOnEnter",
    "endConferenceOnExit",
    "stayAlone",
    "record",
    "hangupOnStar",
    "floorEvent",
    "redirect",
    "relayDTMF",
)
_METHOD = ("GET", "POST")

#: Documented attributes of each verb.
_ATTRIBUTES: dict[str, frozenset[str]] = {
    "Speak": frozenset({"voice", "language", "loop"}),
    "Play": frozenset({"loop"}),
    "Wait": frozenset({"length", "silence", "minSilence", "beep"}),
    "Gather": frozenset(
        {
            "action",
            "method",
            "inputType",
            "executionTimeout",
            "digitEndTimeout",
            "speechEndTimeout",
            "finishOnKey",
            "numDigits",
            "speechModel",
            "hints",
            "language",
            "interimSpeechResultsCallback",
            "interimSpeechResultsCallbackMethod",
            "log",
            "redirect",
            "profanityFilter",
        }
    ),
    "Hangup": frozenset({"reason", "schedule"}),
    "Redirect": frozenset({"method"}),
    "PreAnswer": frozenset(),
    "DTMF": frozenset({"async"}),
    "Record": frozenset(
        {
            "action",
            "method",
            "fileFormat",
            "redirect",
            "timeout",
            "maxLength",
            "playBeep",
            "finishOnKey",
            "recordSession",
            "startOnDialAnswer",
            "transcriptionType",
            "transcriptionUrl",
            "transcriptionMethod",
            "callbackUrl",
            "callbackMethod",
        }
    ),
    "Dial": frozenset(
        {
            "action",
            "method",
            "callbackUrl",
            "callbackMethod",
            "redirect",
            "callerId",
            "callerName",
            "timeout",
            "timeLimit",
            "hangupOnStar",
            "dialMusic",
            "confirmSound",
            "confirmKey",
            "confirmTimeout",
            "digitsMatch",
            "digitsMatchBLeg",
            "sipHeaders",
        }
    ),
    "Number": frozenset({"sendDigits", "sendOnPreanswer"}),
    "User": frozenset({"sipHeaders"}),
    # Not in the reference notes: the attributes of vobiz-python's add_conference (Plivo's ConferenceElement).
    "Conference": frozenset(
        {
            "muted",
            "enterSound",
            "exitSound",
            "startConferenceOnEnter",
            "endConferenceOnExit",
            "stayAlone",
            "waitSound",
            "maxMembers",
            "record",
            "recordFileFormat",
            "timeLimit",
            "hangupOnStar",
            "action",
            "method",
            "callbackUrl",
            "callbackMethod",
            "digitsMatch",
            "floorEvent",
            "redirect",
            "relayDTMF",
        }
    ),
    "Stream": frozenset(
        {
            "bidirectional",
            "audioTrack",
            "streamTimeout",
            "statusCallbackUrl",
            "statusCallbackMethod",
            "contentType",
            "extraHeaders",
            "keepCallAlive",
            "maxRetries",
        }
    ),
}

#: Verbs allowed directly under <Response>.
_TOP_LEVEL = frozenset(
    {"Dial", "Speak", "Play", "Record", "Gather", "Hangup", "Redirect", "Wait", "Conference", "PreAnswer"}
    | {"DTMF", "Stream"}
)
#: Verbs allowed inside a container verb.
_NESTED: dict[str, frozenset[str]] = {
    "Gather": frozenset({"Speak", "Play"}),
    "PreAnswer": frozenset({"Speak", "Play", "Wait"}),
    "Dial": frozenset({"Number", "User"}),
}
_DTMF_KEYS = re.compile(r"^[0-9*#wW]+$")


class InvalidXmlError(ValueError):
    """The document is not valid VobizXML; the message says why."""


@dataclass(kw_only=True)
class Verb:
    """One parsed verb.

    :param name: Element name (``Speak``, ``Gather``...).
    :param attributes: Its attributes.
    :param text: Its text content (stripped; SSML markup inside ``<Speak>`` is flattened to text).
    :param children: Nested verbs (``Gather``, ``PreAnswer``, ``Dial``).
    """

    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    text: str = ""
    children: list[Verb] = field(default_factory=list)

    def integer(self, name: str, default: int) -> int:
        """An integer attribute (validated at parse time)."""
        value = self.attributes.get(name)
        return default if value is None else int(value)

    def flag(self, name: str, default: bool) -> bool:
        """A boolean attribute (``true``/``false``)."""
        value = self.attributes.get(name)
        return default if value is None else value.lower() == "true"


def parse_response(document: str | bytes) -> list[Verb]:
    """Parse and validate a ``<Response>`` document.

    :param document: The XML text.
    :return: The top-level verbs in order.
    :raises InvalidXmlError: when Vobiz would refuse the document.
    """
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise InvalidXmlError(f"not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise InvalidXmlError(f"the root element must be <Response>, got <{root.tag}>")
    if root.attrib:
        raise InvalidXmlError(f"<Response> takes no attributes, got {sorted(root.attrib)}")
    if (root.text or "").strip():
        raise InvalidXmlError("<Response> must not contain text outside verbs")
    return [_verb(child, parent="Response") for child in root]


def _verb(element: ET.Element, *, parent: str) -> Verb:
    name = element.tag
    allowed = _TOP_LEVEL if parent == "Response" else _NESTED.get(parent, frozenset())
    if not isinstance(name, str) or name not in allowed:
        if name in ("GetDigits", "GetInput"):
            raise InvalidXmlError(f"<{name}> is not a Vobiz verb (it was renamed to <Gather>)")
        where = "<Response>" if parent == "Response" else f"<{parent}>"
        raise InvalidXmlError(f"<{name}> is not allowed in {where}")
    known = _ATTRIBUTES.get(name)
    if known is not None:
        unknown = sorted(set(element.attrib) - known)
        if unknown:
            raise InvalidXmlError(f"<{name}> has unknown attribute(s): {', '.join(unknown)}")
    if name == "Speak":
        text = " ".join("".join(element.itertext()).split())
        verb = Verb(name=name, attributes=dict(element.attrib), text=text)
    else:
        verb = Verb(name=name, attributes=dict(element.attrib), text=(element.text or "").strip())
        if name in _NESTED:
            verb.children = [_verb(child, parent=name) for child in element]
        elif len(element):
            raise InvalidXmlError(f"<{name}> cannot contain <{element[0].tag}>")
    _check_values(verb)
    return verb


def _int_attr(verb: Verb, name: str, low: int | None = None, high: int | None = None) -> None:
    value = verb.attributes.get(name)
    if value is None:
        return
    if not re.fullmatch(r"-?\d+", value.strip()):
        raise InvalidXmlError(f"<{verb.name} {name}> must be an integer, got {value!r}")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidXmlError(f"<{verb.name} {name}> must be between {low} and {high}, got {number}")


def _choice_attr(verb: Verb, name: str, choices: tuple[str, ...], *, upper: bool = False) -> None:
    value = verb.attributes.get(name)
    if value is None:
        return
    if (value.upper() if upper else value.lower()) not in choices:
        raise InvalidXmlError(f"<{verb.name} {name}> must be one of {', '.join(choices)}, got {value!r}")


def _url_text(verb: Verb, value: str | None, what: str) -> None:
    if not value or not re.match(r"^https?://[^\s/]+", value):
        raise InvalidXmlError(f"<{verb.name}> needs an absolute http(s) URL as {what}, got {value!r}")


def _check_values(verb: Verb) -> None:
    name = verb.name
    for attr in ("method", "callbackMethod", "transcriptionMethod", "interimSpeechResultsCallbackMethod"):
        _choice_attr(verb, attr, _METHOD, upper=True)
    if name == "Speak":
        voice = verb.attributes.get("voice")
        if voice is not None and voice not in ("WOMAN", "MAN") and not voice.startswith("Polly."):
            raise InvalidXmlError(f"<Speak voice> must be WOMAN, MAN or Polly.<name>, got {voice!r}")
        _int_attr(verb, "loop", 0, 10000)
    elif name == "Play":
        _int_attr(verb, "loop", 0, 10000)
        _url_text(verb, verb.text, "its content")
    elif name == "Wait":
        _int_attr(verb, "length", 1, 86400)
        _int_attr(verb, "minSilence", 0, 86400000)
        _choice_attr(verb, "silence", _BOOL)
        _choice_attr(verb, "beep", _BOOL)
    elif name == "Gather":
        _url_text(verb, verb.attributes.get("action"), "its action attribute")
        input_type = verb.attributes.get("inputType")
        if input_type is not None and set(input_type.split()) - {"dtmf", "speech"}:
            raise InvalidXmlError(
                f"<Gather inputType> must be dtmf, speech or 'dtmf speech', got {input_type!r}"
            )
        _int_attr(verb, "executionTimeout", 5, 60)
        _int_attr(verb, "numDigits", 1, 32)
        for attr in ("digitEndTimeout", "speechEndTimeout"):
            if verb.attributes.get(attr, "auto") != "auto":
                _int_attr(verb, attr, 2, 10)
        for attr in ("log", "redirect", "profanityFilter"):
            _choice_attr(verb, attr, _BOOL)
        _choice_attr(verb, "speechModel", ("default", "command_and_search", "phone_call", "telephony"))
    elif name == "Hangup":
        _choice_attr(verb, "reason", ("rejected", "busy"))
        _int_attr(verb, "schedule", 1, 86400)
    elif name == "Redirect":
        _url_text(verb, verb.text, "its content")
    elif name == "DTMF":
        _choice_attr(verb, "async", _BOOL)
    elif name == "Record":
        _choice_attr(verb, "fileFormat", ("mp3", "wav"))
        for attr in ("redirect", "playBeep", "recordSession", "startOnDialAnswer"):
            _choice_attr(verb, attr, _BOOL)
        _int_attr(verb, "timeout", 0, 86400)
        _int_attr(verb, "maxLength", 1, 86400)
        _choice_attr(verb, "transcriptionType", ("auto", "hybrid"))
    elif name == "Dial":
        _check_dial(verb)
    elif name == "Number":
        if not re.fullmatch(r"\+?[0-9]{2,15}", verb.text):
            raise InvalidXmlError(f"<Number> must hold a phone number, got {verb.text!r}")
    elif name == "User":
        if not re.fullmatch(r"sips?:[^@\s]+@[^@\s]+", verb.text):
            raise InvalidXmlError(f"<User> must hold a SIP URI, got {verb.text!r}")
    elif name == "Conference":
        if not verb.text:
            raise InvalidXmlError("<Conference> needs the room's name as its content")
        for attr in _CONFERENCE_SWITCHES:
            _choice_attr(verb, attr, _BOOL)
        _int_attr(verb, "maxMembers", 2, 250)
        _int_attr(verb, "timeLimit", 1, 86400)
        _choice_attr(verb, "recordFileFormat", ("mp3", "wav"))
    elif name == "Stream":
        if not re.match(r"^wss?://[^\s/]+", verb.text):
            raise InvalidXmlError(f"<Stream> needs an absolute ws(s) URL as its content, got {verb.text!r}")
        for attr in ("bidirectional", "keepCallAlive"):
            _choice_attr(verb, attr, _BOOL)
        _choice_attr(verb, "audioTrack", ("inbound", "outbound", "both"))
        _choice_attr(verb, "contentType", _STREAM_CONTENT_TYPES)
        _int_attr(verb, "streamTimeout", 1, 86400)
        _int_attr(verb, "maxRetries", 0, 100)
    for attr in (
        "action",
        "callbackUrl",
        "transcriptionUrl",
        "statusCallbackUrl",
        "confirmSound",
        "waitSound",
    ):
        if attr in verb.attributes:
            _url_text(verb, verb.attributes[attr], f"its {attr} attribute")


_URL_ATTRIBUTES = (
    "action",
    "callbackUrl",
    "transcriptionUrl",
    "statusCallbackUrl",
    "confirmSound",
    "waitSound",
)
_STREAM_CONTENT_TYPES = (
    "audio/x-l16;rate=8000",
    "audio/x-l16;rate=16000",
    "audio/x-l16;rate=24000",
    "audio/x-mulaw;rate=8000",
)


def _check_dial(verb: Verb) -> None:
    if not verb.children:
        raise InvalidXmlError("<Dial> needs at least one <Number> or <User>")
    for attr in ("redirect", "hangupOnStar"):
        _choice_attr(verb, attr, _BOOL)
    _int_attr(verb, "timeout", 1, 86400)
    _int_attr(verb, "timeLimit", 1, 86400)
    _int_attr(verb, "confirmTimeout", 1, 86400)
    caller_id = verb.attributes.get("callerId")
    if caller_id is not None and not re.fullmatch(r"\+?[0-9]{2,15}", caller_id):
        raise InvalidXmlError(f"<Dial callerId> must be a phone number, got {caller_id!r}")


def dtmf_is_valid(text: str) -> bool:
    """Whether ``<DTMF>`` content is playable (otherwise Vobiz ignores the element)."""
    return bool(_DTMF_KEYS.match(text))
