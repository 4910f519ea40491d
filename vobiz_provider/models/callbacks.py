"""Models of the form-encoded callbacks Vobiz posts during a call (ring, answer, machine detection, gather,
hangup, and the ``<Dial>`` and ``<Record>`` callbacks).

Fields carry Vobiz's own names as aliases (``CallUUID``, ``HangupCauseCode``, ...) and snake_case Python
names; unknown fields are kept. Times:

* ``StartTime``/``AnswerTime``/``EndTime`` are *local* times ``yyyy-MM-dd HH:mm:ss`` in the account's
  timezone. Pass that timezone to :func:`parse_callback` (``timezone="Asia/Kolkata"``); the models hold UTC
  instants. ``""`` and ``"0"`` mean "never" (e.g. an unanswered call's ``AnswerTime``) and become ``None``.
* ``SessionStart`` is UTC, ``YYYY-MM-DD HH:mm:ss.ffffff``.

:meth:`VobizCallback.to_form` renders a model back into exactly the form fields Vobiz sends; the emulator
posts that, so the receiver and the emulator cannot drift apart.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from vobiz_provider.correlation import CALLBACK_KINDS
from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models._types import (
    LenientDecimal,
    LenientFloat,
    LenientInt,
    LocalDateTime,
    UtcSessionTime,
    blank_to_none,
    resolve_timezone,
)
from vobiz_provider.untrusted import quoted

if TYPE_CHECKING:
    from collections.abc import Mapping

    from typing_extensions import Self

__all__ = [
    "AnswerCallback",
    "CallbackKind",
    "DialActionCallback",
    "DialCallback",
    "GatherCallback",
    "HangupCallback",
    "MachineDetectionCallback",
    "RecordActionCallback",
    "RecordCallback",
    "RingCallback",
    "VobizCallback",
    "carries_free_text",
    "parse_callback",
    "read_callback",
]

CallbackKind = Literal["ring", "answer", "hangup", "machine-detection", "gather", "dial", "record"]


def _form_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


class VobizCallback(BaseModel):
    """The parameters common to every Vobiz call callback; also the model of unrecognised events.

    :param call_uuid: ``CallUUID``.
    :param request_uuid: ``RequestUUID`` (the ``request_uuid`` returned by Make-Call).
    :param a_leg_uuid: ``ALegUUID``.
    :param a_leg_request_uuid: ``ALegRequestUUID``.
    :param from_number: ``From``.
    :param to: ``To``.
    :param direction: ``Direction`` (``outbound``/``inbound``).
    :param event: ``Event`` (``Ring``, ``StartApp``, ``Hangup``, ``MachineDetection``, ...).
    :param call_status: ``CallStatus``.
    :param caller_name: ``CallerName``.
    :param session_start: ``SessionStart`` (UTC).
    :param stir_attestation: ``STIRAttestation``.
    :param stir_verification: ``STIRVerification``.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    #: The receiver route kind of this model (``None`` for the generic base).
    kind: ClassVar[str | None] = None
    _parsed_from_form: bool = PrivateAttr(default=False)
    _blank_values: dict[str, str] = PrivateAttr(default_factory=dict)
    _unreadable: dict[str, str] = PrivateAttr(default_factory=dict)

    call_uuid: str | None = Field(default=None, alias="CallUUID")
    request_uuid: str | None = Field(default=None, alias="RequestUUID")
    a_leg_uuid: str | None = Field(default=None, alias="ALegUUID")
    a_leg_request_uuid: str | None = Field(default=None, alias="ALegRequestUUID")
    from_number: str | None = Field(default=None, alias="From")
    to: str | None = Field(default=None, alias="To")
    direction: str | None = Field(default=None, alias="Direction")
    event: str | None = Field(default=None, alias="Event")
    call_status: str | None = Field(default=None, alias="CallStatus")
    caller_name: str | None = Field(default=None, alias="CallerName")
    session_start: UtcSessionTime = Field(default=None, alias="SessionStart")
    stir_attestation: str | None = Field(default=None, alias="STIRAttestation")
    stir_verification: str | None = Field(default=None, alias="STIRVerification")

    @classmethod
    def from_form(cls, form: Mapping[str, Any], *, timezone: str = "UTC") -> Self:
        """Parse Vobiz's form fields (aliases only) into this model.

        :param form: The form (or query) fields as Vobiz sent them.
        :param timezone: Timezone of the local times (``StartTime``, ...), e.g. ``Asia/Kolkata``.
        :raises VobizValidationError: naming the fields that could not be read.
        """
        try:
            resolve_timezone(timezone)  # fail early and clearly on a bad timezone name
        except ValueError as exc:
            raise VobizValidationError(str(exc)) from None
        try:
            parsed = cls.model_validate(
                dict(form.items()), context={"timezone": timezone}, by_alias=True, by_name=False
            )
        except ValidationError as exc:
            problems = "; ".join(f"{name}: {message}" for name, message in _problems(exc).items())
            raise VobizValidationError(f"invalid {cls.__name__} callback: {problems}") from None
        return parsed._from(form)

    @classmethod
    def read_form(cls, form: Mapping[str, Any], *, timezone: str = "UTC") -> Self:
        """Like :meth:`from_form`, but a value that does not parse leaves its field empty instead of failing.

        What was left empty, and why, is :attr:`unreadable_fields`. For callbacks that are already
        authenticated: the ledger keeps their raw form whatever their values are.

        :param form: The form (or query) fields as Vobiz sent them.
        :param timezone: Timezone of the local times; an unknown one leaves the local times unreadable.
        :raises VobizValidationError: only for a problem no single field explains (none is known).
        """
        values = dict(form.items())
        unreadable: dict[str, str] = {}
        for _ in range(len(values) + 1):
            try:
                parsed = cls.model_validate(
                    values, context={"timezone": timezone}, by_alias=True, by_name=False
                )
            except ValidationError as exc:
                problems = _problems(exc)
                if not problems.keys() <= values.keys():
                    raise VobizValidationError(f"invalid {cls.__name__} callback: {problems}") from None
                unreadable.update(problems)
                for name in problems:
                    del values[name]
                continue
            parsed = parsed._from(form)
            parsed._unreadable = unreadable
            return parsed
        raise VobizValidationError(f"invalid {cls.__name__} callback")  # pragma: no cover - finite form

    def _from(self, form: Mapping[str, Any]) -> Self:
        self._parsed_from_form = True
        # Remember how "no value" was spelled ("" or "0") so that to_form() gives back the same text.
        self._blank_values = {
            key: str(form[key])
            for name, field in type(self).model_fields.items()
            if getattr(self, name) is None and (key := field.alias or name) in form
        }
        return self

    @property
    def unreadable_fields(self) -> Mapping[str, str]:
        """The fields :meth:`read_form` left empty because their value did not parse, each with why."""
        return dict(self._unreadable)

    def to_form(self, *, timezone: str = "UTC") -> dict[str, str]:
        """The form fields exactly as Vobiz sends them (local times rendered in ``timezone``).

        A model parsed with :meth:`from_form` renders exactly the fields it was given (blank ones, such as
        an unanswered call's ``AnswerTime``, as ``""``); a model built in Python renders every field it was
        given plus the fixed ones of its kind (``Event``, ``CallStatus``). Unknown fields are rendered as
        received.

        :param timezone: Timezone to render ``StartTime``/``AnswerTime``/``EndTime`` in.
        """
        resolve_timezone(timezone)
        dumped = self.model_dump(mode="json", by_alias=True, context={"form": True, "timezone": timezone})
        form: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            key = field.alias or name
            value = dumped.get(key)
            given = name in self.model_fields_set
            if not given and (value is None or self._parsed_from_form):
                continue
            form[key] = self._blank_values.get(key, "") if value is None else _form_text(value)
        for key, value in (self.model_extra or {}).items():
            form[key] = _form_text(value)
        return form


