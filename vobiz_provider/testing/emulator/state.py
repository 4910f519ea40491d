"""What the emulator keeps: calls, received API requests, callback attempts and injected faults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.testing.emulator.script import CallScript

__all__ = ["CallbackAttempt", "EmulatedCall", "Fault", "ReceivedRequest"]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


@dataclass(kw_only=True)
class ReceivedRequest:
    """One API request the emulator received, kept exactly as it arrived.

    :param method: HTTP method.
    :param path: Path as sent (``/api/v1/Account/.../Call/``).
    :param query: Query parameters.
    :param headers: Request headers as received, lower-case names (including ``x-auth-token``).
    :param body: The body parsed as JSON when possible, else the raw text (``None`` when empty).
    :param status: The status the emulator answered with (``None`` while in flight).
    :param received_at: When the request arrived (UTC).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int | None = None
    received_at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = dataclasses.asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data


@dataclass(kw_only=True)
class CallbackAttempt:
    """One HTTP request the emulator made to the application (a callback or an XML fetch attempt).

    :param kind: ``ring``, ``answer``, ``fallback``, ``machine-detection``, ``gather``, ``redirect`` or
        ``hangup``.
    :param url: URL as requested (for GET, without the form fields in the query).
    :param method: ``GET`` or ``POST``.
    :param fields: The form fields sent.
    :param headers: The request headers sent (signatures included).
    :param attempt: 1 for the first try, 2 for the first retry, ...
    :param call_uuid: The call it belongs to.
    :param status: Response status, ``None`` when there was no response.
    :param error: Why there was no usable response (timeout, connection error), if so.
    :param content_type: Response content type (XML fetches).
    :param body: Response body text (XML fetches only, first 100 KB).
    :param sent_at: When the request was started (UTC).
    """

    kind: str
    url: str
    method: str
    fields: dict[str, str]
    headers: dict[str, str]
    attempt: int
    call_uuid: str
    status: int | None = None
    error: str | None = None
    content_type: str | None = None
    body: str | None = None
    sent_at: datetime = field(default_factory=utcnow)

    @property
    def ok(self) -> bool:
        """True when the application answered 200."""
        return self.status == 200

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = dataclasses.asdict(self)
        data["sent_at"] = self.sent_at.isoformat()
        return data


@dataclass(kw_only=True)
class Fault:
    """A scripted misbehaviour of the API for client tests (see ``VobizEmulator.inject_fault``).

    :param method: HTTP method it applies to (``None``: any).
    :param path_contains: Substring of the request path it applies to.
    :param status: Status to answer with instead of the real one (``None``: the real answer).
    :param retry_after: ``Retry-After`` header value sent with it.
    :param delay: Seconds to wait before answering.
    :param accept: Process the request for real first (e.g. the call IS placed), then delay and/or
        replace the answer.
    :param count: How many matching requests it applies to (``None``: all of them).
    :param body: JSON body to answer with (default: an error body in the configured shape).
    """

    method: str | None = "POST"
    path_contains: str = "/Call/"
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    accept: bool = False
    count: int | None = 1
    body: Any = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether the fault applies to this request (and has uses left)."""
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains in path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class EmulatedCall:
    """The emulator's state of one call (one destination of a Make-Call request).

    Times are UTC; the API and the callbacks render them in the required format and timezone.

    :param call_uuid: The call's UUID (``CallUUID``).
    :param request_uuid: The request UUID (``RequestUUID``); shared by all destinations when the
        ``request_uuid_shape`` setting is ``"str"``.
    :param from_number: Caller ID.
    :param to: The destination.
    :param request: The validated Make-Call request.
    :param script: The script the callee follows.
    :param status: ``queued``, ``ringing``, ``in-progress`` or a final status.
    """

    call_uuid: str
    request_uuid: str
    from_number: str
    to: str
    request: MakeCallRequest
    script: CallScript
    status: str = "queued"
    created_at: datetime = field(default_factory=utcnow)
    ring_at: datetime | None = None
    answer_at: datetime | None = None
    end_at: datetime | None = None
    hangup_cause: str | None = None
    hangup_cause_code: int | None = None
    hangup_cause_name: str | None = None
    hangup_source: str | None = None
    machine: bool | None = None
    total_cost: float = 0.0
    cdr_id: int | None = None
    xml_log: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """True once the call has ended."""
        return self.end_at is not None

    @property
    def ring_seconds(self) -> int:
        """Whole seconds from ring (or creation) to answer (or end)."""
        start = self.ring_at or self.created_at
        stop = self.answer_at or self.end_at or utcnow()
        return max(0, int((stop - start).total_seconds()))

    @property
    def talk_seconds(self) -> int:
        """Whole seconds from answer to end (0 when never answered), rounded up."""
        if self.answer_at is None:
            return 0
        stop = self.end_at or utcnow()
        seconds = (stop - self.answer_at).total_seconds()
        whole = int(seconds)
        return whole + (1 if seconds > whole else 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for ``emulator.calls`` over the control API)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "call_uuid": self.call_uuid,
            "request_uuid": self.request_uuid,
            "from": self.from_number,
            "to": self.to,
            "status": self.status,
            "created_at": iso(self.created_at),
            "ring_at": iso(self.ring_at),
            "answer_at": iso(self.answer_at),
            "end_at": iso(self.end_at),
            "hangup_cause": self.hangup_cause,
            "hangup_cause_code": self.hangup_cause_code,
            "hangup_cause_name": self.hangup_cause_name,
            "hangup_source": self.hangup_source,
            "machine": self.machine,
            "total_cost": self.total_cost,
            "xml_log": list(self.xml_log),
            "script": self.script.to_dict(),
            "request": self.request.to_payload(),
        }
