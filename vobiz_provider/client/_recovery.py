"""Settling an unknown ``POST /Call/`` outcome: find the call that was sent, or say it cannot be found.

``POST /Call/`` has no idempotency key. After a read timeout, a broken connection or a 5xx, Vobiz may have
placed the call, so the clients never re-send it: they list the account's queued and live calls, and each
listed call is classified here (:func:`classify_found`). Calls to that destination from that caller ID are
candidates, except those provably placed before: by this process (:data:`placed_calls`, fed by
:func:`remember_placed`) or live since before the request was sent (:func:`started_before`). Exactly one
candidate is the call (:func:`settle_outcome`); none or several raise
:class:`~vobiz_provider.exceptions.VobizCallOutcomeUnknownError`.

The sync and async clients each run the look-ups (their ``_recover``); everything they decide is here.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from vobiz_provider.client.retry import describe_exception
from vobiz_provider.exceptions import VobizCallOutcomeUnknownError
from vobiz_provider.models.responses import CallFiredResponse
from vobiz_provider.phone_masking import masked_number, masked_numbers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from vobiz_provider.client._core import ApiRequest
    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.models.responses import LiveCall, QueuedCall

__all__ = [
    "CLOCK_SKEW",
    "PlacedCalls",
    "call_matches",
    "call_uuid_of",
    "classify_found",
    "log_outcome_unknown",
    "placed_calls",
    "remember_placed",
    "settle_outcome",
    "started_before",
    "utcnow",
]

log = logging.getLogger("vobiz_provider.client")

CLOCK_SKEW = dt.timedelta(seconds=2)
"""Clock difference tolerated between this machine and Vobiz when a live call's ``session_start`` is
compared with the moment ``POST /Call/`` was sent: a live call that started more than this before the
request was sent is not the call it placed (see :func:`started_before`)."""


def _party(value: Any) -> str:
    """Normalise a number or SIP URI for comparison: digits only for numbers, lower case for SIP."""
    text = str(value or "").strip()
    if text.lower().startswith("sip:"):
        return text.lower()
    return re.sub(r"\D", "", text)


def _call_field(call: Any, *names: str) -> Any:
    data = call.model_dump(by_alias=True) if hasattr(call, "model_dump") else dict(call)
    for name in names:
        if data.get(name) not in (None, ""):
            return data[name]
    for name in names:
        value = getattr(call, name, None)
        if value not in (None, ""):
            return value
    return None


def call_matches(request: MakeCallRequest, call: LiveCall | QueuedCall) -> bool:
    """Whether a live/queued call goes to one of the request's destinations from its caller ID."""
    caller = _party(_call_field(call, "from", "from_number"))
    callee = _party(_call_field(call, "to", "to_number"))
    destinations = {_party(to) for to in request.to}
    return bool(caller) and caller == _party(request.from_number) and callee in destinations


def call_uuid_of(call: LiveCall | QueuedCall) -> str | None:
    """The UUID to report for a recovered call (``request_uuid``, which equals ``call_uuid``)."""
    value = _call_field(call, "request_uuid", "call_uuid")
    return str(value) if value else None


def started_before(call: LiveCall | QueuedCall, sent_at: dt.datetime) -> bool:
    """Whether a live call provably started before ``sent_at`` (so it cannot be the call sent then).

    Compares the call's ``session_start`` (UTC, Vobiz's clock) with ``sent_at`` (UTC, ours) minus
    :data:`CLOCK_SKEW`. Queued calls carry no time, and a call without ``session_start`` cannot be ruled
    out: both return ``False``.
    """
    started = getattr(call, "session_start", None)
    return isinstance(started, dt.datetime) and started < sent_at - CLOCK_SKEW


class PlacedCalls:
    """The UUIDs of the calls this process placed (the latest :data:`PLACED_CALLS_KEPT`), thread-safe.

    A queued call carries no start time, so after an unknown outcome an earlier, still-ringing call to the
    same destination would look exactly like the call just sent. The calls this process placed itself
    (whose ``POST /Call/`` answered) are known not to be that call, and are never adopted.
    """

    def __init__(self, *, kept: int = 10_000) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._uuids: OrderedDict[str, None] = OrderedDict()

    def add(self, uuids: Iterable[str]) -> None:
        """Remember ``uuids`` as placed by this process."""
        with self._lock:
            for uuid in uuids:
                self._uuids[uuid] = None
            while len(self._uuids) > self._kept:
                self._uuids.popitem(last=False)

    def __contains__(self, uuid: object) -> bool:
        with self._lock:
            return uuid in self._uuids

    def clear(self) -> None:
        """Forget every UUID (for tests)."""
        with self._lock:
            self._uuids.clear()


