"""Error bodies: the flat and the envelope shape, Retry-After in either place, bodies that are not JSON."""

from __future__ import annotations

import email.utils
import json
import time

import pytest

from vobiz_provider.models.errors import parse_error_body


def test_flat_error_body() -> None:
    parsed = parse_error_body(404, b'{"error": "call not found", "call_uuid": "invalid-uuid"}', {})
    assert parsed.message == "call not found"
    assert parsed.code is None
    assert parsed.retry_after is None


def test_flat_error_with_api_id_and_message_fallback() -> None:
    assert parse_error_body(400, '{"api_id": "a", "error": "to is invalid"}', None).message == "to is invalid"
    assert parse_error_body(403, {"message": "access denied"}, None).message == "access denied"


def test_envelope_error_with_retry_after_in_details() -> None:
    body = {
        "status": "error",
        "error": {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Too many requests",
            "details": {"limitType": "cps", "limit": 10, "current": 15, "retryAfter": 1},
        },
        "timestamp": "2025-10-12T10:30:00.000Z",
        "requestId": "req_7a8b9c0d1e2f",
    }
    parsed = parse_error_body(429, json.dumps(body).encode(), {})
    assert parsed.message == "Too many requests"
    assert parsed.code == "RATE_LIMIT_EXCEEDED"
    assert parsed.details["limitType"] == "cps"
    assert parsed.retry_after == 1.0


def test_retry_after_header_wins_over_details_and_is_case_insensitive() -> None:
    body = {
        "status": "error",
        "error": {"code": "RATE_LIMIT_EXCEEDED", "message": "m", "details": {"retryAfter": 9}},
    }
    assert parse_error_body(429, body, {"retry-after": "3"}).retry_after == 3.0
    assert parse_error_body(429, body, {"Retry-After": "2.5"}).retry_after == 2.5


def test_retry_after_as_http_date() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    retry_after = parse_error_body(429, {"error": "slow down"}, {"Retry-After": when}).retry_after
    assert retry_after is not None and 100 <= retry_after <= 121


def test_validation_envelope_lists_field_errors() -> None:
    body = {
        "status": "error",
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "Validation failed",
            "details": {
                "errors": [{"field": "to", "message": "invalid number", "code": "INVALID", "value": "x"}]
            },
        },
    }
    parsed = parse_error_body(422, body, None)
    assert parsed.message == "Validation failed (to: invalid number)"
    assert parsed.code == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (502, b"<html>Bad gateway</html>", "<html>Bad gateway</html>"),
        (503, b"", "Service Unavailable"),
        (500, None, "Internal Server Error"),
        (404, b"[]", "Not Found"),
        (599, None, "HTTP 599"),
    ],
)
def test_non_json_or_empty_bodies(status: int, body: bytes | None, expected: str) -> None:
    assert parse_error_body(status, body, None).message == expected


def test_long_text_bodies_are_cut() -> None:
    assert len(parse_error_body(500, "x" * 5000, None).message) == 300


def test_json_string_and_fastapi_detail_bodies() -> None:
    assert parse_error_body(404, b'"call not found"', None).message == "call not found"
    assert parse_error_body(404, b'{"detail": "Not Found"}', None).message == "Not Found"
