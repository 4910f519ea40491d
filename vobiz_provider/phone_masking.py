"""Phone numbers as logs show them: masked, unless ``[vobiz] mask_phone_numbers`` is off.

A phone number is personal data. Task logs, trigger logs, the receiver's log and the exception texts that
end in them are read by more people, and kept longer, than the call records, so they show a number masked:
the country code and the last four digits stay, so that a reader can still tell calls apart and see where
they went; the digits between become ``*``. XCom and the callback store keep numbers whole (they are the
call's data, read by the DAG's own tasks).

* ``+919876543210`` → ``+91******3210``: the country code (its ITU E.164 prefix) and the last 4 digits;
  ``14155550101`` → ``1******0101`` the same without ``+``;
* a short number, where fewer than 3 digits would be hidden (``+2901234``, ``12345``): only its last 2
  digits kept (``+*****34``, ``***45``);
* a SIP URI: its user part masked as a number (``sip:+91******3210@pbx.example``) or, for a name, down to
  its first character (``sip:a***@pbx.example``); the host kept, parameters and headers dropped;
* a ``<``-joined list of destinations: each one masked (``+91******3210<+1******0101``);
* anything else (a malformed number quoted in an error message): every digit but the last 4 becomes ``*``.

The functions here read ``[vobiz] mask_phone_numbers`` (default ``true``) on every call, so a changed
setting applies at once; a setting that cannot be read counts as on.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["country_code_length", "mask_number", "masked_number", "masked_numbers", "masking_enabled"]

#: E.164 country codes of one digit (North America, Russia/Kazakhstan) and of two digits; all others have
#: three (ITU-T E.164 assignments).
_ONE_DIGIT: Final = frozenset("17")
_TWO_DIGIT_CODES: Final = (
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 62 63 64 65 66 "
    "81 82 84 86 90 91 92 93 94 95 98"
)
_TWO_DIGITS: Final = frozenset(_TWO_DIGIT_CODES.split())
#: Digits always kept at the end of a number long enough to have a masked middle.
KEPT_TAIL: Final = 4
#: Fewest digits masked: a number that would show more is treated as short.
_MIN_MASKED: Final = 3
_NUMBER: Final = re.compile(r"\+?\d+")
_SIP: Final = re.compile(r"(?P<scheme>sips?:)(?P<user>[^@;?]*)@(?P<host>[^;?]*)", re.IGNORECASE)
_DIGIT: Final = re.compile(r"\d")


def country_code_length(digits: str) -> int:
    """How many leading digits of an international number are its country code (1-3).

    :param digits: The number's digits, without ``+``.
    """
    if digits[:1] in _ONE_DIGIT:
        return 1
    if digits[:2] in _TWO_DIGITS:
        return 2
    return 3


def _mask_digits(number: str) -> str:
    plus, digits = ("+", number[1:]) if number.startswith("+") else ("", number)
    kept_head = country_code_length(digits)
    masked = len(digits) - kept_head - KEPT_TAIL
    if masked >= _MIN_MASKED:
        return f"{plus}{digits[:kept_head]}{'*' * masked}{digits[-KEPT_TAIL:]}"
    tail = 2 if len(digits) > 2 else 0
    return f"{plus}{'*' * (len(digits) - tail)}{digits[len(digits) - tail :]}"


def _mask_one(value: str) -> str:
    text = value.strip()
    if not text:
        return value
    if _NUMBER.fullmatch(text):
        return _mask_digits(text)
    sip = _SIP.match(text)
    if sip:
        user = sip["user"]
        shown = _mask_digits(user) if _NUMBER.fullmatch(user) else f"{user[:1]}***" if user else ""
        return f"{sip['scheme']}{shown}@{sip['host']}"
    # Not a number: hide every digit but the last four (a malformed number quoted in an error message).
    positions = [match.start() for match in _DIGIT.finditer(text)]
    hidden = set(positions[:-KEPT_TAIL]) if len(positions) > KEPT_TAIL else set()
    return "".join("*" if index in hidden else char for index, char in enumerate(text))


def mask_number(value: str) -> str:
    """``value`` masked (see the module's table), whatever the setting: one destination, a SIP URI, or
    destinations joined by ``<``.

    :param value: A phone number, SIP URI or ``<``-joined list of them.
    """
    if "<" in value:
        return "<".join(_mask_one(part) for part in value.split("<"))
    return _mask_one(value)


def masking_enabled() -> bool:
    """``[vobiz] mask_phone_numbers`` (default on; on when the configuration cannot be read)."""
    try:
        from airflow.configuration import conf

        return bool(conf.getboolean("vobiz", "mask_phone_numbers", fallback=True))
    except Exception:  # an unreadable setting must not print numbers whole
        return True


def masked_number(value: object) -> str:
    """``value`` as a log line or an exception text should show it: masked when
    ``[vobiz] mask_phone_numbers`` is on (the default), whole otherwise. ``None`` becomes ``"?"``.

    :param value: A destination or caller number (or SIP URI, or ``<``-joined list), or ``None``.
    """
    if value is None:
        return "?"
    text = value if isinstance(value, str) else str(value)
    return mask_number(text) if masking_enabled() else text


def masked_numbers(values: Iterable[object], *, separator: str = ", ") -> str:
    """Several numbers for one log line, each as :func:`masked_number` shows it.

    :param values: Destinations or caller numbers.
    :param separator: Put between them.
    """
    enabled = masking_enabled()
    return separator.join(
        "?" if value is None else (mask_number(str(value)) if enabled else str(value)) for value in values
    )
