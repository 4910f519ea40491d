"""A small typed builder for VobizXML, the documents an answer URL returns.

Only the attributes Vobiz documents are emitted: Vobiz's validator is reported to hang up with
"Invalid Answer XML" on unknown attributes. Keypad input uses ``<Gather>`` (never Plivo's ``<GetDigits>``)
and its timeout is ``executionTimeout`` (never ``timeout``, which Gather ignores).

.. code-block:: python

    from vobiz_provider.xml import VobizXML

    doc = VobizXML()
    doc.speak("Your order shipped", voice="WOMAN", language="en-US")
    menu = doc.gather(action="https://example.com/gather", num_digits=1, execution_timeout=10)
    menu.speak("Press 1 to confirm, 2 to cancel")
    doc.speak("We did not get your answer. Goodbye.")
    doc.hangup()
    text = doc.to_xml()

Every verb is a small dataclass whose fields carry the camelCase attribute name and a check. Values are
checked when the verb is built and again when the document is rendered, so a field changed afterwards
cannot slip through; every error is a :class:`~vobiz_provider.exceptions.VobizValidationError` naming the
element and the attribute.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field, fields
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from vobiz_provider.exceptions import VobizValidationError

__all__ = [
    "DTMF",
    "MAX_XML_BYTES",
    "XML_DECLARATION",
    "Gather",
    "Hangup",
    "Play",
    "PreAnswer",
    "Redirect",
    "Speak",
    "VobizXML",
    "Wait",
    "gather_response",
    "message_response",
]

#: Vobiz refuses answer documents above 100 KB; counted in bytes of the UTF-8 text, declaration included,
#: with the stricter decimal reading of "KB" so a document accepted here is accepted by Vobiz too.
MAX_XML_BYTES = 100_000

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'

Voice = Literal["WOMAN", "MAN"]
HttpMethod = Literal["GET", "POST"]
InputType = Literal["dtmf", "speech", "dtmf speech"]
SpeechModel = Literal["default", "command_and_search", "phone_call", "telephony"]
HangupReason = Literal["rejected", "busy"]

# XML 1.0 forbids these code points anywhere in a document; ElementTree would write them unescaped.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_DTMF_DIGITS = re.compile(r"^[0-9*#wW]+$")
_FINISH_KEYS = frozenset("0123456789*#")

_V = TypeVar("_V", bound="_Verb")

# A check receives (element tag, attribute name, value) and returns the attribute text.
_Check = Callable[[str, str, Any], str]


def _fail(tag: str, name: str, message: str, value: Any) -> VobizValidationError:
    return VobizValidationError(f"<{tag}> {name} {message}, got {value!r}")


def _text(tag: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(tag, name, "must be a string", value)
    if match := _XML_ILLEGAL.search(value):
        raise _fail(tag, name, f"contains a character XML cannot carry ({match.group()!r})", value)
    return value


def _nonempty_text(tag: str, name: str, value: Any) -> str:
    if not _text(tag, name, value).strip():
        raise _fail(tag, name, "must not be empty", value)
    return value


def _boolean(tag: str, name: str, value: Any) -> str:
    if not isinstance(value, bool):
        raise _fail(tag, name, "must be True or False", value)
    return "true" if value else "false"


def _integer(low: int | None = None, high: int | None = None) -> _Check:
    wanted = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def check(tag: str, name: str, value: Any) -> str:
        # bool is an int subclass; loop=True is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(tag, name, f"must be {wanted}", value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise _fail(tag, name, f"must be {wanted}", value)
        return str(value)

    return check


def _integer_or_auto(low: int, high: int) -> _Check:
    as_integer = _integer(low, high)

    def check(tag: str, name: str, value: Any) -> str:
        if value == "auto":
            return "auto"
        try:
            return as_integer(tag, name, value)
        except VobizValidationError:
            raise _fail(tag, name, f'must be an integer from {low} to {high} or "auto"', value) from None

    return check


def _choice(*allowed: str, normalize: Callable[[str], str] = str) -> _Check:
    def check(tag: str, name: str, value: Any) -> str:
        if isinstance(value, str) and normalize(value) in allowed:
            return normalize(value)
        raise _fail(tag, name, "must be one of " + ", ".join(repr(a) for a in allowed), value)

    return check


_method = _choice("GET", "POST", normalize=str.upper)


def _url(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str):
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc and not re.search(r"\s", value):
            return _text(tag, name, value)
    raise _fail(tag, name, "must be an absolute http(s) URL", value)


def _language(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _LANGUAGE.match(value):
        return value
    raise _fail(tag, name, 'must be a language code such as "en-US"', value)


def _input_type(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str):
        kinds = value.lower().split()
        if kinds and len(set(kinds)) == len(kinds) and set(kinds) <= {"dtmf", "speech"}:
            return "dtmf speech" if len(kinds) == 2 else kinds[0]
    raise _fail(tag, name, "must be 'dtmf', 'speech' or 'dtmf speech'", value)


def _finish_on_key(tag: str, name: str, value: Any) -> str:
    if value == "" or value == "none" or (isinstance(value, str) and value in _FINISH_KEYS):
        return value
    raise _fail(tag, name, 'must be one key of 0-9, * or #, or "" / "none" to disable it', value)


def _hints(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str):
        return _nonempty_text(tag, name, value)
    if isinstance(value, Sequence) and value and all(isinstance(h, str) and h.strip() for h in value):
        return _text(tag, name, ",".join(h.strip() for h in value))
    raise _fail(tag, name, "must be a comma-separated string or a non-empty list of strings", value)


def _dtmf_digits(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _DTMF_DIGITS.match(value):
        return value
    # Vobiz silently ignores a DTMF element with any other character; refuse it instead.
    raise _fail(tag, name, "must contain only 0-9, *, #, w and W", value)


def _attr(name: str, check: _Check) -> dict[str, Any]:
    """Field metadata: the field is rendered as the XML attribute ``name``; ``None`` leaves it out."""
    return {"attr": name, "check": check}


def _content(check: _Check) -> dict[str, Any]:
    """Field metadata: the field is the element's text content."""
    return {"content": check}


