"""Retry policies on the emulator: what is retried, what is sent once, what settles an unknown outcome."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _client_helpers import DESTINATION, FAST, api_requests, live_call_placed_elsewhere, place_elsewhere

from vobiz_provider.client import VobizClient
from vobiz_provider.exceptions import (
    VobizCallOutcomeUnknownError,
    VobizRateLimitedError,
    VobizServerError,
)
from vobiz_provider.testing import CallScript


def _client(emulator: Any, **overrides: Any) -> VobizClient:
    kwargs: dict[str, Any] = {
        "auth_id": emulator.auth_id,
        "auth_token": emulator.auth_token,
        "base_url": emulator.base_url,
        "timeout": 2.0,
        "max_retries": 3,
        **FAST,
    }
    kwargs.update(overrides)
    return VobizClient(**kwargs)


# ------------------------------------------------------------------------------------------ idempotent


def test_5xx_on_get_is_retried(vobiz_emulator: Any) -> None:
    vobiz_emulator.inject_fault(method="GET", path_contains="/auth/me", status=503, count=2)

    with _client(vobiz_emulator) as client:
        account = client.get_account()

    assert account.auth_id == vobiz_emulator.auth_id
    assert [r.status for r in vobiz_emulator.requests] == [503, 503, 200]


def test_5xx_on_get_gives_up_after_max_retries(vobiz_emulator: Any) -> None:
    vobiz_emulator.inject_fault(method="GET", path_contains="/auth/me", status=500, count=None)

    with _client(vobiz_emulator, max_retries=2) as client, pytest.raises(VobizServerError, match="500"):
        client.get_account()

    assert len(vobiz_emulator.requests) == 3


def test_read_timeout_on_get_is_retried(vobiz_emulator: Any) -> None:
    vobiz_emulator.inject_fault(method="GET", path_contains="/Call/", delay=1.0)

    with _client(vobiz_emulator, timeout=0.3) as client:
        assert client.list_live_calls() == []

    assert len(api_requests(vobiz_emulator, "GET")) == 2


def test_delete_is_retried_on_429(vobiz_emulator: Any) -> None:
    vobiz_emulator.inject_fault(method="DELETE", path_contains="/Call/", status=429)

    with _client(vobiz_emulator) as client:
        assert client.hangup_call("0d5e2b62-0000-4000-8000-000000000000") is False

    assert [r.status for r in api_requests(vobiz_emulator, "DELETE")] == [429, 404]


def test_retry_after_longer_than_backoff_max_is_not_retried_early(vobiz_emulator: Any) -> None:
    vobiz_emulator.inject_fault(method="GET", path_contains="/auth/me", status=429, retry_after=60)

    with _client(vobiz_emulator) as client, pytest.raises(VobizRateLimitedError) as info:
        client.get_account()

    assert info.value.retry_after == 60
    assert len(vobiz_emulator.requests) == 1


# ------------------------------------------------------------------------------------------ POST /Call/


def test_429_with_retry_after_then_success_places_exactly_one_call(
    vobiz_emulator: Any, call_request: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING)
    vobiz_emulator.inject_fault(status=429, retry_after=1)

    with _client(vobiz_emulator) as client:
        fired = client.make_call(call_request())

    posts = api_requests(vobiz_emulator, "POST")
    assert [p.status for p in posts] == [429, 201]
    assert list(vobiz_emulator.calls) == fired.request_uuids
    # Retry-After was honoured: the second attempt did not come before it (a floor, not a timing target).
    assert (posts[1].received_at - posts[0].received_at).total_seconds() >= 1.0
    assert any("retry 1 of 3" in r.getMessage() for r in caplog.records)


def test_envelope_429_details_retry_after_is_honoured(vobiz_emulator: Any, call_request: Any) -> None:
    vobiz_emulator.configure(error_shape="envelope")
    vobiz_emulator.inject_fault(status=429)  # envelope body with details.retryAfter = 1, no header

    with _client(vobiz_emulator) as client:
        client.make_call(call_request())

    posts = api_requests(vobiz_emulator, "POST")
    assert [p.status for p in posts] == [429, 201]
    assert (posts[1].received_at - posts[0].received_at).total_seconds() >= 1.0
    assert len(vobiz_emulator.calls) == 1


def test_5xx_on_make_call_is_not_re_sent(vobiz_emulator: Any, call_request: Any) -> None:
    # Vobiz answered 503 without placing the call: nothing to find, and no second POST.
    vobiz_emulator.inject_fault(status=503)

    with _client(vobiz_emulator) as client, pytest.raises(VobizCallOutcomeUnknownError) as info:
        client.make_call(call_request())

    assert len(api_requests(vobiz_emulator, "POST")) == 1
    assert vobiz_emulator.calls == {}
    message = str(info.value)
    assert "NOT re-sent" in message
    assert "no queued or live call" in message
    assert "503" in message


def test_read_timeout_on_make_call_recovers_the_call_from_the_lists(
    vobiz_emulator: Any, call_request: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING)
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=10))  # still ringing when we look
    vobiz_emulator.inject_fault(accept=True, delay=1.0)  # the call IS placed; the answer comes too late

    with _client(vobiz_emulator, timeout=0.3) as client:
        fired = client.make_call(call_request())

    assert len(api_requests(vobiz_emulator, "POST")) == 1, "never re-sent"
    (placed,) = vobiz_emulator.calls.values()
    assert fired.request_uuids == [placed.request_uuid]
    assert fired.model_extra.get("recovered") is True
    assert any("recovered the call" in r.getMessage() for r in caplog.records)
    statuses = {r.query.get("status") for r in api_requests(vobiz_emulator, "GET", "/Call/")}
    assert statuses == {"live", "queued"}


def test_5xx_after_the_call_was_placed_recovers_it(vobiz_emulator: Any, call_request: Any) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=10))
    vobiz_emulator.inject_fault(accept=True, status=502)

    with _client(vobiz_emulator) as client:
        fired = client.make_call(call_request())

    (placed,) = vobiz_emulator.calls.values()
    assert fired.request_uuids == [placed.request_uuid]
    assert len(api_requests(vobiz_emulator, "POST")) == 1


def test_read_timeout_on_make_call_when_the_call_already_ended_is_outcome_unknown(
    vobiz_emulator: Any, call_request: Any
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.failed(after=0.01))  # over before we can look
    vobiz_emulator.inject_fault(accept=True, delay=1.0)

    with _client(vobiz_emulator, timeout=0.3) as client, pytest.raises(VobizCallOutcomeUnknownError) as info:
        client.make_call(call_request())

    assert len(api_requests(vobiz_emulator, "POST")) == 1
    assert len(vobiz_emulator.calls) == 1, "the call was placed once"
    message = str(info.value)
    assert "ReadTimeout" in message
    assert "NOT re-sent" in message
    assert "may already have ended" in message
    assert vobiz_emulator.auth_token not in message


def test_placing_a_call_sends_one_request(vobiz_emulator: Any, call_request: Any) -> None:
    # Nothing is listed up front: the live/queued lists are read only when an outcome is unknown.
    with _client(vobiz_emulator) as client:
        client.make_call(call_request())

    assert [(r.method, r.status) for r in vobiz_emulator.requests] == [("POST", 201)]


def test_a_call_this_process_placed_earlier_is_not_taken_for_the_new_one(
    vobiz_emulator: Any, call_request: Any
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=10))  # still queued (ringing) later
    with _client(vobiz_emulator) as client:
        (earlier,) = client.make_call(call_request()).request_uuids
        vobiz_emulator.inject_fault(status=500)  # the second call is NOT placed

        with pytest.raises(VobizCallOutcomeUnknownError) as info:
            client.make_call(call_request())

    message = str(info.value)
    assert "no queued or live call" in message
    assert f"call(s) {earlier} to it were ruled out" in message
    assert len(vobiz_emulator.calls) == 1


def test_an_earlier_live_call_is_not_taken_for_a_call_that_was_not_placed(
    vobiz_emulator: Any, call_request: Any
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=0.01, talk_for=None))
    earlier = live_call_placed_elsewhere(vobiz_emulator, call_request(), started_ago=60)
    vobiz_emulator.inject_fault(status=500)  # this call is NOT placed

    with _client(vobiz_emulator) as client, pytest.raises(VobizCallOutcomeUnknownError) as info:
        client.make_call(call_request())

    message = str(info.value)
    assert "no queued or live call" in message
    assert f"call(s) {earlier} to it were ruled out" in message
    assert list(vobiz_emulator.calls) == [earlier]


def test_an_earlier_live_call_is_ruled_out_and_the_new_call_recovered(
    vobiz_emulator: Any, call_request: Any
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=0.01, talk_for=None))
    earlier = live_call_placed_elsewhere(vobiz_emulator, call_request(), started_ago=60)
    vobiz_emulator.inject_fault(accept=True, status=502)  # this call IS placed

    with _client(vobiz_emulator) as client:
        fired = client.make_call(call_request())

    (new,) = set(vobiz_emulator.calls) - {earlier}
    assert fired.request_uuids == [new]
    assert fired.model_extra.get("recovered") is True
    assert len(api_requests(vobiz_emulator, "POST")) == 2, "one each: the earlier call and this one"


def test_a_live_call_that_started_within_the_clock_skew_is_a_candidate(
    vobiz_emulator: Any, call_request: Any
) -> None:
    # Started 1 s "before" the request by Vobiz's clock: within CLOCK_SKEW, so it cannot be ruled out;
    # with the new call placed too there are two candidates and nothing is attributed.
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=0.01, talk_for=None))
    other = live_call_placed_elsewhere(vobiz_emulator, call_request(), started_ago=1)
    vobiz_emulator.inject_fault(accept=True, status=502)

    with _client(vobiz_emulator) as client, pytest.raises(VobizCallOutcomeUnknownError) as info:
        client.make_call(call_request())

    (new,) = set(vobiz_emulator.calls) - {other}
    message = str(info.value)
    assert "several calls" in message
    assert other in message and new in message
    assert "NOT re-sent" in message
    assert len(api_requests(vobiz_emulator, "POST")) == 2


def test_two_queued_candidates_are_outcome_unknown(vobiz_emulator: Any, call_request: Any) -> None:
    # Queued calls carry no start time: a ringing call another worker placed to the same number from the
    # same caller ID cannot be told apart from this one, so neither is adopted.
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=10))
    other = place_elsewhere(vobiz_emulator, call_request())
    vobiz_emulator.inject_fault(accept=True, delay=1.0)

    with (
        _client(vobiz_emulator, timeout=0.3) as client,
        pytest.raises(VobizCallOutcomeUnknownError) as info,
    ):
        client.make_call(call_request())

    (new,) = set(vobiz_emulator.calls) - {other}
    message = str(info.value)
    assert "several calls" in message
    assert other in message and new in message
    assert len(api_requests(vobiz_emulator, "POST")) == 2


def test_lookup_failure_is_reported_as_outcome_unknown(vobiz_emulator: Any, call_request: Any) -> None:
    vobiz_emulator.inject_fault(accept=True, delay=1.0)
    # Listing calls fails throughout the search for the call.
    vobiz_emulator.inject_fault(method="GET", path_contains="/Call/", status=503, count=None)

    client = _client(vobiz_emulator, timeout=0.3, max_retries=1)
    with client, pytest.raises(VobizCallOutcomeUnknownError) as info:
        client.make_call(call_request())

    message = str(info.value)
    assert "looking for it failed" in message
    assert "503" in message
    assert len(api_requests(vobiz_emulator, "POST")) == 1
    assert len(vobiz_emulator.calls) == 1