class RingCallback(VobizCallback):
    """Posted to ``ring_url`` when the destination starts ringing (``Event=Ring``, ``CallStatus=ringing``)."""

    kind: ClassVar[str | None] = "ring"
    event: str | None = Field(default="Ring", alias="Event")
    call_status: str | None = Field(default="ringing", alias="CallStatus")


class AnswerCallback(VobizCallback):
    """Posted to ``answer_url`` when the call is answered (``Event=StartApp``); Vobiz expects VobizXML back.

    :param forwarded_from: ``ForwardedFrom``, when the call was forwarded.
    """

    kind: ClassVar[str | None] = "answer"
    event: str | None = Field(default="StartApp", alias="Event")
    call_status: str | None = Field(default="in-progress", alias="CallStatus")
    forwarded_from: str | None = Field(default=None, alias="ForwardedFrom")


class MachineDetectionCallback(VobizCallback):
    """Posted to ``machine_detection_url`` (``Event=MachineDetection``).

    :param machine: ``Machine``: whether a machine answered.
    :param if_machine: ``IfMachine``: ``continue`` or ``hangup`` (echoes ``machine_detection``).
    """

    kind: ClassVar[str | None] = "machine-detection"
    event: str | None = Field(default="MachineDetection", alias="Event")
    call_status: str | None = Field(default="in-progress", alias="CallStatus")
    machine: bool | None = Field(default=None, alias="Machine")
    if_machine: str | None = Field(default=None, alias="IfMachine")


