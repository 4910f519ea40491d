"""What the receiver does with hostile field values of an authentic, bound callback, over real HTTP.

Lenient ingest (issue 9; these were 400/422 refusals before): absurd numbers, control characters and very
long values never lose the callback. It is stored, control characters escaped, the field that does not
parse left empty, logged once in a short escaped line: never a 503, a traceback or a forged log line."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest
from test_app import (
    AUTH_TOKEN,
    Receiver,
    answer_fields,
    call_row,
    event_count,
    hangup_fields,
    new_uuid,
    running_receiver,
)

from vobiz_provider.signatures import signature_headers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import httpx

FORGED = "\n[2026-01-01, 09:00:00 UTC] {call.py:1} INFO - Done. Returned value was: completed"


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with running_receiver(monkeypatch, f"sqlite:///{tmp_path / 'callbacks.db'}") as running:
        yield running


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert not any(record.exc_info for record in caplog.records)
    assert "Traceback" not in caplog.text


# -- numbers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("Duration", "1" * 400 + ".0", id="400-digit-duration"),
        pytest.param("BillDuration", "9" * 400, id="400-digit-int"),
        pytest.param("BillRate", "1e999999999", id="huge-decimal"),
        pytest.param("TotalCost", "NaN", id="nan-decimal"),
    ],
)
def test_an_absurd_number_is_stored_with_its_field_empty_not_a_503(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, field: str, value: str
) -> None:
    call_uuid = new_uuid()
    with caplog.at_level(logging.INFO, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(call_uuid, **{field: value}))
    assert response.status_code == 200, response.text
    assert event_count(receiver, call_uuid) == 1
    assert call_row(receiver, call_uuid).status == "completed"
    assert f"{field}: " in caplog.text
    assert "1" * 201 not in caplog.text
    _no_error_logged(caplog)


# -- control characters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"HangupCauseName": "Normal\x00Hangup"}, "HangupCauseName", id="nul-in-cause"),
        pytest.param({"To": "+919876543210\x00"}, "To", id="nul-in-to"),
        pytest.param({"X-PH-Note": "a\x00b"}, "X-PH-Note", id="nul-in-unknown-field"),
        pytest.param({"X-PH-\x00": "b"}, "X-PH-", id="nul-in-a-field-name"),
        pytest.param({"HangupSource": "Callee\x1b[31m"}, "HangupSource", id="escape-sequence"),
        pytest.param({"HangupCauseName": "Busy" + FORGED}, "HangupCauseName", id="lf-in-cause"),
        pytest.param({"HangupCause": "USER_BUSY\r"}, "HangupCause", id="cr-in-cause"),
        pytest.param({"To": "+91987\t6543210"}, "To", id="tab-in-to"),
    ],
)
def test_a_control_character_is_escaped_and_the_callback_stored(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, overrides: dict[str, str], field: str
) -> None:
    call_uuid = new_uuid()
    with caplog.at_level(logging.INFO, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(call_uuid, **overrides))
    assert response.status_code == 200, response.text
    assert event_count(receiver, call_uuid) == 1
    assert call_row(receiver, call_uuid).status == "completed"
    assert "control characters" in caplog.text
    assert field in caplog.text
    _no_error_logged(caplog)
    assert all("\n" not in record.getMessage() for record in caplog.records)
    assert "\x00" not in caplog.text


def test_a_control_character_in_the_query_string_is_escaped(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    receiver.place(answer_fields(call_uuid))
    url = receiver.url("answer")
    query = urlencode({**answer_fields(call_uuid), "CallerName": "Alice\x00"})
    response = receiver.client.get(f"{url}&{query}", headers=signature_headers(url, AUTH_TOKEN))
    assert response.status_code == 200, response.text
    assert event_count(receiver, call_uuid) == 1


def test_line_breaks_are_kept_where_a_field_may_carry_free_text(receiver: Receiver) -> None:
    """Speech is recognised text and unknown fields are whatever Vobiz adds: only NUL and the like refused."""
    call_uuid = new_uuid()
    fields = {
        **answer_fields(call_uuid),
        "Speech": "yes\nplease",
        "InputType": "speech",
        "X-PH-Note": "first line\r\n\tsecond line",
    }
    response = receiver.post("gather", fields)
    assert response.status_code == 200, response.text
    assert event_count(receiver, call_uuid) == 1


# -- long values ---------------------------------------------------------------------------------------------


def test_a_60_kib_invalid_value_is_logged_short_and_the_callback_stored(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__VOBIZ__MAX_BODY_BYTES", str(256 * 1024))
    call_uuid = new_uuid()
    with caplog.at_level(logging.INFO, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(call_uuid, StartTime="7" * 61_440))
    assert response.status_code == 200, response.text
    assert "StartTime" in caplog.text
    assert "7" * 101 not in caplog.text
    assert call_row(receiver, call_uuid).start_time is None


def test_every_invalid_long_value_at_once_is_logged_in_one_short_line(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__VOBIZ__MAX_BODY_BYTES", str(256 * 1024))
    long = "x" * 30_000
    fields = {"StartTime": long, "AnswerTime": long, "EndTime": long, "SessionStart": long, "Machine": long}
    with caplog.at_level(logging.WARNING, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(new_uuid(), **fields))
    assert response.status_code == 200, response.text
    # One line for the values that do not parse, one for the raw values their columns cannot hold.
    lines = [record.getMessage() for record in caplog.records if "could not be read" in record.getMessage()]
    assert all(name in lines[0] for name in ("StartTime", "AnswerTime", "EndTime", "SessionStart"))
    assert len(lines) <= 2
    assert all(len(line) <= 1_300 for line in lines)


# -- PostgreSQL: NUL callbacks among legitimate ones ---------------------------------------------------------

LEGIT = 200
HOSTILE = 200


@pytest.mark.postgres
def test_nul_callbacks_mixed_into_concurrent_ones_cost_the_others_nothing_on_postgresql(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL makes PostgreSQL refuse the shared group-commit transaction: it must never reach the ledger
    unescaped (lenient ingest: the NUL callbacks are stored, escaped)."""
    legit = [new_uuid() for _ in range(LEGIT)]
    hostile = [new_uuid() for _ in range(HOSTILE)]
    jobs = [job for pair in zip(legit, hostile, strict=True) for job in ((pair[0], False), (pair[1], True))]
    answered: dict[str, tuple[int, float]] = {}
    with running_receiver(monkeypatch, pg_schema_url) as receiver:
        receiver.store.upgrade()
        # Warm up (connections read, engine pooled) so that the timing is the callbacks' own.
        assert receiver.post("hangup", hangup_fields(new_uuid())).status_code == 200

        def post(job: tuple[str, bool]) -> httpx.Response:
            call, nul = job
            fields = hangup_fields(call, HangupCauseName="Normal\x00Hangup") if nul else hangup_fields(call)
            started = time.monotonic()
            response = receiver.post("hangup", fields)
            answered[call] = (response.status_code, time.monotonic() - started)
            return response

        with caplog.at_level(logging.WARNING, logger="vobiz_provider"):
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(post, jobs))
            elapsed = time.monotonic() - started
        legit_status = [answered[call][0] for call in legit]
        hostile_status = [answered[call][0] for call in hostile]
        stored_legit = sum(event_count(receiver, call) for call in legit)
        stored_hostile = sum(event_count(receiver, call) for call in hostile)
        rows = [call_row(receiver, call) for call in legit[:5]]
    print(  # the figure of the review: legitimate callbacks answered, and how long the whole batch took
        f"\n{LEGIT} legit + {HOSTILE} NUL callbacks on PostgreSQL: {elapsed:.2f} s in all; legit answered "
        f"{legit_status.count(200)}/{LEGIT}, slowest {max(answered[c][1] for c in legit):.2f} s"
    )
    assert legit_status == [200] * LEGIT
    assert hostile_status == [200] * HOSTILE
    assert stored_legit == LEGIT
    assert stored_hostile == HOSTILE
    assert all(row is not None and row.status == "completed" for row in rows)
    assert "writing them one by one" not in caplog.text  # no shared batch ever failed
    _no_error_logged(caplog)