class _Verb:
    """Base of every element: renders its checked fields as attributes, content and children."""

    tag: ClassVar[str]

    def __post_init__(self) -> None:
        self._check()

    def _attributes(self) -> dict[str, str]:
        rendered: dict[str, str] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if "attr" in f.metadata and value is not None:
                name = f.metadata["attr"]
                label = name if name == f.name else f"{name} ({f.name})"
                rendered[name] = f.metadata["check"](self.tag, label, value)
        return rendered

    def _content_text(self) -> str | None:
        for f in fields(self):  # type: ignore[arg-type]
            if "content" in f.metadata:
                return f.metadata["content"](self.tag, f.name, getattr(self, f.name))
        return None

    def _check(self) -> None:
        """Raise :class:`VobizValidationError` if an attribute, the content or a child is invalid."""
        self._attributes()
        self._content_text()

    def _to_element(self) -> ET.Element:
        element = ET.Element(self.tag, self._attributes())
        element.text = self._content_text()
        return element


class _Container(_Verb):
    """An element with children; ``allowed`` lists the verbs it may hold."""

    allowed: ClassVar[tuple[type[_Verb], ...]] = ()
    children: list[_Verb]

    def add(self, child: _V) -> _V:
        """Append an already built verb and return it.

        :param child: The verb; it must be allowed inside this element.
        """
        self._check_child(child)
        self.children.append(child)
        return child

    def _check_child(self, child: object) -> None:
        if not isinstance(child, self.allowed):
            allowed = ", ".join(f"<{c.tag}>" for c in self.allowed)
            got = f"<{child.tag}>" if isinstance(child, _Verb) else repr(child)
            raise VobizValidationError(f"<{self.tag}> may contain only {allowed}, got {got}")

    def _check(self) -> None:
        super()._check()
        for child in self.children:
            self._check_child(child)
            child._check()

    def _to_element(self) -> ET.Element:
        element = super()._to_element()
        element.extend(child._to_element() for child in self.children)
        return element


