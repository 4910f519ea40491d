"""Values from outside (callbacks, API answers) made fit for log lines, error messages and the ledger."""

from __future__ import annotations

import pytest

from vobiz_provider.untrusted import (
    LOG_VALUE_LIMIT,
    QUOTE_LIMIT,
    control_character,
    loggable,
    quoted,
    strip_controls,
)

FORGED = "Busy\n[2026-01-01, 09:00:00 UTC] {call.py:1} INFO - Done. Returned value was: completed"


def test_loggable_escapes_every_line_break_and_control_character() -> None:
    shown = loggable(FORGED)
    assert shown == FORGED.replace("\n", "\\n")
    for value in ("a\rb", "a\r\nb", "a\x00b", "a\x1bb", "a\x85b", "a\u2028b", "a\u2029b", "a\x0bb", "a\x1eb"):
        shown = loggable(value)
        assert shown.isprintable(), repr(shown)
        assert len(shown.splitlines()) == 1
    assert loggable("a\tb\x00") == "a\\tb\\x00"


def test_loggable_leaves_ordinary_text_alone() -> None:
    for value in ("Normal Hangup", "+919876543210", "sip:alice@example.com", "José Müller", "₹ 0.50"):
        assert loggable(value) == value
    assert loggable(None) == "None"
    assert loggable(4000) == "4000"


def test_loggable_caps_the_length() -> None:
    shown = loggable("x" * 70_000)
    assert shown.startswith("x" * LOG_VALUE_LIMIT)
    assert len(shown) < LOG_VALUE_LIMIT + 40
    assert "70000 characters" in shown
    assert loggable("abcdef", limit=3) == "abc... (6 characters)"
    # Escaping happens after the cut: a value of control characters cannot grow past a few times the limit.
    assert len(loggable("\x00" * 10_000, limit=10)) < 100


def test_quoted_is_a_short_repr() -> None:
    assert quoted("yesterday") == "'yesterday'"
    assert quoted("a\nb") == "'a\\nb'"
    shown = quoted("9" * 61_440)
    assert shown.startswith("'" + "9" * QUOTE_LIMIT + "'")
    assert len(shown) < QUOTE_LIMIT + 40
    assert "61440 characters" in shown
    assert quoted(12) == "12"


def test_strip_controls_removes_c0_and_c1_only() -> None:
    assert strip_controls("Busy\r\n Line\x00\x7f\x85\x9f\t") == "Busy Line"
    assert strip_controls("José ₹ +91 98765") == "José ₹ +91 98765"


@pytest.mark.parametrize(
    ("value", "line_breaks", "found"),
    [
        ("plain text", False, None),
        ("a\x00b", False, "\x00"),
        ("a\x00b", True, "\x00"),
        ("a\x1bb", True, "\x1b"),
        ("a\nb", False, "\n"),
        ("a\tb", False, "\t"),
        ("a\r\nb\tc", True, None),
        ("a\x7fb\x85", False, None),  # DEL and C1 are not C0: stored as they are, escaped in logs
    ],
)
def test_control_character_finds_the_first_c0_character(value: str, line_breaks: bool, found: str) -> None:
    assert control_character(value, line_breaks=line_breaks) == found
