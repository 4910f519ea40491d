"""The Make-Call request (``POST /Account/{auth_id}/Call/``) and the call status values.

Every documented Make-Call field is a typed, validated attribute of :class:`MakeCallRequest`, so bad input
is refused with a message naming the field *before* anything is sent to Vobiz. The rules, in one place:

* ``from`` — E.164 digits with an optional ``+``: ``^\\+?[1-9][0-9]{6,14}\\Z`` (7 to 15 ASCII digits, no
  leading 0, nothing after them, not even a newline); a positive Python ``int`` is taken as its digits.
* ``to`` — a list/tuple of destinations or one string with destinations joined by ``<``; 1 to 1000 of
  them; each is an E.164 number as above or a SIP URI ``sip:user@host[:port][;params]``. A comma is
  refused (Vobiz would treat ``a,b`` as one unroutable destination). Stored as ``tuple[str, ...]``.
* URLs (``answer_url``, ``ring_url``, ``hangup_url``, ``fallback_url``, ``machine_detection_url``) —
  absolute ``http``/``https`` URLs with a host, no whitespace. Kept exactly as given (Vobiz signs the URL
  it calls, so it must not be normalised).
* Methods — ``GET`` or ``POST``, any case on input, upper case once stored.
* ``machine_detection`` — ``"true"`` or ``"hangup"``; Python ``True`` means ``"true"``; ``False``/``"false"``
  mean "off" and leave the field out of the request.
* Machine-detection numbers (milliseconds unless noted) — ``machine_detection_time`` 2000-10000,
  ``machine_detection_maximum_speech_length`` 1000-6000, ``machine_detection_initial_silence`` 2000-10000,
  ``machine_detection_maximum_words`` 2-10 (a count), ``machine_detection_initial_greeting`` 1000-5000.
* ``time_limit``, ``hangup_on_ring``, ``ring_timeout`` — whole seconds, greater than 0. Integers may be
  given as numeric strings (``"30"``); they are always sent as JSON integers.
* ``caller_name`` — at most 50 characters.
* ``send_digits`` — the whole string: either DTMF keys with pauses, ``[0-9*#wW]+`` with at least one key
  (``w`` waits 0.5 s, ``W`` waits 1 s; e.g. ``1w2W3``), or the tone form ``[0-9*#]+@[1-9][0-9]*`` (keys
  played as one tone of that many milliseconds; e.g. ``123@1000``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.phone_masking import masked_number
from vobiz_provider.untrusted import quoted

__all__ = [
    "E164_PATTERN",
    "MAX_DESTINATIONS",
    "SEND_DIGITS_PATTERN",
    "SIP_URI_PATTERN",
    "TERMINAL_STATUSES",
    "CallStatus",
    "MakeCallRequest",
]


class CallStatus(str, Enum):
    """The ``CallStatus`` values Vobiz reports (callbacks, live/queued calls, CDRs).

    A ``str`` subclass, so members compare equal to the raw strings (``CallStatus.BUSY == "busy"``).
    Both ``cancel`` (current docs) and ``canceled`` (older docs) occur.
    """

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    TIMEOUT = "timeout"
    CANCEL = "cancel"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


#: Statuses after which a call never changes again.
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {
        CallStatus.COMPLETED.value,
        CallStatus.BUSY.value,
        CallStatus.FAILED.value,
        CallStatus.NO_ANSWER.value,
        CallStatus.TIMEOUT.value,
        CallStatus.CANCEL.value,
        CallStatus.CANCELED.value,
    }
)

#: The most destinations one Make-Call request may carry.
MAX_DESTINATIONS = 1000

# ASCII digits only ("\d" also matches e.g. Arabic-Indic digits) and "\Z", not "$" (which also matches
# before a trailing newline, so "14155551234\n" passed).
E164_PATTERN = re.compile(r"^\+?[1-9][0-9]{6,14}\Z")
SIP_URI_PATTERN = re.compile(
    r"^sip:[A-Za-z0-9_.!~*'()&=+$;?/%-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:;[^\s<>,]*)?\Z"
)
SEND_DIGITS_PATTERN = re.compile(r"^(?=[0-9*#wW]*[0-9*#])[0-9*#wW]+\Z|^[0-9*#]+@[1-9][0-9]*\Z")

_ERROR = "vobiz_invalid"
_MAX_PROBLEMS = 20  # problems listed in one error message (1000 bad destinations would flood the log)


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError(_ERROR, message)


# --------------------------------------------------------------------------------------------------
# Field rules (each used exactly once, by the annotated types below)
# --------------------------------------------------------------------------------------------------


def _digits_as_text(value: Any) -> Any:
    # A number given as a Python int (14155551234) means its digits.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    return value


def _phone_number(value: Any) -> str:
    value = _digits_as_text(value)
    if not isinstance(value, str):
        raise _fail(f"{quoted(value)} is not a string")
    if not E164_PATTERN.match(value):
        raise _fail(
            f"{quoted(masked_number(value))} is not an E.164 number (7-15 digits, optional leading '+')"
        )
    return value


def _destination(value: Any) -> str:
    value = _digits_as_text(value)
    if not isinstance(value, str):
        raise _fail(f"{quoted(value)} is not a string")
    text: str = value.strip()
    if "," in text:
        raise _fail(
            f"{quoted(masked_number(text))} is not an E.164 number or sip: URI "
            "(separate destinations with '<' or pass a list)"
        )
    if E164_PATTERN.match(text) or SIP_URI_PATTERN.match(text):
        return text
    raise _fail(f"{quoted(masked_number(text))} is not an E.164 number or sip: URI")


def _split_destinations(value: Any) -> Any:
    if isinstance(value, str):
        return [] if not value.strip() else value.split("<")
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        return list(value)
    raise _fail(f"expected a list of destinations or a '<'-joined string, got {type(value).__name__}")


def _destination_count(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise _fail("at least one destination is required")
    if len(value) > MAX_DESTINATIONS:
        raise _fail(f"at most {MAX_DESTINATIONS} destinations, got {len(value)}")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(f"{quoted(value)} is not a URL string")
    if not value or any(ch.isspace() for ch in value):
        raise _fail(f"{quoted(value)} is not an absolute http(s) URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise _fail(f"{quoted(value)} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _fail(f"{quoted(value)} is not an http(s) URL")
    if not parts.hostname:
        raise _fail(f"{quoted(value)} has no host")
    return value


def _method(value: Any) -> str:
    if isinstance(value, str) and value.strip().upper() in ("GET", "POST"):
        return value.strip().upper()
    raise _fail(f"{quoted(value)} is not GET or POST")


def _machine_detection(value: Any) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return "true"
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "false":
            return None
        if lowered in ("true", "hangup"):
            return lowered
    raise _fail(f"{quoted(value)} is not 'true' or 'hangup'")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(f"{quoted(value)} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise _fail(f"{quoted(value)} is not an integer")


def _int_range(low: int, high: int | None, unit: str = "") -> Any:
    def check(value: Any) -> int:
        number = _integer(value)
        if number < low or (high is not None and number > high):
            expected = f"between {low} and {high}{unit}" if high is not None else f"greater than {low - 1}"
            raise _fail(f"must be {expected}, got {number}")
        return number

    return BeforeValidator(check)


def _caller_name(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(f"{quoted(value)} is not a string")
    if len(value) > 50:
        raise _fail(f"at most 50 characters, got {len(value)}")
    return value


def _send_digits(value: Any) -> str:
    if not isinstance(value, str) or not SEND_DIGITS_PATTERN.match(value):
        raise _fail(
            f"{quoted(value)} is not a DTMF string: use keys 0-9 * # with w (0.5 s) / W (1 s) pauses, "
            "e.g. '1w2W3', or keys@milliseconds, e.g. '123@1000'"
        )
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail(f"{quoted(value)} is not true or false")


PhoneNumber = Annotated[str, BeforeValidator(_phone_number)]
Destination = Annotated[str, BeforeValidator(_destination)]
Destinations = Annotated[
    tuple[Destination, ...], BeforeValidator(_split_destinations), AfterValidator(_destination_count)
]
HttpUrlStr = Annotated[str, BeforeValidator(_url)]
HttpMethod = Annotated[Literal["GET", "POST"], BeforeValidator(_method)]
MachineDetection = Annotated[Literal["true", "hangup"] | None, BeforeValidator(_machine_detection)]
PositiveSeconds = Annotated[int, _int_range(1, None)]
CallerName = Annotated[str, BeforeValidator(_caller_name)]
SendDigits = Annotated[str, BeforeValidator(_send_digits)]
StrictishBool = Annotated[bool, BeforeValidator(_boolean)]

_PLACEHOLDERS: dict[str, Any] = {
    "from": "14155550100",
    "to": "14155550101",
    "answer_url": "https://placeholder.invalid/answer",
}


class MakeCallRequest(BaseModel):
    """A validated ``POST /Account/{auth_id}/Call/`` body.

    Build it with :meth:`build` (raises :class:`~vobiz_provider.exceptions.VobizValidationError` naming
    every bad field) and send :meth:`to_payload`. Field names are the API's, except ``from_number``
    (API name and alias ``from``). See the module docstring for every rule.

    :param from_number: Caller ID, E.164 (``from``).
    :param to: Destination(s): list or ``<``-joined string of E.164 numbers / ``sip:`` URIs (1..1000).
    :param answer_url: URL Vobiz fetches VobizXML from when the call is answered.
    :param answer_method: ``GET`` or ``POST`` (default ``POST``, always sent).
    :param ring_url: Notified when the call starts ringing.
    :param ring_method: Method of ``ring_url``.
    :param hangup_url: Notified when the call ends.
    :param hangup_method: Method of ``hangup_url``.
    :param fallback_url: Fetched when ``answer_url`` fails.
    :param fallback_method: Method of ``fallback_url``.
    :param machine_detection: ``"true"`` or ``"hangup"`` (``True`` → ``"true"``; ``False`` → off).
    :param machine_detection_time: Detection time, ms, 2000-10000.
    :param machine_detection_url: Asynchronous machine-detection callback URL.
    :param machine_detection_method: Method of ``machine_detection_url``.
    :param machine_detection_maximum_speech_length: ms, 1000-6000.
    :param machine_detection_initial_silence: ms, 2000-10000.
    :param machine_detection_maximum_words: 2-10.
    :param machine_detection_initial_greeting: ms, 1000-5000.
    :param caller_name: Caller name, at most 50 characters.
    :param send_digits: DTMF to send after connect (``1w2W3`` or ``123@1000``).
    :param send_on_preanswer: Send ``send_digits`` during pre-answer.
    :param time_limit: Maximum call duration after answer, seconds (> 0).
    :param hangup_on_ring: Seconds from ring start to hangup (> 0).
    :param ring_timeout: Seconds to ring before giving up (> 0).
    """

    # defer_build: the validator is built on first use (the first static-value check of an operator at
    # DAG-parse time, or the first build at execute), not when the module is imported - so importing
    # this module for the status constants, or a DAG file that ends up not using the model, costs nothing.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    from_number: PhoneNumber = Field(alias="from")
    to: Destinations
    answer_url: HttpUrlStr
    answer_method: HttpMethod = "POST"
    ring_url: HttpUrlStr | None = None
    ring_method: HttpMethod | None = None
    hangup_url: HttpUrlStr | None = None
    hangup_method: HttpMethod | None = None
    fallback_url: HttpUrlStr | None = None
    fallback_method: HttpMethod | None = None
    machine_detection: MachineDetection = None
    machine_detection_time: Annotated[int, _int_range(2000, 10000, " ms")] | None = None
    machine_detection_url: HttpUrlStr | None = None
    machine_detection_method: HttpMethod | None = None
    machine_detection_maximum_speech_length: Annotated[int, _int_range(1000, 6000, " ms")] | None = None
    machine_detection_initial_silence: Annotated[int, _int_range(2000, 10000, " ms")] | None = None
    machine_detection_maximum_words: Annotated[int, _int_range(2, 10)] | None = None
    machine_detection_initial_greeting: Annotated[int, _int_range(1000, 5000, " ms")] | None = None
    caller_name: CallerName | None = None
    send_digits: SendDigits | None = None
    send_on_preanswer: StrictishBool | None = None
    time_limit: PositiveSeconds | None = None
    hangup_on_ring: PositiveSeconds | None = None
    ring_timeout: PositiveSeconds | None = None

    # ---------------------------------------------------------------- construction

    @classmethod
    def build(cls, **fields: Any) -> MakeCallRequest:
        """Validate ``fields`` (API or Python names) into a request.

        :param fields: The Make-Call fields; ``from`` may be given as ``from_number``.
        :raises VobizValidationError: naming every failing field by its API name and what is wrong.
        """
        _check_from_given_once(fields)
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise VobizValidationError(
                f"invalid Make-Call request: {format_validation_errors(exc, cls)}"
            ) from None

    @classmethod
    def validate_fields(cls, **partial_fields: Any) -> None:
        """Validate only the given fields, e.g. static operator arguments at DAG-parse time.

        Applies exactly the rules :meth:`build` applies (required fields that are not given are
        filled with valid placeholders and not reported).

        :param partial_fields: Any subset of the Make-Call fields (API or Python names).
        :raises VobizValidationError: naming every failing given field.
        """
        _check_from_given_once(partial_fields)
        given = {("from" if key == "from_number" else key) for key in partial_fields}
        candidate = dict(partial_fields)
        for name, placeholder in _PLACEHOLDERS.items():
            if name not in given:
                candidate[name] = placeholder
        try:
            cls.model_validate(candidate)
        except ValidationError as exc:
            raise VobizValidationError(
                f"invalid Make-Call request: {format_validation_errors(exc, cls)}"
            ) from None

    # ---------------------------------------------------------------- output

    @property
    def destinations(self) -> tuple[str, ...]:
        """The destinations of this request, in order."""
        return self.to

    def to_payload(self) -> dict[str, Any]:
        """The JSON body for ``POST /Call/``: API names, ``to`` joined with ``<``, ``None`` left out."""
        payload = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        payload["to"] = "<".join(self.to)
        payload["answer_method"] = self.answer_method
        return payload


def _check_from_given_once(fields: Mapping[str, Any]) -> None:
    if "from" in fields and "from_number" in fields:
        raise VobizValidationError(
            "invalid Make-Call request: from: given twice (as 'from' and as 'from_number')"
        )


def _api_name(model: type[BaseModel], name: str) -> str:
    field = model.model_fields.get(name)
    if field is not None and field.alias:
        return field.alias
    return name


def _location(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "request"
    head, *rest = loc
    text = _api_name(model, str(head))
    for part in rest:
        # pydantic adds the union member / validator name to the location of nullable fields
        if isinstance(part, int):
            text += f"[{part}]"
    return text


def _known_names(model: type[BaseModel]) -> list[str]:
    return [_api_name(model, name) for name in model.model_fields]


def format_validation_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    """Render a pydantic ``ValidationError`` as ``field: problem; field: problem`` with API names.

    Never includes pydantic's URL/"input_value" dump; one entry per failing location.

    :param exc: The error raised while validating ``model``.
    :param model: The model class, used to map Python names to API aliases.
    """
    seen: dict[str, str] = {}
    errors = exc.errors(include_url=False)
    for error in errors:
        where = _location(model, tuple(error["loc"]))
        kind = error["type"]
        if kind == _ERROR:
            problem = error["msg"]
        elif kind == "missing":
            problem = "required"
        elif kind == "extra_forbidden":
            problem = "not a Make-Call field"
            import difflib  # only for this hint: keep it off the DAG-parse import path

            close = difflib.get_close_matches(where, _known_names(model), n=1)
            if close:
                problem += f" (did you mean {close[0]!r}?)"
        else:
            problem = str(error["msg"])
            problem = problem[:1].lower() + problem[1:]
        seen.setdefault(where, problem)
    shown = [f"{where}: {problem}" for where, problem in list(seen.items())[:_MAX_PROBLEMS]]
    if len(seen) > _MAX_PROBLEMS:
        shown.append(f"and {len(seen) - _MAX_PROBLEMS} more")
    return "; ".join(shown)
