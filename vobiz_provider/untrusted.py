"""Values from outside (Vobiz's callbacks and API answers) made fit for a log line, an error message or the
ledger.

Whoever posts to the receiver chooses every field value, and the task logs show some of them (hangup cause,
destination, digits...). So:

* :func:`loggable` — any value as one log line's worth of text: every non-printable character escaped as
  ``repr`` does (``\\n``, ``\\x00``, ``\\u2028``), at most :data:`LOG_VALUE_LIMIT` characters. A CR/LF in a
  field can then never start a forged line in a task log or an exception message.
* :func:`quoted` — ``repr(value)``, cut to :data:`QUOTE_LIMIT` characters: for error messages that quote the
  input (a 422 never echoes 64 KiB back).
* :func:`strip_controls` — text without C0/C1 control characters, for the ledger's columns (PostgreSQL
  refuses NUL).
* :func:`control_character` — the first C0 control character of a text.
* :func:`escape_controls` — text with its C0 control characters written as ``\\x00``, ``\\r``...: what the
  receiver keeps of a callback field that carries them.

Imports nothing but :mod:`re`: DAG-facing modules use it at DAG-parse time.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "LOG_VALUE_LIMIT",
    "MAX_NUMBER_LENGTH",
    "QUOTE_LIMIT",
    "control_character",
    "escape_controls",
    "loggable",
    "quoted",
    "strip_controls",
]

#: Most characters of one value written to a log line (a SIP URI or a digit string fits).
LOG_VALUE_LIMIT: Final = 200
#: Most characters of an input value quoted in an error message.
QUOTE_LIMIT: Final = 100
#: Most characters of a number's text (Vobiz's numbers have a handful of digits): longer ones are refused
#: before they are converted, so that no conversion overflows or takes long.
MAX_NUMBER_LENGTH: Final = 32

# C0 (with tab, CR and LF), DEL and C1: never part of a value the ledger stores.
_CONTROLS: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_C0: Final = re.compile("[\x00-\x1f]")
_C0_BUT_LINE_BREAKS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _cut(text: str, limit: int) -> tuple[str, str]:
    """``text`` cut to ``limit`` characters, and what to say after it when it was longer."""
    if len(text) <= limit:
        return text, ""
    return text[:limit], f"... ({len(text)} characters)"


def loggable(value: object, *, limit: int = LOG_VALUE_LIMIT) -> str:
    """``value`` as text for one log line: non-printable characters escaped, at most ``limit`` of them.

    :param value: Any value (``str()`` of a non-string).
    :param limit: Most characters kept; a longer value ends with ``... (N characters)``.
    """
    head, tail = _cut(value if isinstance(value, str) else str(value), limit)
    if not head.isprintable():
        head = "".join(char if char.isprintable() else repr(char)[1:-1] for char in head)
    return head + tail


def quoted(value: object, *, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, the text cut to ``limit`` characters.

    :param value: The input value being refused.
    :param limit: Most characters of a string kept; a longer one ends with ``... (N characters)``.
    """
    if not isinstance(value, str):
        return loggable(repr(value), limit=limit)
    head, tail = _cut(value, limit)
    return repr(head) + tail


def strip_controls(text: str) -> str:
    """``text`` without C0 and C1 control characters (tab, CR, LF and DEL included).

    :param text: A value about to be stored.
    """
    return _CONTROLS.sub("", text)


def control_character(text: str, *, line_breaks: bool = False) -> str | None:
    """The first C0 control character in ``text`` (NUL, ESC, CR, LF, ...), or ``None``.

    :param text: A field name or value.
    :param line_breaks: Whether tab, CR and LF are allowed (free text).
    """
    found = (_C0_BUT_LINE_BREAKS if line_breaks else _C0).search(text)
    return found.group() if found else None


def escape_controls(text: str, *, line_breaks: bool = False) -> str:
    """``text`` with each C0 control character escaped as ``repr`` writes it (``\\x00``, ``\\x1b``, ``\\r``).

    :param text: A field name or value.
    :param line_breaks: Whether tab, CR and LF are kept as they are (free text).
    """
    pattern = _C0_BUT_LINE_BREAKS if line_breaks else _C0
    return pattern.sub(lambda found: repr(found.group())[1:-1], text)