@dataclass(eq=False)
class Speak(_Verb):
    """``<Speak>``: read text (or SSML) to the caller.

    :param text: What to say. Plain text is escaped; with ``ssml=True`` it is parsed as an SSML fragment
        (for example ``Hello <break time="1s"/> there``) and embedded as markup.
    :param voice: ``WOMAN`` (Vobiz's default) or ``MAN``.
    :param language: Language code, for example ``en-US`` (Vobiz's default) or ``hi-IN``.
    :param loop: How many times to say it; ``0`` repeats until the call ends (Vobiz's default is 1).
    :param ssml: Treat ``text`` as SSML markup instead of plain text (not an XML attribute).
    """

    tag: ClassVar[str] = "Speak"

    text: str = field(metadata=_content(_nonempty_text))
    _: KW_ONLY
    voice: Voice | None = field(
        default=None, metadata=_attr("voice", _choice("WOMAN", "MAN", normalize=str.upper))
    )
    language: str | None = field(default=None, metadata=_attr("language", _language))
    loop: int | None = field(default=None, metadata=_attr("loop", _integer(0)))
    ssml: bool = False

    def _ssml_fragment(self) -> ET.Element:
        try:
            return ET.fromstring(f"<speak>{self.text}</speak>")
        except ET.ParseError as err:
            raise VobizValidationError(f"<Speak> content is not well-formed SSML: {err}") from None

    def _check(self) -> None:
        super()._check()
        if self.ssml:
            self._ssml_fragment()

    def _to_element(self) -> ET.Element:
        element = super()._to_element()
        if self.ssml:
            fragment = self._ssml_fragment()
            element.text = fragment.text
            element.extend(fragment)
        return element


@dataclass(eq=False)
class Play(_Verb):
    """``<Play>``: play an MP3 or WAV file to the caller.

    :param url: Absolute http(s) URL of the audio file (Vobiz skips a file it cannot fetch).
    :param loop: How many times to play it; ``0`` repeats until the call ends (Vobiz's default is 1).
    """

    tag: ClassVar[str] = "Play"

    url: str = field(metadata=_content(_url))
    _: KW_ONLY
    loop: int | None = field(default=None, metadata=_attr("loop", _integer(0)))


@dataclass(eq=False)
class Wait(_Verb):
    """``<Wait>``: pause; as the first element it delays answering an inbound call.

    :param length: Seconds to wait (Vobiz's default is 1).
    :param silence: End the wait early once the caller is silent (Vobiz's default is false).
    :param min_silence: Milliseconds of silence that end the wait; only with ``silence=True``.
    :param beep: End the wait on a voicemail beep; only without ``silence`` (Vobiz's default is false).
    """

    tag: ClassVar[str] = "Wait"

    _: KW_ONLY
    length: int | None = field(default=None, metadata=_attr("length", _integer(1)))
    silence: bool | None = field(default=None, metadata=_attr("silence", _boolean))
    min_silence: int | None = field(default=None, metadata=_attr("minSilence", _integer(1)))
    beep: bool | None = field(default=None, metadata=_attr("beep", _boolean))

    def _check(self) -> None:
        super()._check()
        if self.min_silence is not None and self.silence is not True:
            raise VobizValidationError("<Wait> minSilence is used only with silence=True")
        if self.beep and self.silence:
            raise VobizValidationError("<Wait> beep is used only when silence is false")


@dataclass(eq=False)
class Hangup(_Verb):
    """``<Hangup>``: end the call, now or after ``schedule`` seconds.

    :param reason: ``rejected`` or ``busy`` (reported as the hangup cause).
    :param schedule: Seconds after which to hang up while the following verbs run (> 0).
    """

    tag: ClassVar[str] = "Hangup"

    _: KW_ONLY
    reason: HangupReason | None = field(default=None, metadata=_attr("reason", _choice("rejected", "busy")))
    schedule: int | None = field(default=None, metadata=_attr("schedule", _integer(1)))


@dataclass(eq=False)
class Redirect(_Verb):
    """``<Redirect>``: fetch the next document from ``url``; nothing after it runs.

    :param url: Absolute http(s) URL returning VobizXML.
    :param method: ``POST`` (Vobiz's default) or ``GET``.
    """

    tag: ClassVar[str] = "Redirect"

    url: str = field(metadata=_content(_url))
    _: KW_ONLY
    method: HttpMethod | None = field(default=None, metadata=_attr("method", _method))


