"""The verbs of VobizXML: the ``_Verb`` / ``_Container`` bases and every element a document may hold."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import KW_ONLY, dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.xml.checks import (
    _attr,
    _boolean,
    _choice,
    _content,
    _dtmf_digits,
    _finish_on_key,
    _hints,
    _input_type,
    _integer,
    _integer_or_auto,
    _language,
    _method,
    _nonempty_text,
    _url,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DTMF", "Gather", "Hangup", "Play", "PreAnswer", "Redirect", "Speak", "Wait"]

Voice = Literal["WOMAN", "MAN"]
HttpMethod = Literal["GET", "POST"]
InputType = Literal["dtmf", "speech", "dtmf speech"]
SpeechModel = Literal["default", "command_and_search", "phone_call", "telephony"]
HangupReason = Literal["rejected", "busy"]

_V = TypeVar("_V", bound="_Verb")


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
                content: str = f.metadata["content"](self.tag, f.name, getattr(self, f.name))
                return content
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