class GatherCallback(VobizCallback):
    """Posted to a ``<Gather>`` ``action`` URL. On timeout ``Digits`` and ``Speech`` are empty.

    :param input_type: ``InputType``: ``dtmf`` or ``speech``.
    :param digits: ``Digits`` pressed (without the finish key); ``""`` on timeout.
    :param speech: ``Speech`` recognised.
    :param speech_confidence_score: ``SpeechConfidenceScore`` (0-1).
    :param billed_amount: ``BilledAmount``.
    """

    kind: ClassVar[str | None] = "gather"
    input_type: str | None = Field(default=None, alias="InputType")
    digits: str | None = Field(default=None, alias="Digits")
    speech: str | None = Field(default=None, alias="Speech")
    speech_confidence_score: LenientFloat = Field(default=None, alias="SpeechConfidenceScore")
    billed_amount: LenientDecimal = Field(default=None, alias="BilledAmount")

    @property
    def timed_out(self) -> bool:
        """Whether nothing was entered or said before the gather timed out."""
        return not self.digits and not self.speech


class HangupCallback(VobizCallback):
    """Posted to ``hangup_url`` once per call, when it ends (``Event=Hangup``): the Plivo superset.

    :param start_time: ``StartTime`` (local → UTC).
    :param answer_time: ``AnswerTime`` (local → UTC; ``None`` when never answered).
    :param end_time: ``EndTime`` (local → UTC).
    :param duration: ``Duration``, seconds.
    :param bill_duration: ``BillDuration``, seconds (rounded up to the billing pulse).
    :param bill_rate: ``BillRate``.
    :param total_cost: ``TotalCost``.
    :param hangup_cause: ``HangupCause``: the SIP cause (``NORMAL_CLEARING``) or sometimes the name.
    :param hangup_cause_code: ``HangupCauseCode``, e.g. ``4000``.
    :param hangup_cause_name: ``HangupCauseName``, e.g. ``Normal Hangup``.
    :param hangup_source: ``HangupSource``: ``Caller``, ``Callee``, ``API Request``, ...
    :param stir_verification_lowercase: ``stir_verification`` (as the make-call doc table spells it).
    :param parent_auth_id: ``ParentAuthID``.
    """

    kind: ClassVar[str | None] = "hangup"
    event: str | None = Field(default="Hangup", alias="Event")
    call_status: str | None = Field(default="completed", alias="CallStatus")
    start_time: LocalDateTime = Field(default=None, alias="StartTime")
    answer_time: LocalDateTime = Field(default=None, alias="AnswerTime")
    end_time: LocalDateTime = Field(default=None, alias="EndTime")
    duration: LenientInt = Field(default=None, alias="Duration")
    bill_duration: LenientInt = Field(default=None, alias="BillDuration")
    bill_rate: LenientDecimal = Field(default=None, alias="BillRate")
    total_cost: LenientDecimal = Field(default=None, alias="TotalCost")
    hangup_cause: str | None = Field(default=None, alias="HangupCause")
    hangup_cause_code: LenientInt = Field(default=None, alias="HangupCauseCode")
    hangup_cause_name: str | None = Field(default=None, alias="HangupCauseName")
    hangup_source: str | None = Field(default=None, alias="HangupSource")
    stir_verification_lowercase: str | None = Field(default=None, alias="stir_verification")
    parent_auth_id: str | None = Field(default=None, alias="ParentAuthID")

    @property
    def answered(self) -> bool:
        """Whether the call was ever answered (``AnswerTime`` set)."""
        return self.answer_time is not None

    @property
    def stir_verification_value(self) -> str | None:
        """``STIRVerification`` or, failing that, ``stir_verification``."""
        return self.stir_verification or self.stir_verification_lowercase


