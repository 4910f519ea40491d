"""The ``<Response>`` document (:class:`VobizXML`) and the two ready-made documents built with it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.xml.bridges import Conference, Dial
from vobiz_provider.xml.media import Record, Stream
from vobiz_provider.xml.verbs import (
    DTMF,
    Gather,
    Hangup,
    HangupReason,
    HttpMethod,
    InputType,
    Play,
    PreAnswer,
    Redirect,
    Speak,
    SpeechModel,
    Voice,
    Wait,
    _Verb,
    _Waits,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MAX_XML_BYTES", "XML_DECLARATION", "VobizXML", "gather_response", "message_response"]

#: Vobiz refuses answer documents above 100 KB; counted in bytes of the UTF-8 text, declaration included,
#: with the stricter decimal reading of "KB" so a document accepted here is accepted by Vobiz too.
MAX_XML_BYTES = 100_000

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


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
        Dial,
        Record,
        Conference,
        Stream,
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

    def dial(self, **attributes: Any) -> Dial:
        """Append an empty :class:`Dial` and return it for adding :meth:`Dial.number` / :meth:`Dial.user`.

        :param attributes: The :class:`Dial` attributes, e.g. ``callback_url=..., timeout=30``.
        """
        return self._append(Dial(**attributes))

    def record(self, **attributes: Any) -> Record:
        """Append a :class:`Record` and return it.

        :param attributes: The :class:`Record` attributes, e.g. ``callback_url=..., max_length=120``.
        """
        return self._append(Record(**attributes))

    def conference(self, name: str, **attributes: Any) -> Conference:
        """Append a :class:`Conference` and return it.

        :param name: The room's name.
        :param attributes: The other :class:`Conference` attributes.
        """
        return self._append(Conference(name, **attributes))

    def stream(self, url: str, **attributes: Any) -> Stream:
        """Append a :class:`Stream` and return it.

        :param url: The ``wss://`` URL of the WebSocket server.
        :param attributes: The other :class:`Stream` attributes.
        """
        return self._append(Stream(url, **attributes))

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
        for child in self.children:
            if isinstance(child, Dial):
                child.check_parties()
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
