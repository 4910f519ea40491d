"""The hangup-cause table and the emulator's outcome presets."""

from __future__ import annotations

import pytest

from vobiz_provider.models.call import TERMINAL_STATUSES, CallStatus
from vobiz_provider.models.hangup_causes import (
    HANGUP_CAUSES,
    HANGUP_SOURCES,
    OUTCOMES,
    SIP_CAUSES,
    describe_hangup_cause,
    lookup,
    lookup_name,
)

# A sample of rows exactly as docs.vobiz.ai/concepts/hangup-causes prints them.
DOCUMENTED = {
    0: ("Unknown", "Canceled"),
    1000: ("Canceled", "Canceled"),
    1020: ("Canceled (Simultaneous dial limit reached)", "Canceled"),
    2000: ("Invalid Destination Address", "Destination"),
    3000: ("No Answer", "Rejections"),
    3010: ("Busy Line", "Rejections"),
    3020: ("Rejected", "Rejections"),
    # The page writes these in sentence case, unlike their neighbours: kept as written.
    3050: ("Unallocated number", "Rejections"),
    3070: ("Request timeout", "Carrier"),
    3080: ("Carrier internal error", "Carrier"),
    3090: ("Network congestion", "Carrier"),
    3100: ("Busy everywhere", "Carrier"),
    3120: ("User does not exist", "Carrier"),
    3130: ("Spam block", "Carrier"),
    4000: ("Normal Hangup", "Normal"),
    4010: ("End Of XML Instructions", "Normal"),
    5000: ("Network Error", "System"),
    5030: ("Concurrency Limit Breached", "System"),
    6000: ("Scheduled Hangup", "Timeouts"),
    6010: ("Ring Timeout Reached", "Timeouts"),
    7011: ("Error Reaching Answer URL", "URL errors"),
    8011: ("Invalid Answer XML", "XML errors"),
    9100: ("Machine Detected", "Special"),
}


@pytest.mark.parametrize(("code", "expected"), DOCUMENTED.items())
def test_documented_rows(code: int, expected: tuple[str, str]) -> None:
    cause = lookup(code)
    assert cause is not None
    assert (cause.name, cause.group) == expected


def test_table_is_consistent() -> None:
    assert len(HANGUP_CAUSES) == 54
    for code, cause in HANGUP_CAUSES.items():
        assert cause.code == code
        assert cause.sip_cause in SIP_CAUSES


def test_lookup_accepts_strings_and_rejects_unknowns() -> None:
    assert lookup("4000") is HANGUP_CAUSES[4000]
    assert lookup(" 3010 ") is HANGUP_CAUSES[3010]
    assert lookup(1234) is None
    assert lookup("NORMAL_CLEARING") is None
    assert lookup(None) is None
    assert lookup(True) is None


def test_describe_never_fails() -> None:
    assert describe_hangup_cause(4010).name == "End Of XML Instructions"
    unknown = describe_hangup_cause(4242)
    assert (unknown.code, unknown.name, unknown.sip_cause) == (4242, "Unknown", "UNKNOWN")


def test_lookup_by_name_is_case_insensitive() -> None:
    assert lookup_name("end of xml instructions") is HANGUP_CAUSES[4010]
    assert lookup_name("Invalid Answer XML") is HANGUP_CAUSES[8011]
    assert lookup_name("nope") is None
    assert lookup_name("") is None


@pytest.mark.parametrize(
    ("outcome", "status", "code", "sip_cause", "source"),
    [
        ("completed", "completed", 4000, "NORMAL_CLEARING", "Callee"),
        ("completed_by_xml", "completed", 4010, "NORMAL_CLEARING", "Answer XML"),
        ("busy", "busy", 3010, "USER_BUSY", "Callee"),
        ("no_answer", "no-answer", 3000, "NO_ANSWER", "Callee"),
        ("ring_timeout", "timeout", 6010, "NO_ANSWER", "Vobiz"),
        ("failed", "failed", 2000, "INVALID_NUMBER", "Vobiz"),
        ("network_error", "failed", 5000, "NETWORK_OUT_OF_ORDER", "Vobiz"),
        ("rejected", "busy", 3020, "CALL_REJECTED", "Callee"),
        ("machine_hangup", "completed", 9100, "NORMAL_CLEARING", "Vobiz"),
        ("answer_url_error", "completed", 7011, "NORMAL_CLEARING", "Error"),
        ("invalid_answer_xml", "completed", 8011, "NORMAL_CLEARING", "Error"),
        ("canceled", "cancel", 1000, "ORIGINATOR_CANCEL", "API Request"),
        ("time_limit", "completed", 6000, "NORMAL_CLEARING", "Vobiz"),
    ],
)
def test_outcome_presets(outcome: str, status: str, code: int, sip_cause: str, source: str) -> None:
    preset = OUTCOMES[outcome]
    assert (preset.status, preset.code, preset.sip_cause, preset.source) == (status, code, sip_cause, source)
    assert preset.name == HANGUP_CAUSES[code].name


def test_every_preset_is_terminal_and_answered_only_when_completed() -> None:
    for preset in OUTCOMES.values():
        assert preset.status in TERMINAL_STATUSES
        assert preset.source in HANGUP_SOURCES
        assert preset.answered == (preset.status == CallStatus.COMPLETED)
