"""Shared by the handlers of the emulator's REST API: the account, and errors in the configured shape."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from vobiz_provider.testing.emulator.payloads import api_id, iso

if TYPE_CHECKING:
    from vobiz_provider.testing.emulator.state import EmulatedCall, Fault
    from vobiz_provider.testing.emulator.switchboard import Switchboard

__all__ = ["Endpoints"]

_ERROR_CODES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_CREDENTIALS",
    402: "INSUFFICIENT_BALANCE",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def _header_seconds(value: float) -> str:
    """Seconds as a ``Retry-After`` value (``2``, ``0.5``)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Endpoints:
    """Base of the API's handler classes.

    :param switchboard: The account the API serves.
    """

    def __init__(self, *, switchboard: Switchboard) -> None:
        self.switchboard = switchboard

    def _find(self, call_uuid: str) -> EmulatedCall | None:
        try:
            return self.switchboard.call(call_uuid)
        except KeyError:
            return None

    def error(
        self,
        status: int,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        flat_extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        """An error response in the configured shape."""
        if self.switchboard.settings.error_shape == "envelope":
            body: dict[str, Any] = {
                "status": "error",
                "error": {
                    "code": _ERROR_CODES.get(status, "ERROR"),
                    "message": message,
                    "details": details or {},
                },
                "timestamp": iso(datetime.now(timezone.utc)),
                "requestId": f"req_{uuid.uuid4().hex[:12]}",
            }
        else:
            body = {"api_id": api_id(), "error": message, **(flat_extra or {})}
        return JSONResponse(body, status_code=status, headers=headers)

    def invalid_request(self, problems: list[tuple[str, str]]) -> JSONResponse:
        """400 naming every ``(field, problem)``."""
        return self.error(
            400,
            "invalid request: " + "; ".join(f"{f}: {p}" for f, p in problems),
            details={"errors": [{"field": f, "message": p, "code": "invalid"} for f, p in problems]},
        )

    def rate_limited(
        self, limit_type: str, limit: int, current: int, *, retry_after: float | None = None
    ) -> JSONResponse:
        """429 for the CPS or the concurrency limit (``Retry-After`` only when one is configured)."""
        if retry_after is None:
            retry_after = self.switchboard.settings.retry_after
        headers = {} if retry_after is None else {"Retry-After": _header_seconds(retry_after)}
        what = "calls per second" if limit_type == "cps" else "concurrent calls"
        return self.error(
            429,
            f"rate limit exceeded: {what} limit of {limit} reached ({limit_type})",
            details={
                "limitType": limit_type,
                "limit": limit,
                "current": current,
                "retryAfter": retry_after if retry_after is not None else 1,
            },
            headers=headers,
        )

    def fault_response(self, fault: Fault, status: int) -> Response:
        """The answer an injected fault replaces the real one with (``status`` is the fault's)."""
        headers = {} if fault.retry_after is None else {"Retry-After": _header_seconds(fault.retry_after)}
        if fault.body is not None:
            return JSONResponse(fault.body, status_code=status, headers=headers)
        if status == 429:
            settings = self.switchboard.settings
            return self.rate_limited("cps", settings.cps, settings.cps, retry_after=fault.retry_after)
        if status < 400:
            return JSONResponse({"api_id": api_id()}, status_code=status, headers=headers)
        return self.error(status, f"injected fault: HTTP {status}", headers=headers)
