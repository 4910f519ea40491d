"""Error responses -> the exception hierarchy, with Vobiz's text, status, method and path, never the token."""

from __future__ import annotations

import logging
import socket
import traceback
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from _client_helpers import FAST, api_requests

from vobiz_provider.client import VobizClient
from vobiz_provider.exceptions import (
    VobizAuthError,
    VobizCallOutcomeUnknownError,
    VobizError,
    VobizInsufficientBalanceError,
    VobizNotFoundError,
    VobizRateLimitedError,
    VobizServerError,
    VobizValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


def _client(emulator: Any, **overrides: Any) -> VobizClient:
    kwargs: dict[str, Any] = {
        "auth_id": emulator.auth_id,
        "auth_token": emulator.auth_token,
        "base_url": emulator.base_url,
        "timeout": 2.0,
        "max_retries": 0,
        **FAST,
    }
    kwargs.update(overrides)
    return VobizClient(**kwargs)


def _assert_token_free(exc: BaseException, *tokens: str) -> None:
    rendered = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)
    for token in tokens:
        assert token not in rendered


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port


@pytest.mark.parametrize("shape", ["flat", "envelope"])
@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, VobizValidationError),
        (401, VobizAuthError),
        (402, VobizInsufficientBalanceError),
        (403, VobizAuthError),
        (404, VobizNotFoundError),
        (409, VobizError),
        (422, VobizValidationError),
        (429, VobizRateLimitedError),
        (500, VobizServerError),
        (503, VobizServerError),
    ],
)
def test_error_shapes_map_to_exceptions(
    vobiz_emulator: Any, shape: str, status: int, exc_type: type[VobizError]
) -> None:
    vobiz_emulator.configure(error_shape=shape)
    vobiz_emulator.inject_fault(method="GET", path_contains="/auth/me", status=status)

    with _client(vobiz_emulator) as client, pytest.raises(exc_type) as info:
        client.get_account()

    error = info.value
    assert type(error) is exc_type
    assert error.status_code == status
    assert str(status) in str(error)
    assert "GET /auth/me" in str(error)
    if status != 429:  # the emulator words its own 429 body
        assert f"injected fault: HTTP {status}" in str(error), "Vobiz's own text is kept"
    if shape == "envelope":
        assert error.code, "the envelope's code is kept"
    _assert_token_free(error, vobiz_emulator.auth_token)


def test_rate_limited_error_carries_retry_after(vobiz_emulator: Any) -> None:
    vobiz_emulator.configure(error_shape="envelope")
    vobiz_emulator.inject_fault(method="GET", path_contains="/auth/me", status=429, retry_after=7)

    with _client(vobiz_emulator) as client, pytest.raises(VobizRateLimitedError) as info:
        client.get_account()

    assert info.value.retry_after == 7
    assert "retry after 7 s" in str(info.value)


def test_wrong_token_fails_at_once_and_mentions_path_casing(vobiz_emulator: Any) -> None:
    wrong = "wrong-token-0123456789"
    with _client(vobiz_emulator, auth_token=wrong, max_retries=3) as client:
        with pytest.raises(VobizAuthError) as info:
            client.get_account()
        with pytest.raises(VobizAuthError):
            client.list_live_calls()

    assert len(vobiz_emulator.requests) == 2, "401 is never retried"
    assert "401" in str(info.value)
    assert "invalid credentials" in str(info.value)
    assert "case-sensitive" in str(info.value)
    _assert_token_free(info.value, wrong, vobiz_emulator.auth_token)


def test_insufficient_balance_fails_at_once(vobiz_emulator: Any, call_request: Any) -> None:
    vobiz_emulator.configure(balance=0)
    with _client(vobiz_emulator, max_retries=3) as client, pytest.raises(VobizInsufficientBalanceError):
        client.make_call(call_request())
    assert len(api_requests(vobiz_emulator, "POST")) == 1
    assert vobiz_emulator.calls == {}


def test_vobiz_text_echoing_the_token_is_redacted(vobiz_emulator: Any, caplog: Any) -> None:
    token = vobiz_emulator.auth_token
    vobiz_emulator.inject_fault(
        method="GET", path_contains="/auth/me", status=400, body={"error": f"bad token {token}"}
    )
    caplog.set_level(logging.DEBUG)

    with _client(vobiz_emulator) as client, pytest.raises(VobizValidationError) as info:
        client.get_account()

    assert "bad token ***" in str(info.value)
    _assert_token_free(info.value, token)
    assert token not in caplog.text


def test_unexpected_success_body_is_a_server_error_without_the_body_values(vobiz_emulator: Any) -> None:
    vobiz_emulator.inject_fault(
        method="GET", path_contains="/Call/", status=200, body={"calls": "oops-value"}
    )

    with _client(vobiz_emulator) as client, pytest.raises(VobizServerError) as info:
        client.list_live_calls()

    assert "unexpected body" in str(info.value)
    assert "calls" in str(info.value)
    assert "oops-value" not in str(info.value)


