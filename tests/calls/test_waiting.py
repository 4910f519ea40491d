"""How long a wait for a hangup lasts, and when it asks the Vobiz API instead of waiting on."""

from __future__ import annotations

import datetime
import time

import pytest

from vobiz_provider.calls.waiting import WaitWindow


def test_default_timeout_covers_ringing_talking_and_a_margin() -> None:
    assert WaitWindow.starting_now(timeout=None).timeout == 120 + 14400 + 300
    assert WaitWindow.starting_now(timeout=None, ring_timeout=30, time_limit=60).timeout == 30 + 60 + 300
    assert WaitWindow.starting_now(timeout=datetime.timedelta(minutes=2)).timeout == 120
    assert (
        WaitWindow.starting_now(timeout=None, ring_timeout="30", time_limit="x").timeout == 30 + 14400 + 300
    )


def test_the_deadline_is_absolute_and_the_api_is_asked_before_it() -> None:
    before = time.time()
    window = WaitWindow.starting_now(timeout=None, ring_timeout=30, time_limit=60)
    after = time.time()
    assert before + 390 <= window.deadline <= after + 390
    # Once the hangup is overdue (ring + talk + 60 s), and at least 60 s before the deadline.
    assert before + 150 <= window.reconcile_after <= after + 150
    short = WaitWindow.starting_now(timeout=100, ring_timeout=30, time_limit=60)
    assert short.reconcile_after == pytest.approx(short.deadline - 20, abs=0.01)


def test_the_deferral_outlasts_the_trigger_deadline() -> None:
    window = WaitWindow.starting_now(timeout=120)
    assert window.defer_timeout(5.0) == datetime.timedelta(seconds=120 + 5 + 60)
    assert window.defer_timeout(0.2) == datetime.timedelta(seconds=120 + 1 + 60)


@pytest.mark.parametrize("timeout", [0, -1, datetime.timedelta(0)])
def test_a_timeout_must_be_positive(timeout: object) -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        WaitWindow.starting_now(timeout=timeout)  # type: ignore[arg-type]