@dataclass(eq=False)
class DTMF(_Verb):
    """``<DTMF>``: send keypad tones, for example to a remote IVR.

    :param digits: Tones to send: ``0-9``, ``*``, ``#``, and ``w`` / ``W`` for a 0.5 s / 1 s pause.
    :param async_: Send the tones while the next verbs run (Vobiz's default is true); rendered as ``async``.
    """

    tag: ClassVar[str] = "DTMF"

    digits: str = field(metadata=_content(_dtmf_digits))
    _: KW_ONLY
    async_: bool | None = field(default=None, metadata=_attr("async", _boolean))


class _SpeakPlay(_Container):
    """Verb methods shared by every container: ``speak`` and ``play``."""

    def speak(
        self,
        text: str,
        *,
        voice: Voice | None = None,
        language: str | None = None,
        loop: int | None = None,
        ssml: bool = False,
    ) -> Speak:
        """Append a :class:`Speak` and return it; see :class:`Speak` for the parameters."""
        return self._append(Speak(text, voice=voice, language=language, loop=loop, ssml=ssml))

    def play(self, url: str, *, loop: int | None = None) -> Play:
        """Append a :class:`Play` and return it; see :class:`Play` for the parameters."""
        return self._append(Play(url, loop=loop))

    def _append(self, child: _V) -> _V:
        return self.add(child)


class _Waits(_SpeakPlay):
    def wait(
        self,
        *,
        length: int | None = None,
        silence: bool | None = None,
        min_silence: int | None = None,
        beep: bool | None = None,
    ) -> Wait:
        """Append a :class:`Wait` and return it; see :class:`Wait` for the parameters."""
        return self._append(Wait(length=length, silence=silence, min_silence=min_silence, beep=beep))


@dataclass(eq=False)
class Gather(_SpeakPlay):
    """``<Gather>``: collect keypad (DTMF) or speech input and POST it to ``action``.

    Vobiz posts ``Digits`` / ``Speech`` to ``action`` (empty on timeout, then the next verb runs).
    Holds :class:`Speak` and :class:`Play` prompts only.

    :param action: Absolute http(s) URL that receives the input (required).
    :param method: ``POST`` (Vobiz's default) or ``GET``.
    :param input_type: ``dtmf``, ``speech`` or ``dtmf speech``.
    :param execution_timeout: Seconds to wait for input, 5-60 (Vobiz's default is 15).
    :param digit_end_timeout: Seconds between key presses, 2-10 or ``"auto"``.
    :param speech_end_timeout: Seconds of silence ending speech, 2-10 or ``"auto"``.
    :param finish_on_key: Key ending input (Vobiz's default is ``#``); ``""`` or ``"none"`` disables it.
    :param num_digits: Digits to collect, 1-32 (Vobiz's default is 32).
    :param speech_model: ``default``, ``command_and_search``, ``phone_call`` or ``telephony``.
    :param hints: Expected phrases, a comma-separated string or a list of strings.
    :param language: Speech recognition language, for example ``en-US``.
    :param interim_speech_results_callback: URL that receives partial speech results.
    :param interim_speech_results_callback_method: ``POST`` or ``GET`` for that URL.
    :param log: Log the input at Vobiz (Vobiz's default is true).
    :param redirect: Run the document ``action`` returns (Vobiz's default is true).
    :param profanity_filter: Mask profanity in speech results (Vobiz's default is false).
    """

    tag: ClassVar[str] = "Gather"
    allowed: ClassVar[tuple[type[_Verb], ...]] = (Speak, Play)

    _: KW_ONLY
    action: str = field(metadata=_attr("action", _url))
    method: HttpMethod | None = field(default=None, metadata=_attr("method", _method))
    input_type: InputType | None = field(default=None, metadata=_attr("inputType", _input_type))
    execution_timeout: int | None = field(default=None, metadata=_attr("executionTimeout", _integer(5, 60)))
    digit_end_timeout: int | Literal["auto"] | None = field(
        default=None, metadata=_attr("digitEndTimeout", _integer_or_auto(2, 10))
    )
    speech_end_timeout: int | Literal["auto"] | None = field(
        default=None, metadata=_attr("speechEndTimeout", _integer_or_auto(2, 10))
    )
    finish_on_key: str | None = field(default=None, metadata=_attr("finishOnKey", _finish_on_key))
    num_digits: int | None = field(default=None, metadata=_attr("numDigits", _integer(1, 32)))
    speech_model: SpeechModel | None = field(
        default=None,
        metadata=_attr("speechModel", _choice("default", "command_and_search", "phone_call", "telephony")),
    )
    hints: str | Sequence[str] | None = field(default=None, metadata=_attr("hints", _hints))
    language: str | None = field(default=None, metadata=_attr("language", _language))
    interim_speech_results_callback: str | None = field(
        default=None, metadata=_attr("interimSpeechResultsCallback", _url)
    )
    interim_speech_results_callback_method: HttpMethod | None = field(
        default=None, metadata=_attr("interimSpeechResultsCallbackMethod", _method)
    )
    log: bool | None = field(default=None, metadata=_attr("log", _boolean))
    redirect: bool | None = field(default=None, metadata=_attr("redirect", _boolean))
    profanity_filter: bool | None = field(default=None, metadata=_attr("profanityFilter", _boolean))
    children: list[_Verb] = field(default_factory=list, init=False)

    def _check(self) -> None:
        if self.action is None:
            raise VobizValidationError("<Gather> action is required")
        if self.interim_speech_results_callback_method and not self.interim_speech_results_callback:
            raise VobizValidationError(
                "<Gather> interimSpeechResultsCallbackMethod needs interimSpeechResultsCallback"
            )
        super()._check()


