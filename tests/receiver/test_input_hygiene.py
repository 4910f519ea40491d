"""What the receiver does with hostile field values, over real HTTP: absurd numbers, control characters and
very long values are refused with a 4xx naming the field, never stored, never a 503 or a traceback."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
from test_app import (
    Receiver,
    hangup_fields,
    new_uuid,
    nothing_stored,
    running_receiver,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


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
def test_an_absurd_number_is_422_naming_the_field_not_a_503(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, field: str, value: str
) -> None:
    call_uuid = new_uuid()
    with caplog.at_level(logging.INFO, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(call_uuid, **{field: value}))
    assert response.status_code == 422, response.text
    assert f"{field}: " in response.json()["detail"]
    assert len(response.text) < 300
    assert nothing_stored(receiver, call_uuid)
    _no_error_logged(caplog)
