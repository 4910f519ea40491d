"""When a call counts as a success, how its outcome reads, and what the task returns.

The operator and the notifier place calls; whether the task then succeeds is decided here, from the final
call records (``CallRecord.to_event()`` dicts): :class:`SuccessRule`. What a retry does about an earlier
try's calls is in :mod:`vobiz_provider.calls.resumption`.

Nothing here imports a model, the client or the ledger at run time. What is checked when a DAG is parsed
(``expected_digits`` among it) is in :mod:`vobiz_provider.calls.templating`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vobiz_provider.phone_masking import masked_number
from vobiz_provider.untrusted import loggable, quoted

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vobiz_provider.ledger import CallReader
    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.models.record import CallRecord
    from vobiz_provider.models.responses import CallFiredResponse

__all__ = [
    "SuccessRule",
    "cache_api_outcomes",
    "describe_failure",
    "describe_outcome",
    "fill_stored_digits",
    "fired_result",
    "fired_result_of",
    "xcom_result",
]


# Every value of a call record below is loggable()/quoted(): a CR/LF in a callback field must not start a
# line of its own in the task log or in the failure's message.


def _cause(call: Mapping[str, Any]) -> str:
    parts = [
        str(call["hangup_cause_code"]) if call.get("hangup_cause_code") is not None else None,
        call.get("hangup_cause_name") or call.get("hangup_cause"),
    ]
    text = loggable(" ".join(part for part in parts if part) or "unknown cause")
    if call.get("hangup_source"):
        text += f", hung up by {loggable(call['hangup_source'])}"
    return text


def _call(call: Mapping[str, Any]) -> str:
    to = loggable(masked_number(call.get("to") or None))
    return f"Vobiz call to {to} ({loggable(call.get('call_uuid') or call.get('request_uuid'))})"


def describe_failure(call: Mapping[str, Any]) -> str:
    """``Vobiz call to <to> (<uuid>) ended with status '<status>' (hangup cause <code> <name>, ...)``."""
    return f"{_call(call)} ended with status {quoted(call.get('status'))} (hangup cause {_cause(call)})"


def describe_outcome(call: Mapping[str, Any]) -> str:
    """:func:`describe_failure` with the duration and the keys pressed, for a call that succeeded."""
    duration = f", {loggable(call['duration'])} s" if call.get("duration") is not None else ""
    pressed = f"; the callee pressed {quoted(call['digits'])}" if call.get("digits") else ""
    status = quoted(call.get("status"))
    return f"{_call(call)} ended with status {status} (hangup cause {_cause(call)}{duration}){pressed}"


def xcom_result(calls: list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
    """The XCom value: the call record, or the list of them for several destinations."""
    return calls[0] if len(calls) == 1 else calls


def fired_result(request: MakeCallRequest, response: CallFiredResponse) -> dict[str, Any]:
    """The XCom value of a call placed without waiting for it."""
    destinations = list(request.destinations)
    request_uuid = response.request_uuid
    return {
        "request_uuid": list(request_uuid) if isinstance(request_uuid, (list, tuple)) else request_uuid,
        "request_uuids": list(response.request_uuids),
        "to": destinations[0] if len(destinations) == 1 else destinations,
        "from_number": request.from_number,
        "api_id": response.api_id,
    }


def fired_result_of(records: list[CallRecord], destinations: list[str]) -> dict[str, Any]:
    """The XCom value of calls placed without waiting, from the ledger: what the earlier try that recorded
    them returned (or would have, had it not died). ``api_id`` is ``None``: it names that try's request,
    which the ledger does not keep.

    :param records: The earlier try's calls
        (:func:`~vobiz_provider.calls.resumption.previous_attempt`), not empty.
    :param destinations: The task's destinations, in the order of its request's ``to`` (orders the calls).
    """
    from vobiz_provider.models.record import normalise_destination  # pydantic: not at DAG-parse time (B4)

    order = {normalise_destination(d): i for i, d in enumerate(destinations)}
    ordered = sorted(records, key=lambda r: order.get(normalise_destination(r.to or ""), len(order)))
    request_uuids = list(dict.fromkeys(uuid for r in ordered if (uuid := r.request_uuid or r.call_uuid)))
    to = [r.to for r in ordered if r.to]
    return {
        "request_uuid": request_uuids[0] if len(request_uuids) == 1 else request_uuids,
        "request_uuids": request_uuids,
        "to": to[0] if len(to) == 1 else to,
        "from_number": ordered[0].from_number,
        "api_id": None,
    }


@dataclass(frozen=True, kw_only=True)
class SuccessRule:
    """What makes a final call record a success.

    :param success_statuses: Final call statuses that count (e.g. ``("completed",)``).
    :param expected_digits: The keys the callee must have pressed (``None``: any or none). Keys that
        connected the callee to another number (a keypad prompt's ``connect``) count only if that number
        answered: the record's ``dial_status`` is ``completed``.
    """

    success_statuses: tuple[str, ...]
    expected_digits: tuple[str, ...] | None = None

    def succeeded(self, call: Mapping[str, Any]) -> bool:
        """Whether a final call record settles the task: a success status (and an expected answer)."""
        if call.get("status") not in self.success_statuses:
            return False
        if self.expected_digits is None:
            return True
        return call.get("digits") in self.expected_digits and call.get("dial_status") in (None, "completed")

    def describe_failure(self, call: Mapping[str, Any]) -> str:
        """Why a final call record is not a success."""
        if call.get("status") not in self.success_statuses:
            return f"{describe_failure(call)} (success statuses: {', '.join(self.success_statuses)})"
        expected = " or ".join(repr(digits) for digits in self.expected_digits or ())
        pressed = call.get("digits")
        if pressed in (self.expected_digits or ()) and call.get("dial_status") not in (None, "completed"):
            return (
                f"{_call(call)}: the callee pressed {quoted(pressed)}, but the number it connects to did not "
                f"answer (dial status {quoted(call.get('dial_status'))})"
            )
        answer = (
            f"the callee pressed {quoted(pressed)}"
            if pressed
            else "no digits: the callee did not answer the prompt"
        )
        return f"{_call(call)} ended with status {call.get('status')!r}, but {answer} (expected {expected})"


def fill_stored_digits(ledger: CallReader, calls: list[dict[str, Any]], *, log: Any) -> list[dict[str, Any]]:
    """Fill in the digits a final record learnt from the Vobiz API lacks (a CDR has none) from the ledger,
    where the receiver put the Gather post: a lost hangup callback must not lose the answer.

    :param ledger: The call ledger.
    :param calls: The final call records.
    :param log: Where to warn when the ledger cannot be read (the calls are then returned as they are).
    """
    missing = [call["call_uuid"] for call in calls if not call.get("digits") and call.get("call_uuid")]
    if not missing:
        return calls
    try:
        stored = {r.call_uuid: r.digits for r in ledger.lookup(call_uuids=missing) if r.digits}
    except Exception as exc:
        log.warning("Could not read the digits pressed from the Vobiz call ledger: %s", exc)
        return calls
    return [
        {**call, "digits": stored[call["call_uuid"]]}
        if not call.get("digits") and call.get("call_uuid") in stored
        else call
        for call in calls
    ]


def cache_api_outcomes(ledger: CallReader, calls: list[dict[str, Any]], *, log: Any) -> None:
    """Write the outcomes learnt from the API to the ledger, so that a retry sees the call has ended.

    Only needed when the callbacks did not reach the receiver (the trigger then did not use the ledger).

    :param ledger: The call ledger.
    :param calls: The final call records (those with ``source="api"`` are written).
    :param log: Where to warn when the ledger cannot be written.
    """
    from vobiz_provider.models.record import CallRecord  # a pydantic model: not at DAG-parse time (B4)

    api_records = [call for call in calls if call.get("source") == "api" and call.get("terminal")]
    try:
        for call in api_records:
            ledger.cache_api_result(CallRecord.from_event(call))
    except Exception as exc:
        log.warning("Could not record the call's outcome in the Vobiz call ledger: %s", exc)