@dataclass(eq=False)
class PreAnswer(_Waits):
    """``<PreAnswer>``: early media played before the call is answered (not billed).

    Holds :class:`Speak`, :class:`Play` and :class:`Wait` only; unsupported on WebRTC and some routes.
    """

    tag: ClassVar[str] = "PreAnswer"
    allowed: ClassVar[tuple[type[_Verb], ...]] = (Speak, Play, Wait)

    children: list[_Verb] = field(default_factory=list, init=False)


@dataclass(eq=False)
class VobizXML(_Waits):
    """The ``<Response>`` document: verbs run top to bottom; an empty document is valid.

    Each verb method appends the verb and returns it, so containers (``gather``, ``pre_answer``) can be
    filled in place. ``to_xml()`` (and ``str()``) re-check the whole tree and refuse output above
    :data:`MAX_XML_BYTES`.
    """

    tag: ClassVar[str] = "Response"
    allowed: ClassVar[tuple[type[_Verb], ...]] = (
        Speak,
        Play,
        Wait,
        Gather,
        Hangup,
        Redirect,
        PreAnswer,
        DTMF,
    )

    children: list[_Verb] = field(default_factory=list, init=False)

    def gather(
        self,
        *,
        action: str,
        method: HttpMethod | None = None,
        input_type: InputType | None = None,
        execution_timeout: int | None = None,
        digit_end_timeout: int | Literal["auto"] | None = None,
        speech_end_timeout: int | Literal["auto"] | None = None,
        finish_on_key: str | None = None,
        num_digits: int | None = None,
        speech_model: SpeechModel | None = None,
        hints: str | Sequence[str] | None = None,
        language: str | None = None,
        interim_speech_results_callback: str | None = None,
        interim_speech_results_callback_method: HttpMethod | None = None,
        log: bool | None = None,
        redirect: bool | None = None,
        profanity_filter: bool | None = None,
    ) -> Gather:
        """Append a :class:`Gather` and return it for adding prompts; see :class:`Gather` for parameters."""
        return self._append(
            Gather(
                action=action,
                method=method,
                input_type=input_type,
                execution_timeout=execution_timeout,
                digit_end_timeout=digit_end_timeout,
                speech_end_timeout=speech_end_timeout,
                finish_on_key=finish_on_key,
                num_digits=num_digits,
                speech_model=speech_model,
                hints=hints,
                language=language,
                interim_speech_results_callback=interim_speech_results_callback,
                interim_speech_results_callback_method=interim_speech_results_callback_method,
                log=log,
                redirect=redirect,
                profanity_filter=profanity_filter,
            )
        )

    def hangup(self, *, reason: HangupReason | None = None, schedule: int | None = None) -> Hangup:
        """Append a :class:`Hangup` and return it; see :class:`Hangup` for the parameters."""
        return self._append(Hangup(reason=reason, schedule=schedule))

    def redirect(self, url: str, *, method: HttpMethod | None = None) -> Redirect:
        """Append a :class:`Redirect` and return it; see :class:`Redirect` for the parameters."""
        return self._append(Redirect(url, method=method))

    def pre_answer(self) -> PreAnswer:
        """Append an empty :class:`PreAnswer` and return it for filling."""
        return self._append(PreAnswer())

    def dtmf(self, digits: str, *, async_: bool | None = None) -> DTMF:
        """Append a :class:`DTMF` and return it; see :class:`DTMF` for the parameters."""
        return self._append(DTMF(digits, async_=async_))

    def _check_child(self, child: object) -> None:
        super()._check_child(child)
        # Nothing after a Redirect or an immediate Hangup would ever run: refuse it rather than lose it.
        for earlier in self.children:
            if earlier is child:
                break
            if isinstance(earlier, Redirect) or (isinstance(earlier, Hangup) and earlier.schedule is None):
                raise VobizValidationError(
                    f"<{child.tag}> after <{earlier.tag}> would never run"  # type: ignore[attr-defined]
                )

    def validate(self) -> None:
        """Re-check every verb, the nesting and the size; raise :class:`VobizValidationError` if invalid."""
        self.to_xml()

    def to_xml(self) -> str:
        """Render the document with its XML declaration, after re-checking the whole tree."""
        self._check()
        body = ET.tostring(self._to_element(), encoding="unicode", short_empty_elements=True)
        text = f"{XML_DECLARATION}\n{body}"
        size = len(text.encode("utf-8"))
        if size > MAX_XML_BYTES:
            raise VobizValidationError(
                f"<Response> is {size} bytes; Vobiz accepts at most {MAX_XML_BYTES} bytes (100 KB)"
            )
        return text

    def __str__(self) -> str:
        return self.to_xml()


