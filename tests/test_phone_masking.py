"""Phone numbers in logs: masked by default (country code + last 4 digits), whole with
``[vobiz] mask_phone_numbers = false``."""

from __future__ import annotations

from typing import Any

import pytest

from vobiz_provider.calls.outcome import SuccessRule, describe_failure
from vobiz_provider.calls.resumption import decide_fired_resume, decide_resume
from vobiz_provider.calls.tracker import CallTracker
from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.get_provider_info import get_provider_info
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.models.record import CallRecord
from vobiz_provider.phone_masking import (
    country_code_length,
    mask_number,
    masked_number,
    masked_numbers,
    masking_enabled,
)
from vobiz_provider.sensors.call import _describe as describe_sensor_call

SETTING = "AIRFLOW__VOBIZ__MASK_PHONE_NUMBERS"


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("+919876543210", "+91******3210"),  # the example: India, 2-digit country code
        ("919876543210", "91******3210"),
        ("+14155550101", "+1******0101"),  # North America, 1-digit
        ("+447911123456", "+44******3456"),
        ("+97150123456", "+971****3456"),  # UAE, 3-digit
        ("+2901234", "+*****34"),  # short: only 0 digits would be hidden after the code and last 4
        ("12345", "***45"),
        ("911", "*11"),
        ("42", "**"),
        ("sip:+919876543210@pbx.example.com", "sip:+91******3210@pbx.example.com"),
        ("sip:alice@pbx.example.com:5060;transport=tls", "sip:a***@pbx.example.com:5060"),
        ("SIPS:bob@pbx.example.com?X-Header=secret", "SIPS:b***@pbx.example.com"),
        ("+919876543210<+14155550101<sip:carol@pbx", "+91******3210<+1******0101<sip:c***@pbx"),
        ("+91 98765 43210", "+** ***** *3210"),  # not a number as given: every digit but the last 4
        ("not a number", "not a number"),
        ("", ""),
    ],
)
def test_the_masking_format(number: str, shown: str) -> None:
    assert mask_number(number) == shown


def test_country_codes() -> None:
    assert [
        country_code_length(d) for d in ("14155550101", "79161234567", "919876543210", "971501234567")
    ] == [
        1,
        1,
        2,
        3,
    ]


def test_numbers_are_masked_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SETTING, raising=False)
    assert masked_number("+919876543210") == "+91******3210"
    assert masked_numbers(["+919876543210", "+14155550101"]) == "+91******3210, +1******0101"
    assert masked_number(None) == "?"
    assert masking_enabled() is True


def test_the_setting_off_shows_numbers_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SETTING, "false")
    assert masked_number("+919876543210") == "+919876543210"
    assert masked_numbers(["+919876543210", "sip:alice@pbx"], separator="<") == "+919876543210<sip:alice@pbx"
    assert masking_enabled() is False


def test_an_unreadable_setting_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SETTING, "perhaps")
    assert masked_number("+919876543210") == "+91******3210"
    assert masking_enabled() is True


@pytest.mark.parametrize(("setting", "shown"), [(None, "'+** ***** *3210'"), ("false", "'+91 98765 43210'")])
def test_validation_errors_quote_a_refused_number_masked(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, shown: str
) -> None:
    if setting is None:
        monkeypatch.delenv(SETTING, raising=False)
    else:
        monkeypatch.setenv(SETTING, setting)
    with pytest.raises(VobizValidationError) as err:
        MakeCallRequest.build(
            **{"from": "+14155550100", "to": "+91 98765 43210", "answer_url": "https://a/x"}
        )
    assert f"to[0]: {shown} is not an E.164 number" in str(err.value)


def test_the_setting_is_documented_in_the_provider_info() -> None:
    option = get_provider_info()["config"]["vobiz"]["options"]["mask_phone_numbers"]
    assert option["default"] == "True" and option["type"] == "boolean"
    assert "+91******3210" in option["description"]


def _record(**fields: Any) -> CallRecord:
    base = {
        "call_uuid": "c-1",
        "request_uuid": "r-1",
        "to": "+919876543210",
        "status": "busy",
        "terminal": True,
    }
    return CallRecord.model_validate({**base, **fields})


@pytest.mark.parametrize(("setting", "shown"), [(None, "+91******3210"), ("false", "+919876543210")])
def test_every_call_text_for_logs_shows_the_number_per_the_setting(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, shown: str
) -> None:
    if setting is None:
        monkeypatch.delenv(SETTING, raising=False)
    else:
        monkeypatch.setenv(SETTING, setting)
    record = _record(try_number=1)
    texts = {
        "resume message": decide_resume(
            [record], try_number=2, rule=SuccessRule(success_statuses=("x",))
        ).message,
        "fire-and-forget resume message": decide_fired_resume(
            [record], try_number=2, rule=SuccessRule(success_statuses=("x",)), settled=False
        ).message,
        "sensor failure": describe_sensor_call(record),
        "failure": describe_failure(record.to_event()),
        "timeline": "\n".join(
            CallTracker(request_uuids=["r-1"], destinations=[], call_uuids=[]).observe([record])
        ),
    }
    for name, text in texts.items():
        assert shown in text, (name, text)
        if setting is None:
            assert "+919876543210" not in text, (name, text)
    assert record.to_event()["to"] == "+919876543210"  # the record (XCom, trigger event) keeps it whole