class DialCallback(VobizCallback):
    """Posted to a ``<Dial>``'s ``callbackUrl`` for each event of its B leg (docs.vobiz.ai/xml/dial):
    ``Event`` = ``DialAnswer``/``DialConnected``/``DialDigitsMatch``/``DialHangup`` with ``DialAction`` =
    ``answer``/``connected``/``digits``/``hangup``. ``CallUUID`` is the A leg.

    The ``DialBLeg*`` names besides the hangup causes follow Plivo's ``<Dial callbackUrl>`` (Vobiz documents
    the causes: ``DialBLegHangupCause``, ``...Code``, ``...Name``, ``DialBLegHangupSource``).

    :param dial_action: ``DialAction``.
    :param dial_a_leg_uuid: ``DialALegUUID``.
    :param dial_b_leg_uuid: ``DialBLegUUID``.
    :param dial_b_leg_from: ``DialBLegFrom``.
    :param dial_b_leg_to: ``DialBLegTo``.
    :param dial_b_leg_status: ``DialBLegStatus`` (``answer``, ``connected``, ``hangup``).
    :param dial_b_leg_duration: ``DialBLegDuration``, seconds (with ``DialHangup``).
    :param dial_b_leg_bill_duration: ``DialBLegBillDuration``, seconds.
    :param dial_b_leg_hangup_cause: ``DialBLegHangupCause``.
    :param dial_b_leg_hangup_cause_code: ``DialBLegHangupCauseCode``.
    :param dial_b_leg_hangup_cause_name: ``DialBLegHangupCauseName``.
    :param dial_b_leg_hangup_source: ``DialBLegHangupSource``.
    :param dial_digits_match: ``DialDigitsMatch``: the pattern matched (``DialDigitsMatch`` event).
    """

    kind: ClassVar[str | None] = "dial"
    dial_action: str | None = Field(default=None, alias="DialAction")
    dial_a_leg_uuid: str | None = Field(default=None, alias="DialALegUUID")
    dial_b_leg_uuid: str | None = Field(default=None, alias="DialBLegUUID")
    dial_b_leg_from: str | None = Field(default=None, alias="DialBLegFrom")
    dial_b_leg_to: str | None = Field(default=None, alias="DialBLegTo")
    dial_b_leg_status: str | None = Field(default=None, alias="DialBLegStatus")
    dial_b_leg_duration: LenientInt = Field(default=None, alias="DialBLegDuration")
    dial_b_leg_bill_duration: LenientInt = Field(default=None, alias="DialBLegBillDuration")
    dial_b_leg_hangup_cause: str | None = Field(default=None, alias="DialBLegHangupCause")
    dial_b_leg_hangup_cause_code: LenientInt = Field(default=None, alias="DialBLegHangupCauseCode")
    dial_b_leg_hangup_cause_name: str | None = Field(default=None, alias="DialBLegHangupCauseName")
    dial_b_leg_hangup_source: str | None = Field(default=None, alias="DialBLegHangupSource")
    dial_digits_match: str | None = Field(default=None, alias="DialDigitsMatch")