#: Calls placed by any client of this process.
placed_calls = PlacedCalls()


def log_outcome_unknown(request: ApiRequest[Any], exc: BaseException) -> None:
    """Say that ``POST /Call/`` will not be re-sent and that the call is being looked for."""
    log.warning(
        "Vobiz %s: outcome unknown after %s. Not re-sending (that could ring the destination twice); "
        "looking for the call among the account's queued and live calls.",
        request.label,
        describe_exception(exc),
    )


def remember_placed(response: CallFiredResponse) -> CallFiredResponse:
    """Note the UUIDs of a call this process placed (never adopted by a later recovery)."""
    placed_calls.add(response.request_uuids)
    return response


def classify_found(
    call: MakeCallRequest, found: LiveCall | QueuedCall, *, sent_at: dt.datetime
) -> str | None:
    """Whether a call listed after an unknown outcome may be the one sent at ``sent_at``.

    :return: ``None`` if it does not go to the destination from the caller ID; ``"candidate"`` if it
        may be the call; ``"earlier"`` if it provably is another one (placed earlier by this process,
        or live since before ``sent_at`` - :data:`CLOCK_SKEW`).
    """
    if not call_matches(call, found):
        return None
    uuid = call_uuid_of(found)
    if (uuid is not None and uuid in placed_calls) or started_before(found, sent_at):
        return "earlier"
    return "candidate"


def settle_outcome(
    *,
    request: ApiRequest[Any],
    call: MakeCallRequest,
    cause: BaseException,
    found: Iterable[LiveCall | QueuedCall],
    earlier: Iterable[str],
    lookup_errors: list[str],
    redact: Callable[[str], str],
) -> CallFiredResponse:
    """Turn the calls found after an unknown outcome into a response, or raise outcome-unknown.

    Exactly one candidate and every look-up answered: that is the call (logged, never re-sent). Zero
    or several, or a failed look-up: :class:`VobizCallOutcomeUnknownError`, saying what was found.

    :param request: The ``POST /Call/`` that failed.
    :param call: Its body.
    :param cause: Why the outcome is unknown.
    :param found: Queued/live calls to the destination from the caller ID that may be this call.
    :param earlier: UUIDs of matching calls ruled out (placed earlier by this process, or live since
        before the request was sent).
    :param lookup_errors: Descriptions of look-ups that failed.
    :param redact: Removes the auth token from the message
        (:meth:`~vobiz_provider.client._core.ClientCore.redact` of the client).
    """
    uuids = _unique(call_uuid_of(candidate) for candidate in found)
    ruled_out = _unique(earlier)
    if len(uuids) == 1 and not lookup_errors:
        log.warning(
            "Vobiz %s: recovered the call after %s: found %s to %s from %s among the account's "
            "queued/live calls%s; it was not re-sent.",
            request.label,
            describe_exception(cause),
            uuids[0],
            masked_numbers(call.to, separator="<"),
            masked_number(call.from_number),
            f" (ignoring earlier call(s) {', '.join(ruled_out)})" if ruled_out else "",
        )
        return CallFiredResponse.model_validate(
            {
                "api_id": None,
                "message": "call fired (recovered from the live/queued call lists)",
                "request_uuid": uuids[0],
                "recovered": True,
            }
        )
    if len(uuids) > 1:
        reason = (
            "several calls to that destination from that caller ID may be this one "
            f"({', '.join(uuids)}), so none can be attributed to this request"
        )
    elif lookup_errors:
        seen = f" (found {uuids[0]}, but other calls may be unlisted)" if uuids else ""
        reason = "looking for it failed: " + "; ".join(lookup_errors) + seen
    else:
        reason = (
            "no queued or live call to that destination from that caller ID was found (the call may "
            "not have been placed, or may already have ended)"
        )
    if ruled_out:
        reason += (
            f"; call(s) {', '.join(ruled_out)} to it were ruled out (placed earlier by this process, or "
            "live since before the request was sent)"
        )
    raise VobizCallOutcomeUnknownError(
        redact(
            f"Vobiz {request.label} to {masked_numbers(call.to, separator='<')} from "
            f"{masked_number(call.from_number)}: the outcome is "
            f"unknown after {describe_exception(cause)}. The request was NOT re-sent, because a "
            f"re-send could ring the destination twice; {reason}. Check the Vobiz console or the "
            "CDRs before placing the call again."
        ),
        status_code=getattr(cause, "status_code", None),
    )


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (compared with ``session_start``)."""
    return dt.datetime.now(dt.timezone.utc)


def _unique(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))
