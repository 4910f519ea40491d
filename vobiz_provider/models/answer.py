"""What a call says when it is answered: :class:`AnswerSpec` (a message and/or a keypad prompt) and the
VobizXML it renders to.

A task that places a call without an ``answer_url`` of its own (``VobizCallOperator(message=...)``,
:class:`~vobiz_provider.notifications.vobiz.VobizNotifier`) stores an :class:`AnswerSpec` in the call ledger
under its correlation token before dialling; the callback receiver serves :func:`render_answer` when Vobiz
fetches the answer URL, and :func:`render_gather_reply` when Vobiz posts the keys pressed.

.. code-block:: python

    spec = AnswerSpec.build(
        message="The nightly load failed.",
        gather={"prompt": "Press 1 to acknowledge.", "num_digits": 1, "timeout": 10},
    )
    xml = render_answer(spec, gather_action_url="https://airflow.example.com/vobiz/callbacks/gather?t=...")
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.xml import Speak, VobizXML

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

__all__ = [
    "DEFAULT_REPLY_MESSAGE",
    "AnswerSpec",
    "ConnectSpec",
    "GatherSpec",
    "render_answer",
    "render_gather_reply",
]

#: Spoken after the caller pressed keys, before the call ends.
DEFAULT_REPLY_MESSAGE: Final = "Thank you."

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# Only used to check that a spec renders (size, nesting); never sent anywhere.
_PLACEHOLDER_ACTION: Final = "https://receiver.invalid/vobiz/callbacks/gather"
_PLACEHOLDER_DIAL: Final = "https://receiver.invalid/vobiz/callbacks/dial"
_PLACEHOLDER_RECORD: Final = "https://receiver.invalid/vobiz/callbacks/record"
_KEYS = re.compile(r"^[0-9*#]{1,32}$")


def _strict_int(value: Any) -> Any:
    # bool is an int subclass: num_digits=True is a mistake, not 1.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


def _speakable(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value.strip():
        raise ValueError("must not be empty")
    try:
        Speak(value)  # the same checks the XML builder applies (characters XML cannot carry)
    except VobizValidationError as err:
        raise ValueError(str(err).removeprefix("<Speak> text ")) from None
    return value


def _voice(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _language(value: Any) -> Any:
    if isinstance(value, str) and _LANGUAGE.match(value.strip()):
        return value.strip()
    raise ValueError('must be a language code such as "en-US"')


def _finish_on_key(value: Any) -> Any:
    if value is None or value in ("", "none") or (isinstance(value, str) and value in set("0123456789*#")):
        return value
    raise ValueError('must be one key of 0-9, * or #, or "" / "none" to disable it')


SpeakableText = Annotated[str, BeforeValidator(_speakable)]
OptionalSpeakableText = Annotated[str | None, BeforeValidator(_speakable)]
StrictInt = Annotated[int, BeforeValidator(_strict_int)]


def _format_errors(exc: ValidationError) -> str:
    problems: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        parts = [str(part) for part in error["loc"] if not str(part).startswith("function-")]
        where = ".".join(parts) or "spec"
        if error["type"] == "missing":
            problem = "required"
        elif error["type"] == "extra_forbidden":
            problem = "unknown field"
        else:
            problem = error["msg"].removeprefix("Value error, ")
            problem = problem[:1].lower() + problem[1:]
        problems.setdefault(where, problem)
    return "; ".join(f"{where}: {problem}" for where, problem in problems.items())


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: What the spec is called in error messages.
    _what: ClassVar[str] = "spec"

    @classmethod
    def build(cls, **fields: Any) -> Self:
        """Validate ``fields`` into a spec.

        :raises VobizValidationError: naming every failing field (``gather.num_digits: ...``).
        """
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise VobizValidationError(f"invalid {cls._what}: {_format_errors(exc)}") from None


def _phone(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\+?[0-9]{2,15}", value.strip()):
        return value.strip()
    raise ValueError("must be a phone number in E.164 form, e.g. +14155550122")


def _optional_phone(value: Any) -> Any:
    return None if value is None else _phone(value)


class ConnectSpec(_Spec):
    """Connect the caller to another number (``<Dial>``) after they pressed given keys.

    The B leg's outcome (``DialStatus``, its call UUID and hangup cause) reaches the call record through the
    receiver's ``dial`` route; with ``record``, the URL of the bridged conversation's recording too.

    :param to: The number to connect to, E.164 (``+14155550122``).
    :param message: Said before dialling (``None``: nothing).
    :param caller_id: Caller ID shown to ``to``: a number you own at Vobiz (``None``: the call's own).
    :param timeout: Seconds ``to`` rings before giving up, 5-120.
    :param record: Record the conversation once ``to`` answers.
    """

    _what: ClassVar[str] = "connection"

    to: Annotated[str, BeforeValidator(_phone)]
    message: OptionalSpeakableText = "Connecting you now."
    caller_id: Annotated[str | None, BeforeValidator(_optional_phone)] = None
    timeout: Annotated[StrictInt, Field(ge=5, le=120)] = 30
    record: bool = False


def _connect_keys(value: Any) -> Any:
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or not _KEYS.match(key):
                raise ValueError(f"keys must be the digits pressed (0-9, * and #), got {key!r}")
    return value


class GatherSpec(_Spec):
    """A keypad prompt: ``<Gather inputType="dtmf">`` around a spoken prompt.

    :param prompt: Said while Vobiz waits for keys, e.g. ``"Press 1 to confirm, 2 to cancel"``.
    :param num_digits: Keys to collect, 1-32; ``None`` leaves Vobiz's default (32, ended by ``finish_on_key``
        or the timeout).
    :param timeout: Seconds to wait for input, 5-60 (rendered as ``executionTimeout``).
    :param finish_on_key: Key that ends the input (``#``); ``""`` or ``"none"`` disables it.
    :param no_input_message: Said when the caller pressed nothing before the timeout; the call then ends.
    :param reply_message: Said after the caller pressed keys, before the call ends (``None``: just hang up).
    :param connect: Keys pressed → a :class:`ConnectSpec` (or its fields): pressing them connects the
        caller to that number instead of ending the call, e.g. ``{"2": {"to": "+14155550122"}}``.
    """

    _what: ClassVar[str] = "keypad prompt"

    prompt: SpeakableText
    num_digits: Annotated[StrictInt | None, Field(ge=1, le=32)] = None
    timeout: Annotated[StrictInt, Field(ge=5, le=60)] = 10
    finish_on_key: Annotated[str | None, BeforeValidator(_finish_on_key)] = "#"
    no_input_message: OptionalSpeakableText = None
    reply_message: OptionalSpeakableText = DEFAULT_REPLY_MESSAGE
    connect: Annotated[dict[str, ConnectSpec], BeforeValidator(_connect_keys)] = Field(default_factory=dict)


class AnswerSpec(_Spec):
    """What a call says when it is answered: a message, a keypad prompt, or both (message first).

    Build it with :meth:`build` to get a :class:`~vobiz_provider.exceptions.VobizValidationError` naming the
    field; it is stored as JSON (``model_dump(mode="json")``) in the callback store.

    :param message: Text spoken when the call is answered.
    :param voice: ``WOMAN`` (Vobiz's default) or ``MAN``; used for every spoken text.
    :param language: Language code, e.g. ``en-US`` or ``hi-IN``; used for every spoken text.
    :param loop: How many times the message is said (at least 1).
    :param gather: A keypad prompt (a :class:`GatherSpec` or its fields as a dict), said after the message.
    """

    _what: ClassVar[str] = "spoken message"

    message: OptionalSpeakableText = None
    voice: Annotated[Literal["WOMAN", "MAN"], BeforeValidator(_voice)] = "WOMAN"
    language: Annotated[str, BeforeValidator(_language)] = "en-US"
    loop: Annotated[StrictInt, Field(ge=1)] = 1
    gather: GatherSpec | None = None

    @model_validator(mode="after")
    def _check_document(self) -> AnswerSpec:
        if self.message is None and self.gather is None:
            raise ValueError("give a message, a gather prompt, or both")
        # The size limit (100 KB) and the nesting are the XML builder's to judge: render it once.
        try:
            render_answer(self, gather_action_url=_PLACEHOLDER_ACTION)
            for keys in self.gather.connect if self.gather is not None else ():
                render_gather_reply(
                    self,
                    digits=keys,
                    dial_callback_url=_PLACEHOLDER_DIAL,
                    record_callback_url=_PLACEHOLDER_RECORD,
                )
        except VobizValidationError as err:
            raise ValueError(str(err)) from None
        return self

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON primitives (what the store keeps)."""
        return self.model_dump(mode="json")


def render_answer(spec: AnswerSpec, *, gather_action_url: str | None = None) -> str:
    """The VobizXML served at the answer URL.

    ``<Speak>`` the message; then the ``<Gather>`` with its prompt nested and ``action=gather_action_url``;
    then the no-input message (reached only when the caller pressed nothing); then ``<Hangup/>``.

    :param spec: What to say and gather.
    :param gather_action_url: Where Vobiz posts the digits (the receiver's ``gather`` route); required when
        ``spec.gather`` is set.
    :raises VobizValidationError: When the document is invalid (e.g. no action URL for a gather).
    """
    doc = VobizXML()
    if spec.message is not None:
        doc.speak(spec.message, voice=spec.voice, language=spec.language, loop=spec.loop)
    gather = spec.gather
    if gather is not None:
        if gather_action_url is None:
            raise VobizValidationError(
                "a keypad prompt needs gather_action_url (where Vobiz posts the digits)"
            )
        menu = doc.gather(
            action=gather_action_url,
            method="POST",
            input_type="dtmf",
            execution_timeout=gather.timeout,
            finish_on_key=gather.finish_on_key,
            num_digits=gather.num_digits,
        )
        menu.speak(gather.prompt, voice=spec.voice, language=spec.language)
        if gather.no_input_message is not None:
            doc.speak(gather.no_input_message, voice=spec.voice, language=spec.language)
    doc.hangup()
    return doc.to_xml()


def render_gather_reply(
    spec: AnswerSpec,
    *,
    digits: str | None,
    dial_callback_url: str | None = None,
    record_callback_url: str | None = None,
) -> str:
    """The VobizXML answered to the ``<Gather>`` action post.

    With digits that ``spec.gather.connect`` names: its message, an optional ``<Record>`` of the bridge,
    the ``<Dial>`` (its ``action`` and ``callbackUrl`` both ``dial_callback_url``, ``redirect="false"``) and
    ``<Hangup/>``. With other digits: the reply message (if any) and ``<Hangup/>``. Without (Vobiz posts an
    empty ``Digits`` when the prompt times out, then goes on with the verbs after the ``<Gather>``): an
    empty ``<Response/>``, so the no-input message and the hangup of the answer document still run.

    :param spec: The call's spec.
    :param digits: The ``Digits`` field as posted (``None`` or empty on timeout).
    :param dial_callback_url: Where Vobiz posts the ``<Dial>`` outcome and events (the receiver's
        ``dial`` route); required when the digits connect the caller.
    :param record_callback_url: Where Vobiz posts the recording (the receiver's ``record`` route);
        required when that connection is recorded.
    """
    doc = VobizXML()
    pressed = (digits or "").strip()
    if not pressed or spec.gather is None:
        return doc.to_xml()
    connect = spec.gather.connect.get(pressed)
    if connect is not None:
        if dial_callback_url is None or (connect.record and record_callback_url is None):
            raise VobizValidationError("connecting the caller needs the receiver's dial (and record) URLs")
        if connect.message is not None:
            doc.speak(connect.message, voice=spec.voice, language=spec.language)
        if connect.record:
            doc.record(
                record_session=True,
                start_on_dial_answer=True,
                callback_url=record_callback_url,
                callback_method="POST",
            )
        dial = doc.dial(
            action=dial_callback_url,
            method="POST",
            callback_url=dial_callback_url,
            callback_method="POST",
            redirect=False,
            caller_id=connect.caller_id,
            timeout=connect.timeout,
        )
        dial.number(connect.to)
        doc.hangup()
        return doc.to_xml()
    if spec.gather.reply_message is not None:
        doc.speak(spec.gather.reply_message, voice=spec.voice, language=spec.language)
    doc.hangup()
    return doc.to_xml()