class DialActionCallback(VobizCallback):
    """Posted to a ``<Dial>``'s ``action`` URL once its B leg has ended (docs.vobiz.ai/xml/dial).

    With ``redirect`` (the default) Vobiz runs the XML the URL returns.

    :param dial_status: ``DialStatus``: ``completed``, ``busy``, ``failed``, ``cancel``, ``timeout`` or
        ``no-answer``.
    :param dial_ring_status: ``DialRingStatus``: whether the B leg rang (``true``/``false``).
    :param dial_hangup_cause: ``DialHangupCause``: why the B leg ended.
    :param dial_a_leg_uuid: ``DialALegUUID``.
    :param dial_b_leg_uuid: ``DialBLegUUID`` (empty when no leg was answered).
    """

    kind: ClassVar[str | None] = "dial"
    dial_status: str | None = Field(default=None, alias="DialStatus")
    dial_ring_status: bool | None = Field(default=None, alias="DialRingStatus")
    dial_hangup_cause: str | None = Field(default=None, alias="DialHangupCause")
    dial_a_leg_uuid: str | None = Field(default=None, alias="DialALegUUID")
    dial_b_leg_uuid: str | None = Field(default=None, alias="DialBLegUUID")


class RecordActionCallback(VobizCallback):
    """Posted to a ``<Record>``'s ``action`` URL (docs.vobiz.ai/xml/record): the recording's identity.

    :param recording_id: ``RecordingID``.
    :param record_url: ``RecordUrl``: where the file can be fetched.
    :param recording_duration: ``RecordingDuration``, seconds.
    :param recording_duration_ms: ``RecordingDurationMs``.
    :param recording_start_ms: ``RecordingStartMs`` (epoch milliseconds).
    :param recording_end_ms: ``RecordingEndMs`` (epoch milliseconds).
    """

    kind: ClassVar[str | None] = "record"
    recording_id: str | None = Field(default=None, alias="RecordingID")
    record_url: str | None = Field(default=None, alias="RecordUrl")
    recording_duration: LenientInt = Field(default=None, alias="RecordingDuration")
    recording_duration_ms: LenientInt = Field(default=None, alias="RecordingDurationMs")
    recording_start_ms: LenientInt = Field(default=None, alias="RecordingStartMs")
    recording_end_ms: LenientInt = Field(default=None, alias="RecordingEndMs")


class RecordCallback(RecordActionCallback):
    """Posted to a ``<Record>``'s ``callbackUrl`` when the file is ready (``Event=RecordStop``).

    The fields of :class:`RecordActionCallback`, and:

    :param record_file: ``RecordFile``: the file's URL under another name (the docs give
        ``RecordFile|RecordUrl``).
    :param recording_end_reason: ``RecordingEndReason``: ``RecordingTimeout``, ``maxLength``,
        ``FinishedOnKey`` or ``HungUp``.
    """

    event: str | None = Field(default="RecordStop", alias="Event")
    record_file: str | None = Field(default=None, alias="RecordFile")
    recording_end_reason: str | None = Field(default=None, alias="RecordingEndReason")

    @property
    def url(self) -> str | None:
        """The recording's URL: ``RecordUrl``, else ``RecordFile``."""
        return self.record_url or self.record_file


def _problems(exc: ValidationError) -> dict[str, str]:
    """Each field (by its Vobiz name) a validation error names, with what is wrong with it."""
    problems: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        name = str(err["loc"][0]) if err["loc"] else "form"
        problems[name] = "; ".join(filter(None, (problems.get(name), err["msg"])))
    return problems


_BY_KIND: dict[str, type[VobizCallback]] = {
    "ring": RingCallback,
    "answer": AnswerCallback,
    "hangup": HangupCallback,
    "machine-detection": MachineDetectionCallback,
    "gather": GatherCallback,
    "dial": DialCallback,
    "record": RecordCallback,
}
#: Per route, the model of each payload that route receives, picked by :func:`_payload_model`.
_ACTION_MODELS: Final[tuple[type[VobizCallback], ...]] = (DialActionCallback, RecordActionCallback)
_BY_EVENT: dict[str, type[VobizCallback]] = {
    "ring": RingCallback,
    "startapp": AnswerCallback,
    "hangup": HangupCallback,
    "machinedetection": MachineDetectionCallback,
    "dialanswer": DialCallback,
    "dialconnected": DialCallback,
    "dialdigitsmatch": DialCallback,
    "dialhangup": DialCallback,
    "recordstop": RecordCallback,
}
#: Every form field a callback model declares, by its Vobiz name.
_DECLARED_FIELDS: Final = frozenset(
    field.alias or name
    for model in (*_BY_KIND.values(), *_ACTION_MODELS)
    for name, field in model.model_fields.items()
)
#: The declared fields that hold free text: what the caller said.
_FREE_TEXT_FIELDS: Final = frozenset({"Speech"})


