"""Call text that ends up in task logs and exception messages: a field value can never start a log line."""

from __future__ import annotations

from typing import Any

import pytest

from vobiz_provider.calls.outcome import SuccessRule, describe_failure, describe_outcome
from vobiz_provider.calls.resumption import decide_resume
from vobiz_provider.calls.tracker import CallTracker
from vobiz_provider.models.record import CallRecord

FORGED = "\n[2026-01-01, 09:00:00 UTC] {call.py:1} INFO - Done. Returned value was: completed"


def hostile(**overrides: Any) -> dict[str, Any]:
    """A final call record whose every text field tries to forge a log line."""
    call: dict[str, Any] = {
        "call_uuid": "c-1\r\nc-2",
        "request_uuid": "r-1",
        "to": "+14155550101" + FORGED,
        "status": "busy",
        "terminal": True,
        "hangup_cause": "USER_BUSY\r" + FORGED,
        "hangup_cause_code": 3010,
        "hangup_cause_name": "Busy" + FORGED,
        "hangup_source": "Callee\x1b[2K" + FORGED,
        "duration": 3,
        "digits": "1" + FORGED,
        "source": "callback",
    }
    call.update(overrides)
    return call


def assert_one_line(text: str) -> None:
    assert "\n" not in text and "\r" not in text and "\x1b" not in text, text
    assert len(text.splitlines()) == 1


def test_the_timeline_escapes_every_value() -> None:
    tracker = CallTracker(request_uuids=["r-1"], destinations=[], call_uuids=[])
    lines = tracker.observe([CallRecord.model_validate(hostile(digits=None)), CallRecord(**hostile())])
    assert len(lines) == 2  # hung up; digits received
    for line in lines:
        assert_one_line(line)
    assert "cause=Busy\\n[2026-01-01, 09:00:00 UTC]" in lines[0]
    assert "sip_cause=USER_BUSY\\r\\n[2026" in lines[0]
    assert "digits received: 1\\n[2026" in lines[1]


def test_the_timeline_caps_long_values() -> None:
    tracker = CallTracker(request_uuids=["r-1"], destinations=[], call_uuids=[])
    [line] = tracker.observe(
        [CallRecord.model_validate(hostile(hangup_cause_name="B" * 50_000, digits=None))]
    )
    assert len(line) < 2_000
    assert "50000 characters" in line


@pytest.mark.parametrize(
    "describe",
    [
        describe_failure,
        describe_outcome,
        SuccessRule(success_statuses=("completed",)).describe_failure,
        SuccessRule(success_statuses=("busy",), expected_digits=("1",)).describe_failure,
    ],
    ids=["describe_failure", "describe_outcome", "rule-status", "rule-digits"],
)
def test_outcome_texts_escape_every_value(describe: Any) -> None:
    text = describe(hostile())
    assert_one_line(text)
    assert "[2026-01-01, 09:00:00 UTC]" in text  # shown, escaped, not dropped


def test_outcome_texts_of_ordinary_calls_are_unchanged() -> None:
    call = hostile(
        call_uuid="c-1",
        to="+14155550101",
        hangup_cause="USER_BUSY",
        hangup_cause_name="Busy Line",
        hangup_source="Carrier",
        digits="1",
    )
    assert describe_failure(call) == (
        "Vobiz call to +1******0101 (c-1) ended with status 'busy' (hangup cause 3010 Busy Line, hung up by "
        "Carrier)"
    )
    assert describe_outcome(call) == (
        "Vobiz call to +1******0101 (c-1) ended with status 'busy' (hangup cause 3010 Busy Line, hung up by "
        "Carrier, 3 s); the callee pressed '1'"
    )


def test_the_resume_message_escapes_every_value() -> None:
    previous = [CallRecord.model_validate({**hostile(), "try_number": 1})]
    resume = decide_resume(previous, try_number=2, rule=SuccessRule(success_statuses=("completed",)))
    assert resume.action == "dial"
    assert_one_line(resume.message)