def test_a_call_answered_2xx_with_a_body_that_is_not_json_is_outcome_unknown(
    answer_url: str, call_request: Any
) -> None:
    # A server that answers every request 200 with XML (a misconfigured proxy, say): the POST may have
    # been accepted, so it is not re-sent, and the look-up cannot read the lists either.
    token = "not-json-token-77"
    root = answer_url.removesuffix("/answer")
    client = VobizClient(auth_id="MA_PROXY", auth_token=token, base_url=f"{root}/api/v1", max_retries=0)
    with client, pytest.raises(VobizCallOutcomeUnknownError) as info:
        client.make_call(call_request())

    message = str(info.value)
    assert "200 to POST /Account/MA_PROXY/Call/ with a body that is not JSON: '<?xml" in message
    assert "NOT re-sent" in message
    assert token not in message


def test_connect_refused_is_retried_then_raised_without_headers(closed_port: int, caplog: Any) -> None:
    token = "connect-refused-token-42"
    caplog.set_level(logging.DEBUG)
    client = VobizClient(
        auth_id="MA_CLOSED",
        auth_token=token,
        base_url=f"http://127.0.0.1:{closed_port}/api/v1",
        max_retries=2,
        **FAST,
    )
    with client, pytest.raises(VobizServerError) as info:
        client.get_account()

    assert "could not be reached for GET /auth/me" in str(info.value)
    assert "ConnectError" in str(info.value)
    retries = [r for r in caplog.records if "retry" in r.getMessage() and "GET /auth/me" in r.getMessage()]
    assert len(retries) == 2
    assert info.value.__cause__ is None and info.value.__suppress_context__, "the httpx error is not chained"
    _assert_token_free(info.value, token)
    assert token not in caplog.text


def test_make_call_on_connect_refused_is_re_sent_and_fails_as_not_placed(
    closed_port: int, call_request: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING)
    client = VobizClient(
        auth_id="MA_CLOSED",
        auth_token="tok-abcdef",
        base_url=f"http://127.0.0.1:{closed_port}/api/v1",
        max_retries=2,
        **FAST,
    )
    with client, pytest.raises(VobizServerError) as info:
        client.make_call(call_request())

    # A refused connection proves the call was not placed: re-sending is safe, and it is not
    # reported as an unknown outcome.
    assert not isinstance(info.value, VobizCallOutcomeUnknownError)
    assert "POST /Account/MA_CLOSED/Call/" in str(info.value)
    assert len([r for r in caplog.records if "POST /Account/MA_CLOSED/Call/ failed" in r.getMessage()]) == 2


def test_httpx_errors_hold_the_token_in_their_request_but_ours_do_not(closed_port: int) -> None:
    # The premise of the redaction: an httpx error drags the request (and its headers) along.
    token = "premise-token-777"
    with httpx.Client(headers={"X-Auth-Token": token}) as raw, pytest.raises(httpx.ConnectError) as raw_info:
        raw.get(f"http://127.0.0.1:{closed_port}/")
    assert raw_info.value.request.headers["x-auth-token"] == token

    client = VobizClient(
        auth_id="MA_CLOSED",
        auth_token=token,
        base_url=f"http://127.0.0.1:{closed_port}/api/v1",
        max_retries=0,
    )
    with client, pytest.raises(VobizServerError) as info:
        client.get_account()
    assert not hasattr(info.value, "request")
    _assert_token_free(info.value, token)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"auth_id": ""}, "auth_id"),
        ({"auth_id": "MA_X/../other"}, "auth_id"),
        ({"auth_token": "has space"}, "auth_token"),
        ({"auth_token": "line\nbreak"}, "auth_token"),
        ({"base_url": "api.vobiz.ai/api/v1"}, "base_url"),
        ({"base_url": "http://[::1"}, "base_url"),
        ({"base_url": "http://api vobiz.ai/api/v1"}, "base_url"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"cps": 0}, "cps"),
    ],
)
def test_bad_client_arguments_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    base = {"auth_id": "MA_X", "auth_token": "tok-123", "base_url": "https://api.vobiz.ai/api/v1"}
    with pytest.raises(VobizValidationError, match=field) as info:
        VobizClient(**{**base, **kwargs})
    if field == "auth_token":
        assert kwargs["auth_token"] not in str(info.value)


def test_bad_call_uuid_is_refused_before_sending(vobiz_emulator: Any) -> None:
    with _client(vobiz_emulator) as client, pytest.raises(VobizValidationError, match="call_uuid"):
        client.get_live_call("../../auth/me")
    assert vobiz_emulator.requests == []
