"""Vobiz's hangup causes (docs.vobiz.ai/concepts/hangup-causes) and the call outcomes the emulator plays.

Each cause has Vobiz's numeric code and name (``HangupCauseCode``/``HangupCauseName``), its group in the
documented table, and a textual SIP cause (``HangupCause``, e.g. ``NORMAL_CLEARING``). Vobiz documents the
two lists separately and does not pair them; the pairing below is the natural one (busy → ``USER_BUSY``,
...) and is what the emulator sends.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import TYPE_CHECKING

from vobiz_provider.models.call import CallStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "HANGUP_CAUSES",
    "HANGUP_SOURCES",
    "OUTCOMES",
    "SIP_CAUSES",
    "HangupCause",
    "OutcomePreset",
    "describe_hangup_cause",
    "lookup",
    "lookup_name",
]

#: The textual SIP causes Vobiz documents for ``HangupCause``.
SIP_CAUSES: frozenset[str] = frozenset(
    {
        "NORMAL_CLEARING",
        "USER_BUSY",
        "NO_ANSWER",
        "ORIGINATOR_CANCEL",
        "CALL_REJECTED",
        "REJECTED",
        "INVALID_NUMBER",
        "UNALLOCATED_NUMBER",
        "SERVICE_UNAVAILABLE",
        "SERVER_ERROR",
        "MEDIA_TIMEOUT",
        "PROTOCOL_ERROR",
        "NETWORK_OUT_OF_ORDER",
        "DESTINATION_OUT_OF_ORDER",
        "NORMAL_TEMPORARY_FAILURE",
        "SWITCH_CONGESTION",
        "UNKNOWN",
        "LOSE_RACE",  # documented on <Dial> for the losing legs of a simultaneous dial (code 9000)
    }
)

#: The documented ``HangupSource`` values (``Callee`` on the call-object page, ``Call recipient`` on the
#: hangup-causes page).
HANGUP_SOURCES: tuple[str, ...] = (
    "Caller",
    "Callee",
    "Call recipient",
    "Vobiz",
    "Carrier",
    "API Request",
    "Answer XML",
    "Error",
    "Unknown",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HangupCause:
    """One row of Vobiz's hangup-cause table.

    :param code: ``HangupCauseCode``, e.g. ``4000``.
    :param name: ``HangupCauseName``, e.g. ``Normal Hangup``.
    :param sip_cause: The textual ``HangupCause`` sent with it, e.g. ``NORMAL_CLEARING``.
    :param group: The table's group: ``Normal``, ``Canceled``, ``Destination``, ``Rejections``,
        ``Carrier``, ``System``, ``Timeouts``, ``URL errors``, ``XML errors`` or ``Special``.
    """

    code: int
    name: str
    sip_cause: str
    group: str


def _causes(group: str, *rows: tuple[int, str, str]) -> list[HangupCause]:
    return [HangupCause(code=code, name=name, sip_cause=sip, group=group) for code, name, sip in rows]


_TABLE: list[HangupCause] = [
    *_causes(
        "Normal",
        (4000, "Normal Hangup", "NORMAL_CLEARING"),
        (4010, "End Of XML Instructions", "NORMAL_CLEARING"),
        (4020, "Multiparty Call Ended", "NORMAL_CLEARING"),
        (4030, "Kicked Out Of Multiparty Call", "NORMAL_CLEARING"),
    ),
    *_causes(
        "Canceled",
        (0, "Unknown", "UNKNOWN"),
        (1000, "Canceled", "ORIGINATOR_CANCEL"),
        (1010, "Canceled (Out Of Credits)", "ORIGINATOR_CANCEL"),
        (1020, "Canceled (Simultaneous dial limit reached)", "ORIGINATOR_CANCEL"),
    ),
    *_causes(
        "Destination",
        (2000, "Invalid Destination Address", "INVALID_NUMBER"),
        (2010, "Destination Out Of Service", "DESTINATION_OUT_OF_ORDER"),
        (2020, "Endpoint Not Registered", "DESTINATION_OUT_OF_ORDER"),
        (2030, "Destination Country Barred", "CALL_REJECTED"),
        (2040, "Destination Number Barred", "CALL_REJECTED"),
        (2050, "Destination Prefix Barred", "CALL_REJECTED"),
        (2060, "Loop Detected", "PROTOCOL_ERROR"),
        (2070, "Violates Media Anchoring", "SERVICE_UNAVAILABLE"),
    ),
    *_causes(
        "Rejections",
        (3000, "No Answer", "NO_ANSWER"),
        (3010, "Busy Line", "USER_BUSY"),
        (3020, "Rejected", "CALL_REJECTED"),
        (3030, "Unknown Caller ID", "CALL_REJECTED"),
        (3040, "Forbidden", "CALL_REJECTED"),
        (3050, "Unallocated number", "UNALLOCATED_NUMBER"),
    ),
    *_causes(
        "Carrier",
        (3070, "Request timeout", "NORMAL_TEMPORARY_FAILURE"),
        (3080, "Carrier internal error", "SERVER_ERROR"),
        (3090, "Network congestion", "SWITCH_CONGESTION"),
        (3100, "Busy everywhere", "USER_BUSY"),
        (3110, "Declined", "CALL_REJECTED"),
        (3120, "User does not exist", "UNALLOCATED_NUMBER"),
        (3130, "Spam block", "CALL_REJECTED"),
        (3140, "DNO Caller ID", "CALL_REJECTED"),
    ),
    *_causes(
        "System",
        (5000, "Network Error", "NETWORK_OUT_OF_ORDER"),
        (5010, "Internal Error", "SERVER_ERROR"),
        (5020, "Routing Error", "SERVICE_UNAVAILABLE"),
        (5030, "Concurrency Limit Breached", "SWITCH_CONGESTION"),
    ),
    *_causes(
        "Timeouts",
        (6000, "Scheduled Hangup", "NORMAL_CLEARING"),
        (6010, "Ring Timeout Reached", "NO_ANSWER"),
        (6020, "Media Timeout", "MEDIA_TIMEOUT"),
    ),
    *_causes(
        "URL errors",
        (7011, "Error Reaching Answer URL", "NORMAL_CLEARING"),
        (7012, "Error Reaching Action URL", "NORMAL_CLEARING"),
        (7013, "Error Reaching Transfer URL", "NORMAL_CLEARING"),
        (7014, "Error Reaching Redirect URL", "NORMAL_CLEARING"),
        (7022, "Invalid Action URL", "NORMAL_CLEARING"),
        (7023, "Invalid Transfer URL", "NORMAL_CLEARING"),
        (7024, "Invalid Redirect URL", "NORMAL_CLEARING"),
        (7032, "Invalid Action Method", "NORMAL_CLEARING"),
        (7033, "Invalid Transfer Method", "NORMAL_CLEARING"),
        (7034, "Invalid Redirect Method", "NORMAL_CLEARING"),
    ),
    *_causes(
        "XML errors",
        (8011, "Invalid Answer XML", "NORMAL_CLEARING"),
        (8012, "Invalid Action XML", "NORMAL_CLEARING"),
        (8013, "Invalid Transfer XML", "NORMAL_CLEARING"),
        (8014, "Invalid Redirect XML", "NORMAL_CLEARING"),
    ),
    *_causes(
        "Special",
        (9000, "Lost Race", "LOSE_RACE"),
        (9100, "Machine Detected", "NORMAL_CLEARING"),
        (9110, "Confirm Key Challenge Failed", "NORMAL_CLEARING"),
    ),
]

#: Every documented cause, by code.
HANGUP_CAUSES: Mapping[int, HangupCause] = MappingProxyType({cause.code: cause for cause in _TABLE})
_BY_NAME: dict[str, HangupCause] = {cause.name.lower(): cause for cause in _TABLE}


def lookup(code: int | str | None) -> HangupCause | None:
    """The documented cause with this ``HangupCauseCode`` (``"4000"`` works too); ``None`` if unknown.

    :param code: The numeric code, as an int or a numeric string.
    """
    if code is None or isinstance(code, bool):
        return None
    try:
        number = int(str(code).strip())
    except ValueError:
        return None
    return HANGUP_CAUSES.get(number)


def describe_hangup_cause(code: int | str | None) -> HangupCause:
    """Like :func:`lookup`, but never ``None``: an undocumented code comes back as ``UNKNOWN``.

    :param code: The numeric code, as an int or a numeric string.
    """
    cause = lookup(code)
    if cause is not None:
        return cause
    try:
        number = int(str(code).strip())
    except ValueError:
        number = 0
    return HangupCause(code=number, name="Unknown", sip_cause="UNKNOWN", group="Unknown")


def lookup_name(name: str | None) -> HangupCause | None:
    """The documented cause with this ``HangupCauseName`` (case-insensitive); ``None`` if unknown.

    Useful because Vobiz sometimes puts the name (``End Of XML Instructions``) in ``HangupCause``.

    :param name: The cause name.
    """
    if not name:
        return None
    return _BY_NAME.get(name.strip().lower())


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutcomePreset:
    """How a call ends, as the emulator plays it: final status, cause and who hung up.

    :param status: Final ``CallStatus``.
    :param cause: The hangup cause (code, name, SIP cause).
    :param source: ``HangupSource``.
    :param answered: Whether the call was answered before it ended (sets ``AnswerTime``).
    """

    status: CallStatus
    cause: HangupCause
    source: str
    answered: bool

    @property
    def code(self) -> int:
        """``HangupCauseCode``."""
        return self.cause.code

    @property
    def name(self) -> str:
        """``HangupCauseName``."""
        return self.cause.name

    @property
    def sip_cause(self) -> str:
        """``HangupCause``."""
        return self.cause.sip_cause


def _preset(status: CallStatus, code: int, source: str, *, answered: bool) -> OutcomePreset:
    return OutcomePreset(status=status, cause=HANGUP_CAUSES[code], source=source, answered=answered)


#: The outcomes the emulator can play, by name. Undocumented pairings (status of a rejected call, of a
#: machine hang-up) follow Plivo: a rejection ends ``busy``; anything answered ends ``completed``.
OUTCOMES: Mapping[str, OutcomePreset] = MappingProxyType(
    {
        "completed": _preset(CallStatus.COMPLETED, 4000, "Callee", answered=True),
        "completed_by_caller": _preset(CallStatus.COMPLETED, 4000, "Caller", answered=True),
        "completed_by_xml": _preset(CallStatus.COMPLETED, 4010, "Answer XML", answered=True),
        "hangup_api": _preset(CallStatus.COMPLETED, 4000, "API Request", answered=True),
        "time_limit": _preset(CallStatus.COMPLETED, 6000, "Vobiz", answered=True),
        "machine_hangup": _preset(CallStatus.COMPLETED, 9100, "Vobiz", answered=True),
        "answer_url_error": _preset(CallStatus.COMPLETED, 7011, "Error", answered=True),
        "invalid_answer_xml": _preset(CallStatus.COMPLETED, 8011, "Error", answered=True),
        "busy": _preset(CallStatus.BUSY, 3010, "Callee", answered=False),
        "rejected": _preset(CallStatus.BUSY, 3020, "Callee", answered=False),
        "no_answer": _preset(CallStatus.NO_ANSWER, 3000, "Callee", answered=False),
        "ring_timeout": _preset(CallStatus.TIMEOUT, 6010, "Vobiz", answered=False),
        "failed": _preset(CallStatus.FAILED, 2000, "Vobiz", answered=False),
        "network_error": _preset(CallStatus.FAILED, 5000, "Vobiz", answered=False),
        "canceled": _preset(CallStatus.CANCEL, 1000, "API Request", answered=False),
    }
)
