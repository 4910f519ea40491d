"""Response models: both documented shapes of each body, unknown fields kept, secrets hidden."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pendulum
import pytest

from vobiz_provider.models.responses import (
    Account,
    CallFiredResponse,
    CallUuidList,
    CdrEnvelope,
    CdrPage,
    ConcurrencyInfo,
    LiveCall,
    QueuedCall,
)

# ------------------------------------------------------------------------------------------ call fired


def test_call_fired_with_one_request_uuid() -> None:
    body = {
        "api_id": "5a9fcfee-3d4c-11ef-bef9-0242ac110005",
        "message": "Call fired",
        "request_uuid": "5a9fd4a0-3d4c-11ef-bef9-0242ac110005",
    }
    fired = CallFiredResponse.model_validate(body)
    assert fired.request_uuids == ["5a9fd4a0-3d4c-11ef-bef9-0242ac110005"]
    assert fired.is_call_fired


def test_call_fired_with_a_list_and_lowercase_message_and_unknown_fields() -> None:
    fired = CallFiredResponse.model_validate(
        {"api_id": "a", "message": "call fired", "request_uuid": ["u1", "u2"], "new_field": 7}
    )
    assert fired.request_uuids == ["u1", "u2"]
    assert fired.is_call_fired
    assert fired.model_extra == {"new_field": 7}


def test_call_fired_message_other_than_call_fired_is_noticed() -> None:
    assert not CallFiredResponse.model_validate({"request_uuid": "u", "message": "queued"}).is_call_fired


def test_call_fired_needs_a_request_uuid() -> None:
    with pytest.raises(ValueError, match="request_uuid"):
        CallFiredResponse.model_validate({"api_id": "a", "message": "Call fired"})


def test_uuid_list() -> None:
    assert CallUuidList.model_validate({"api_id": "a", "calls": ["x", "y"]}).calls == ["x", "y"]
    assert CallUuidList.model_validate({"api_id": "a"}).calls == []
    # Plivo-style objects are reduced to their UUIDs
    assert CallUuidList.model_validate({"calls": [{"call_uuid": "z", "call_state": "ACTIVE"}]}).calls == ["z"]


# ------------------------------------------------------------------------------------------ live / queued


FLAT_LIVE = {
    "api_id": "c8fb6e2a-1111-2222-3333-444455556666",
    "call_status": "in-progress",
    "call_uuid": "0d3a1a44-55aa-4cbb-9cc0-1d2e3f4a5b6c",
    "caller_name": "",
    "direction": "outbound",
    "from": "919262171438",
    "request_uuid": "0d3a1a44-55aa-4cbb-9cc0-1d2e3f4a5b6c",
    "session_start": "2026-06-11 16:03:28.586839",
    "stir_attestation": "Not Applicable",
    "stir_verification": "Not Applicable",
    "to": "919148227303",
}


def test_live_call_flat_shape() -> None:
    live = LiveCall.model_validate(FLAT_LIVE)
    assert live.call_status == "in-progress"
    assert live.from_number == "919262171438"
    assert live.to == "919148227303"
    assert live.session_start == pendulum.datetime(2026, 6, 11, 16, 3, 28, 586839, tz="UTC")
    assert live.session_start.utcoffset() == dt.timedelta(0)


def test_live_call_plivo_shape_is_normalised() -> None:
    live = LiveCall.model_validate(
        {
            "api_id": "a",
            "calls": [
                {
                    "call_uuid": "c1",
                    "call_state": "ACTIVE",
                    "from_number": "14155551234",
                    "to_number": "14155555678",
                    "call_direction": "outbound",
                    "stir_verification": "Verified",
                    "source_ip": "10.0.0.1",
                }
            ],
        }
    )
    assert live.call_uuid == "c1"
    assert live.call_status == "in-progress"
    assert live.from_number == "14155551234"
    assert live.to == "14155555678"
    assert live.direction == "outbound"
    assert live.stir_verification == "Verified"
    assert live.model_extra is not None
    assert live.model_extra["source_ip"] == "10.0.0.1"
    assert live.model_extra["call_state"] == "ACTIVE"


def test_queued_call() -> None:
    queued = QueuedCall.model_validate(
        {
            "api_id": "a",
            "call_status": "queued",
            "call_uuid": "c",
            "request_uuid": "c",
            "caller_name": "x",
            "direction": "outbound",
            "from": "14155551234",
            "to": "14155555678",
        }
    )
    assert (queued.call_status, queued.from_number, queued.to) == ("queued", "14155551234", "14155555678")


# ------------------------------------------------------------------------------------------ CDRs


CDR = {
    "account_id": "MA_TEST",
    "answer_time": "2026-06-11T16:03:35Z",
    "billsec": "60",
    "call_direction": "outbound",
    "cost": "0.50",
    "created_at": "2026-06-11T16:04:40.123Z",
    "currency": "INR",
    "duration": 42,
    "end_time": "2026-06-11T16:04:17Z",
    "hangup_cause": "NORMAL_CLEARING",
    "hangup_cause_code": "4000",
    "hangup_cause_name": "Normal Hangup",
    "hangup_disposition": "send_bye",
    "hangup_source": "Caller",
    "id": 12345,
    "mos": "4.3",
    "ring_time": 7,
    "start_time": "2026-06-11T16:03:28+05:30",
    "total_cost": 0.5,
    "uuid": "0d3a1a44",
    "brand_new_metric": {"x": 1},
}


def test_cdr_envelope_parses_times_to_utc_and_numbers_from_strings() -> None:
    cdr = CdrEnvelope.model_validate({"data": CDR, "success": True}).data
    assert cdr.call_uuid == "0d3a1a44"
    assert cdr.answer_time == pendulum.datetime(2026, 6, 11, 16, 3, 35, tz="UTC")
    assert cdr.start_time == pendulum.datetime(2026, 6, 11, 10, 33, 28, tz="UTC")
    assert isinstance(cdr.start_time, pendulum.DateTime)
    assert cdr.start_time.utcoffset() == dt.timedelta(0)
    assert cdr.billsec == 60
    assert cdr.hangup_cause_code == 4000
    assert cdr.cost == Decimal("0.50")
    assert cdr.total_cost == Decimal("0.5")
    assert cdr.mos == pytest.approx(4.3)
    assert cdr.model_extra == {"brand_new_metric": {"x": 1}}
    dumped = json.loads(cdr.model_dump_json())
    assert dumped["answer_time"] == "2026-06-11T16:03:35Z"
    assert dumped["cost"] == "0.50"


def test_cdr_blank_numbers_and_times_are_none() -> None:
    cdr = CdrEnvelope.model_validate({"data": {"uuid": "u", "answer_time": "", "billsec": ""}}).data
    assert cdr.answer_time is None
    assert cdr.billsec is None


def test_cdr_page() -> None:
    page = CdrPage.model_validate(
        {
            "account_id": "MA_TEST",
            "count": 1,
            "data": [CDR],
            "pagination": {
                "page": 1,
                "per_page": 20,
                "total": 1,
                "pages": 1,
                "has_next": False,
                "has_prev": False,
            },
            "summary": {
                "totalCalls": 1,
                "answeredCalls": 1,
                "answerRate": 100,
                "avgCallDuration": "28s",
                "total_duration_seconds": 42,
                "total_billable_seconds": 60,
                "total_cost": "0.5",
                "last_call_at": "2026-06-11T16:04:17Z",
            },
            "success": True,
        }
    )
    assert page.data[0].uuid == "0d3a1a44"
    assert page.pagination is not None and page.pagination.has_next is False
    assert page.summary is not None
    assert page.summary.total_calls == 1
    assert page.summary.avg_call_duration == "28s"
    assert page.summary.total_cost == Decimal("0.5")


def test_empty_cdr_page() -> None:
    page = CdrPage.model_validate({"account_id": "MA", "count": 0, "data": [], "success": True})
    assert page.data == []
    assert page.pagination is None


# ------------------------------------------------------------------------------------------ account


SECRET = "s3cr3t-AUTH-secret-value"


def test_account_never_shows_its_secret() -> None:
    account = Account.model_validate(
        {
            "auth_id": "MA_TEST0001",
            "auth_secret": SECRET,
            "name": "Test",
            "timezone": "Asia/Kolkata",
            "cps_limit": "11",
            "concurrent_calls_limit": 10,
            "is_trial_account": False,
            "created_at": "2025-10-12T10:30:00.000Z",
            "features": {"call_queue": True},
        }
    )
    assert account.auth_secret is not None
    assert account.auth_secret.get_secret_value() == SECRET
    for text in (repr(account), str(account), account.model_dump_json(), str(account.model_dump())):
        assert SECRET not in text
    assert "auth_secret" not in account.model_dump()
    assert (account.cps_limit, account.concurrent_calls_limit, account.timezone) == (11, 10, "Asia/Kolkata")


def test_account_drops_fields_it_does_not_declare() -> None:
    """A field Vobiz adds later may be a secret (``sub_auth_token``): only the declared ones are kept."""
    account = Account.model_validate(
        {
            "auth_id": "MA_TEST0001",
            "auth_secret": SECRET,
            "sub_auth_token": "sub-" + SECRET,
            "api_key": "key-" + SECRET,
            "name": "Test",
            "cps_limit": 11,
        }
    )
    assert account.model_extra in (None, {})
    for text in (repr(account), str(account), account.model_dump_json(), str(account.model_dump())):
        assert SECRET not in text
        assert "sub_auth_token" not in text
    assert (account.name, account.auth_id, account.cps_limit) == ("Test", "MA_TEST0001", 11)


def test_concurrency_info() -> None:
    info = ConcurrencyInfo.model_validate(
        {
            "account_id": "MA",
            "concurrent_calls": "3",
            "max_concurrent": 10,
            "utilization_pct": 30.0,
            "request_id": "r",
        }
    )
    assert (info.concurrent_calls, info.max_concurrent, info.utilization_pct) == (3, 10, 30.0)
