"""Control characters never reach a ``vobiz_calls`` column, whoever writes it (the receiver refuses them
first; these are the other writers: the Vobiz API's answers, the operator's fired calls, direct callers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from _ledger_helpers import store_callback

from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.rows import int_value, text
from vobiz_provider.models.record import CallRecord

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CallLedger]:
    url = (
        f"sqlite:///{tmp_path / 'callbacks.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_schema_url")
    )
    ledger = CallLedger(url)
    yield ledger
    ledger.dispose()


def test_text_strips_c0_and_c1_control_characters() -> None:
    assert text("  Busy\x00 Line\r\n") == "Busy Line"
    assert text("\x85\x9f\x7fabc\x1b[2K") == "abc[2K"
    assert text("\x00\r\n\t") is None
    assert text("José ₹") == "José ₹"
    assert text(4000) == "4000"


def test_int_refuses_absurdly_long_numbers_before_reading_them() -> None:
    assert int_value("4000") == 4000
    assert int_value(" 12.0 ") == 12
    assert int_value("1" * 400 + ".0") is None
    assert int_value("9" * 60_000) is None
    assert int_value("nan") is None
    assert int_value("inf") is None


def test_an_api_answer_with_nul_and_line_breaks_is_stored_without_them(store: CallLedger) -> None:
    """PostgreSQL refuses NUL in a VARCHAR: the API's answer would otherwise never be cached."""
    record = CallRecord(
        call_uuid="c-1",
        request_uuid="c-1",
        to="+91900\x000000001",
        status="busy",
        terminal=True,
        hangup_cause="USER_BUSY\r\n",
        hangup_cause_code=3010,
        hangup_cause_name="Busy\x00 Line\n[2026-01-01] forged",
        hangup_source="Callee\x85",
        source="api",
    )
    store.cache_api_result(record)
    [stored] = store.lookup(call_uuids=["c-1"])
    assert (stored.to, stored.hangup_cause, stored.hangup_source) == ("+919000000001", "USER_BUSY", "Callee")
    assert stored.hangup_cause_name == "Busy Line[2026-01-01] forged"
    assert (stored.status, stored.hangup_cause_code) == ("busy", 3010)


def test_fired_calls_and_callback_columns_are_stripped(store: CallLedger) -> None:
    store.register_fired_calls(
        request_uuids=["r-1\x00"], destinations=["+919000000001\n"], from_number="91800"
    )
    fields = {
        "CallUUID": "c-1",
        "RequestUUID": "r-1",
        "To": "919000000001",
        "Event": "Hangup",
        "CallStatus": "busy",
        "HangupCauseCode": "3010",
        "HangupCauseName": "Busy\r\nLine",
    }
    store_callback(store, "hangup", fields)
    [stored] = store.lookup(request_uuids=["r-1"])
    assert (stored.call_uuid, stored.to, stored.status) == ("c-1", "+919000000001", "busy")
    assert stored.hangup_cause_name == "BusyLine"
