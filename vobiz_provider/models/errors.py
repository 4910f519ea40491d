"""Vobiz's error bodies, in both shapes it uses, and :func:`parse_error_body`, which reads any of them.

Flat (Plivo heritage, what the call API returns in practice): ``{"api_id", "error": "text"}``. Envelope
(documented): ``{"status": "error", "error": {"code", "message", "details"}, ...}``. Bodies that are not
JSON at all (a proxy's HTML page) are read too.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from pydantic import Field

from vobiz_provider.models.responses import VobizResponse

__all__ = ["ErrorBody", "ErrorDetail", "ParsedError", "parse_error_body"]


class ErrorDetail(VobizResponse):
    """The ``error`` object of the documented envelope.

    :param code: Machine-readable code, e.g. ``RATE_LIMIT_EXCEEDED``.
    :param message: Human-readable message.
    :param details: Extra data, e.g. ``{"retryAfter": 1}`` or ``{"errors": [...]}``.
    """

    code: str | None = None
    message: str | None = None
    details: dict[str, Any] | None = None


class ErrorBody(VobizResponse):
    """An error body, in either shape Vobiz uses.

    Flat (Plivo heritage, what the call API returns in practice): ``{"api_id", "error": "text"}`` or
    ``{"message": "text"}``. Envelope (documented): ``{"status": "error", "error": {"code", "message",
    "details"}, "timestamp", "requestId"}``.

    :param api_id: Vobiz's id of the API request (flat shape).
    :param status: ``"error"`` (envelope shape).
    :param error: The text (flat) or an :class:`ErrorDetail` (envelope).
    :param message: Alternative top-level text.
    :param details: Top-level details (flat shape).
    :param timestamp: When the error happened (envelope).
    :param request_id: ``requestId`` (envelope).
    """

    api_id: str | None = None
    status: str | None = None
    error: ErrorDetail | str | None = None
    message: str | None = None
    details: dict[str, Any] | None = None
    timestamp: str | None = None
    request_id: str | None = Field(default=None, alias="requestId")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParsedError:
    """What the client needs from an error response.

    :param message: Vobiz's text (or the HTTP reason phrase when there was none).
    :param code: The envelope's ``code``, if any.
    :param details: The ``details`` object, if any.
    :param retry_after: Seconds to wait, from ``Retry-After`` or ``details.retryAfter``.
    """

    message: str
    code: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    retry_after: float | None = None


_MAX_TEXT = 300


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def _seconds(value: Any) -> float | None:
    """Seconds from a number, a numeric string or an HTTP date (``Retry-After``)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return max(float(value), 0.0)
    if isinstance(value, str):
        text = value.strip()
        try:
            return max(float(text), 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)
    return None


def _decode(body: bytes | str | dict[str, Any] | None) -> tuple[Any, str]:
    """The decoded JSON (``None`` if the body is not JSON) and the stripped text of a body."""
    if body is None:
        return None, ""
    if isinstance(body, dict):
        return body, ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        decoded = json.loads(text) if text.strip() else None
    except ValueError:
        return None, text.strip()
    return decoded, text.strip()


def _field_errors(details: Mapping[str, Any]) -> str:
    errors = details.get("errors")
    if not isinstance(errors, list):
        return ""
    parts = []
    for item in errors:
        if isinstance(item, Mapping) and item.get("field"):
            parts.append(f"{item['field']}: {item.get('message') or item.get('code') or 'invalid'}")
    return "; ".join(parts)


def parse_error_body(
    status_code: int,
    body: bytes | str | dict[str, Any] | None,
    headers: Mapping[str, str] | None = None,
) -> ParsedError:
    """Read Vobiz's error response, whatever its shape.

    :param status_code: HTTP status of the response.
    :param body: Raw body (bytes/str, JSON or not) or an already-decoded JSON object. A JSON string is the
        message; a non-JSON body (an HTML error page of a proxy) becomes the message, cut to 300 characters;
        other JSON that is not an object (``[]``) says nothing, so the status phrase is used.
    :param headers: Response headers (any mapping; looked up case-insensitively).
    :return: The message, code, details and retry-after (header preferred over ``details.retryAfter``).
    """
    decoded, text = _decode(body)
    if isinstance(decoded, str):
        text, decoded = decoded, None
    elif decoded is not None and not isinstance(decoded, dict):
        decoded, text = None, ""
    message: str | None = None
    code: str | None = None
    details: dict[str, Any] = {}
    if decoded is not None:
        try:
            parsed = ErrorBody.model_validate(decoded)
        except ValueError:
            parsed = None
        if parsed is not None:
            if isinstance(parsed.error, ErrorDetail):
                message = parsed.error.message
                code = parsed.error.code
                details = dict(parsed.error.details or {})
            elif isinstance(parsed.error, str):
                message = parsed.error
            message = message or parsed.message
            if not details and parsed.details:
                details = dict(parsed.details)
    elif text:
        message = text[:_MAX_TEXT]
    if not message:
        try:
            message = HTTPStatus(status_code).phrase
        except ValueError:
            message = f"HTTP {status_code}"
    field_errors = _field_errors(details)
    if field_errors and field_errors not in message:
        message = f"{message} ({field_errors})"
    retry_after = _seconds(_header(headers, "Retry-After"))
    if retry_after is None:
        retry_after = _seconds(details.get("retryAfter", details.get("retry_after")))
    return ParsedError(message=message, code=code, details=details, retry_after=retry_after)