def carries_free_text(name: str) -> bool:
    """Whether the form field ``name`` may hold free text, tab, CR and LF included.

    ``Speech`` (what the caller said) and the fields no model declares (whatever Vobiz adds, custom SIP
    headers) may; every other field Vobiz sends is a UUID, a number, a status, a cause or a time, in which a
    control character has no business.

    :param name: The field's Vobiz name (``HangupCauseName``).
    """
    return name in _FREE_TEXT_FIELDS or name not in _DECLARED_FIELDS


def callback_model(form: Mapping[str, Any], *, kind: str | None = None) -> type[VobizCallback]:
    """The model class for a callback: by ``kind`` if given, else by its ``Event``.

    Gather action posts have no standard ``Event`` but carry ``Digits``/``InputType``; anything else
    unrecognised is a plain :class:`VobizCallback`.

    :param form: The form fields.
    :param kind: ``ring``, ``answer``, ``hangup``, ``machine-detection`` or ``gather`` to force a model.
    :raises VobizValidationError: for an unknown ``kind``.
    """
    if kind is not None:
        normalised = kind.strip().lower().replace("_", "-")
        if normalised not in _BY_KIND:
            raise VobizValidationError(
                f"unknown callback kind {quoted(kind)}; expected one of {', '.join(CALLBACK_KINDS)}"
            )
        return _payload_model(normalised, form)
    event = blank_to_none(form.get("Event"))
    if isinstance(event, str) and event.strip().lower() in _BY_EVENT:
        return _BY_EVENT[event.strip().lower()]
    if "Digits" in form or "InputType" in form:
        return GatherCallback
    if "DialStatus" in form:
        return DialActionCallback
    if "RecordingID" in form:
        return RecordActionCallback
    return VobizCallback


def _payload_model(kind: str, form: Mapping[str, Any]) -> type[VobizCallback]:
    """The model of a callback on route ``kind``: the ``dial`` and ``record`` routes each receive two
    payloads (the verb's ``callbackUrl`` events and its ``action`` post)."""
    if kind == "dial" and "DialStatus" in form:
        return DialActionCallback
    if kind == "record" and str(form.get("Event") or "").strip().lower() != "recordstop":
        return RecordActionCallback
    return _BY_KIND[kind]


def parse_callback(
    form: Mapping[str, Any], *, timezone: str = "UTC", kind: str | None = None
) -> VobizCallback:
    """Parse a callback's form fields into the matching model.

    :param form: The form (or query) fields exactly as Vobiz sent them.
    :param timezone: The account's timezone, for ``StartTime``/``AnswerTime``/``EndTime``.
    :param kind: Force the model (``ring``, ``answer``, ``hangup``, ``machine-detection``, ``gather``);
        by default it follows ``Event``.
    :raises VobizValidationError: when a field cannot be read or the timezone is unknown.
    """
    return callback_model(form, kind=kind).from_form(form, timezone=timezone)


def read_callback(
    form: Mapping[str, Any], *, timezone: str = "UTC", kind: str | None = None
) -> VobizCallback:
    """:func:`parse_callback` for an authenticated callback: a value that does not parse is left empty.

    The fields left empty, and why, are the model's :attr:`~VobizCallback.unreadable_fields`.

    :param form: The form (or query) fields exactly as Vobiz sent them.
    :param timezone: The account's timezone, for ``StartTime``/``AnswerTime``/``EndTime``.
    :param kind: Force the model, as for :func:`parse_callback`.
    :raises VobizValidationError: for an unknown ``kind``.
    """
    return callback_model(form, kind=kind).read_form(form, timezone=timezone)
