"""``CallRecord``: what the provider knows about one call, whichever source it came from.

A record is built from the callback store (callbacks and the fired request), from a CDR or from a live or
queued call read through the API. It holds JSON primitives only, so :meth:`CallRecord.to_event` can
become a ``TriggerEvent`` payload and an XCom value unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, field_validator

from vobiz_provider.models.call import TERMINAL_STATUSES
from vobiz_provider.models.hangup_causes import lookup_name
from vobiz_provider.models.responses import Cdr, LiveCall

__all__ = [
    "STATUS_RANK",
    "TERMINAL_RANK",
    "CallRecord",
    "iso_utc",
    "leg_key",
    "normalise_destination",
    "status_for_hangup_cause",
    "status_rank",
]

#: Order of the call states; a call only ever moves up. Every terminal status has :data:`TERMINAL_RANK`.
STATUS_RANK: Final[Mapping[str, int]] = {
    "queued": 0,
    "ringing": 1,
    "in-progress": 2,
    "answered": 2,
    **dict.fromkeys(TERMINAL_STATUSES, 3),
}
TERMINAL_RANK: Final = 3

# Hangup-cause codes (vobiz-api.md §2.4, "Hangup cause codes") that map to a status other than "failed".
# A CDR has no CallStatus, and a hangup callback may omit it, so the status is derived from the code.
_STATUS_BY_CODE: Final[Mapping[int, str]] = {
    4000: "completed",  # Normal Hangup
    4010: "completed",  # End Of XML Instructions
    4020: "completed",  # Multiparty Call Ended
    4030: "completed",  # Kicked Out Of Multiparty Call
    3010: "busy",  # Busy Line
    3020: "busy",  # Rejected (Plivo ends a rejected call "busy"; so does the emulator)
    3100: "busy",  # Busy everywhere
    3000: "no-answer",  # No Answer
    6010: "timeout",  # Ring Timeout Reached
    1000: "cancel",  # Canceled (Hangup API before answer)
}
# The textual SIP causes, for records that carry no code.
_STATUS_BY_CAUSE: Final[Mapping[str, str]] = {
    "NORMAL_CLEARING": "completed",
    "USER_BUSY": "busy",
    "NO_ANSWER": "no-answer",
    "NO_USER_RESPONSE": "no-answer",
    "ORIGINATOR_CANCEL": "cancel",
}


def status_for_hangup_cause(code: int | None, cause: str | None = None, *, answered: bool = False) -> str:
    """The final ``CallStatus`` of a call that ended with this hangup cause.

    A call that was answered ends ``completed`` whatever the cause (a time limit, an answer-URL error and
    a machine hang-up all come after the answer), as Plivo reports it and as the emulator plays it.

    :param answered: Whether the call was answered (an answer time or billed seconds are known).
    :param code: ``HangupCauseCode`` / ``hangup_cause_code`` (e.g. ``4000``).
    :param cause: ``HangupCause`` (e.g. ``NORMAL_CLEARING``, or a cause name such as ``Normal Hangup``),
        used when there is no code.
    """
    if answered:
        return "completed"
    if code is not None:
        return _STATUS_BY_CODE.get(code, "failed")
    if cause:
        by_sip_cause = _STATUS_BY_CAUSE.get(cause.strip().upper())
        if by_sip_cause is not None:
            return by_sip_cause
        # Vobiz sometimes puts the cause *name* ("End Of XML Instructions") in HangupCause.
        named = lookup_name(cause)
        if named is not None:
            return _STATUS_BY_CODE.get(named.code, "failed")
    return "failed"


def status_rank(status: str | None) -> int | None:
    """Rank of a status in the call's life (``None`` for an unknown status, which never moves a call)."""
    if status is None:
        return None
    return STATUS_RANK.get(status.strip().lower())