def message_response(message: str, *, voice: Voice = "WOMAN", language: str = "en-US", loop: int = 1) -> str:
    """A document that speaks ``message`` and ends the call.

    :param message: Text to speak (escaped).
    :param voice: ``WOMAN`` or ``MAN``.
    :param language: Language code, for example ``en-US``.
    :param loop: How many times to say it; ``0`` repeats until the caller hangs up.
    """
    doc = VobizXML()
    doc.speak(message, voice=voice, language=language, loop=loop)
    return doc.to_xml()


def gather_response(
    prompt: str,
    *,
    action_url: str,
    num_digits: int | None = None,
    timeout: int = 10,
    finish_on_key: str | None = "#",
    method: HttpMethod = "POST",
    voice: Voice = "WOMAN",
    language: str = "en-US",
    no_input_message: str | None = None,
) -> str:
    """A keypad prompt: ``<Gather inputType="dtmf">`` around a spoken prompt, then an optional fallback.

    :param prompt: Text spoken while waiting for keys.
    :param action_url: URL that receives ``Digits`` (empty when the caller pressed nothing).
    :param num_digits: Digits to collect, 1-32; ``None`` leaves Vobiz's default (32).
    :param timeout: Seconds to wait for input, 5-60; rendered as ``executionTimeout``.
    :param finish_on_key: Key ending input; ``""`` or ``"none"`` disables it, ``None`` leaves it out.
    :param method: HTTP method for ``action_url``.
    :param voice: Voice of the prompt and of ``no_input_message``.
    :param language: Language of the prompt and of ``no_input_message``.
    :param no_input_message: Spoken after a timeout without input, before the call ends.
    """
    doc = VobizXML()
    menu = doc.gather(
        action=action_url,
        method=method,
        input_type="dtmf",
        execution_timeout=timeout,
        finish_on_key=finish_on_key,
        num_digits=num_digits,
    )
    menu.speak(prompt, voice=voice, language=language)
    if no_input_message is not None:
        doc.speak(no_input_message, voice=voice, language=language)
    return doc.to_xml()