def iso_utc(value: dt.datetime | None) -> str | None:
    """``value`` as ISO-8601 in UTC with a ``Z`` suffix (naive datetimes are taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    text = value.astimezone(dt.timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def normalise_destination(destination: str | None) -> str:
    """The form destinations are matched in: no spaces, no leading ``+``, SIP URIs lower-cased.

    Vobiz may echo ``+919876543210`` as ``919876543210`` (and the other way round) in callbacks and CDRs.
    """
    if not destination:
        return ""
    value = destination.strip()
    if value.lower().startswith("sip:"):
        return value.lower()
    return value.lstrip("+")


def leg_key(request_uuid: str | None, destination: str | None) -> str | None:
    """``<request_uuid>|<normalised destination>``: one leg of a Make-Call request (``None`` if unknown)."""
    if not request_uuid or not destination:
        return None
    return f"{request_uuid}|{normalise_destination(destination)}"


def _as_mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"expected a mapping or a pydantic model, got {type(value).__name__}")


class CallRecord(BaseModel):
    """The state of one call (one destination of a Make-Call request).

    :param call_uuid: ``CallUUID``; ``None`` until Vobiz reported it.
    :param request_uuid: The ``request_uuid`` Make-Call returned.
    :param to: The destination.
    :param from_number: The caller ID.
    :param status: ``queued``, ``ringing``, ``in-progress`` or a terminal status (``completed``, ``busy``,
        ``failed``, ``no-answer``, ``timeout``, ``cancel``, ``canceled``).
    :param terminal: Whether the call has ended (its status never changes again).
    :param hangup_cause: Textual cause, e.g. ``NORMAL_CLEARING``.
    :param hangup_cause_code: Vobiz cause code, e.g. ``4000``.
    :param hangup_cause_name: Human cause, e.g. ``Normal Hangup``.
    :param hangup_source: ``Caller``, ``Callee``, ``API Request``, ...
    :param duration: Seconds, ring time included.
    :param bill_duration: Billed seconds.
    :param start_time: ISO-8601 UTC.
    :param answer_time: ISO-8601 UTC; ``None`` if never answered.
    :param end_time: ISO-8601 UTC.
    :param machine: Whether machine detection found a machine (``None``: not known).
    :param digits: Digits gathered.
    :param dial_status: How the last ``<Dial>`` of the call ended for its B leg (``DialStatus``:
        ``completed``, ``busy``, ``no-answer``, ``failed``, ``cancel``, ``timeout``).
    :param dial_b_leg_uuid: The B leg's call UUID (``DialBLegUUID``).
    :param dial_hangup_cause: Why the B leg ended (``DialHangupCause``, or the ``DialBLegHangupCause*`` of the
        Dial's ``DialHangup`` event).
    :param recording_url: URL of the call's latest recording (``RecordUrl`` of a ``<Record>``).
    :param dag_id: DAG of the task that placed the call.
    :param run_id: Its run.
    :param task_id: Its task.
    :param map_index: Its map index.
    :param try_number: The try that placed the call.
    :param conn_id: The Vobiz connection used.
    :param source: Where the current state came from: ``fired``, ``callback`` or ``api``.
    :param updated_at: ISO-8601 UTC time of the last change.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_uuid: str | None = None
    request_uuid: str | None = None
    to: str | None = None
    from_number: str | None = None
    status: str = "queued"
    terminal: bool = False
    hangup_cause: str | None = None
    hangup_cause_code: int | None = None
    hangup_cause_name: str | None = None
    hangup_source: str | None = None
    duration: int | None = None
    bill_duration: int | None = None
    start_time: str | None = None
    answer_time: str | None = None
    end_time: str | None = None
    machine: bool | None = None
    digits: str | None = None
    dial_status: str | None = None
    dial_b_leg_uuid: str | None = None
    dial_hangup_cause: str | None = None
    recording_url: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    conn_id: str | None = None
    source: str | None = None
    updated_at: str | None = None

    @field_validator("start_time", "answer_time", "end_time", "updated_at", mode="before")
    @classmethod
    def _datetime_to_iso(cls, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return iso_utc(value)
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _normalise_status(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def rank(self) -> int:
        """Rank of :attr:`status` (see :data:`STATUS_RANK`); unknown statuses rank as queued."""
        return TERMINAL_RANK if self.terminal else (status_rank(self.status) or 0)

    @property
    def leg_key(self) -> str | None:
        """``<request_uuid>|<normalised destination>``: the leg of its Make-Call request."""
        return leg_key(self.request_uuid, self.to)

    @property
    def answered(self) -> bool:
        """Whether the call was answered (an answer time is known or it reached ``in-progress``)."""
        return self.answer_time is not None or self.status == "in-progress"

    def to_event(self) -> dict[str, Any]:
        """The record as a dict of JSON primitives, keys in a fixed order (TriggerEvent payload, XCom)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> CallRecord:
        """Rebuild a record from :meth:`to_event` output (unknown keys are ignored)."""
        return cls.model_validate({key: value for key, value in event.items() if key in cls.model_fields})

    @classmethod
    def from_cdr(cls, cdr: Any, **context: Any) -> CallRecord:
        """Build a final record from a CDR (``GET /cdr/{uuid}``), a ``Cdr`` model or its dict.

        A CDR has no ``CallStatus``: the status is derived from the hangup cause code
        (:func:`status_for_hangup_cause`).

        :param cdr: The ``Cdr`` model, the ``data`` dict, or the whole ``{"data": ..., "success": ...}`` body.
        :param context: Fields the CDR does not hold, e.g. ``dag_id=...``, ``try_number=...``.
        """
        if not isinstance(cdr, Cdr):
            data = _as_mapping(cdr)
            if "uuid" not in data and isinstance(data.get("data"), Mapping):
                data = dict(data["data"])
            cdr = Cdr.model_validate(data)
        answered = cdr.answer_time is not None or bool(cdr.billsec)
        status = status_for_hangup_cause(cdr.hangup_cause_code, cdr.hangup_cause, answered=answered)
        return cls(
            call_uuid=cdr.uuid,
            # Vobiz documents request_uuid == call_uuid; for bulk legs the caller passes request_uuid.
            request_uuid=context.pop("request_uuid", cdr.uuid),
            to=cdr.destination_number,
            from_number=cdr.caller_id_number,
            status=status,
            terminal=True,
            hangup_cause=cdr.hangup_cause,
            hangup_cause_code=cdr.hangup_cause_code,
            hangup_cause_name=cdr.hangup_cause_name,
            hangup_source=cdr.hangup_source,
            duration=cdr.duration,
            bill_duration=cdr.billsec,
            start_time=cdr.start_time,
            answer_time=cdr.answer_time,
            end_time=cdr.end_time,
            source="api",
            updated_at=context.pop("updated_at", iso_utc(dt.datetime.now(dt.timezone.utc))),
            **context,
        )

    @classmethod
    def from_live(cls, call: Any, **context: Any) -> CallRecord:
        """Build a record from a live or queued call (``GET /Call/{uuid}/?status=live|queued``).

        :param call: A ``LiveCall``/``QueuedCall`` model or the response dict (either documented shape).
        :param context: Fields the response does not hold, e.g. ``dag_id=...``.
        """
        if isinstance(call, BaseModel) and hasattr(call, "call_status"):
            data = call.model_dump()
        else:
            data = LiveCall.model_validate(_as_mapping(call)).model_dump()
        status = (data.get("call_status") or "in-progress").strip().lower()
        return cls(
            call_uuid=data.get("call_uuid"),
            request_uuid=context.pop("request_uuid", data.get("request_uuid") or data.get("call_uuid")),
            to=data.get("to"),
            from_number=data.get("from_number"),
            status=status,
            terminal=status in TERMINAL_STATUSES,
            start_time=data.get("session_start"),
            source="api",
            updated_at=context.pop("updated_at", iso_utc(dt.datetime.now(dt.timezone.utc))),
            **context,
        )
