"""The attribute checks of the VobizXML builder.

A check receives (element tag, attribute name, value) and returns the attribute text, or raises a
:class:`~vobiz_provider.exceptions.VobizValidationError` naming the element and the attribute.
:func:`_attr` and :func:`_content` put a check into a verb field's metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from vobiz_provider.exceptions import VobizValidationError

# XML 1.0 forbids these code points anywhere in a document; ElementTree would write them unescaped.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_DTMF_DIGITS = re.compile(r"^[0-9*#wW]+$")
_FINISH_KEYS = frozenset("0123456789*#")

# A check receives (element tag, attribute name, value) and returns the attribute text.
_Check = Callable[[str, str, Any], str]


def _fail(tag: str, name: str, message: str, value: Any) -> VobizValidationError:
    return VobizValidationError(f"<{tag}> {name} {message}, got {value!r}")


def _text(tag: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(tag, name, "must be a string", value)
    if match := _XML_ILLEGAL.search(value):
        raise _fail(tag, name, f"contains a character XML cannot carry ({match.group()!r})", value)
    return value


def _nonempty_text(tag: str, name: str, value: Any) -> str:
    text = _text(tag, name, value)
    if not text.strip():
        raise _fail(tag, name, "must not be empty", value)
    return text


def _boolean(tag: str, name: str, value: Any) -> str:
    if not isinstance(value, bool):
        raise _fail(tag, name, "must be True or False", value)
    return "true" if value else "false"


def _integer(low: int | None = None, high: int | None = None) -> _Check:
    wanted = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def check(tag: str, name: str, value: Any) -> str:
        # bool is an int subclass; loop=True is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(tag, name, f"must be {wanted}", value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise _fail(tag, name, f"must be {wanted}", value)
        return str(value)

    return check


def _integer_or_auto(low: int, high: int) -> _Check:
    as_integer = _integer(low, high)

    def check(tag: str, name: str, value: Any) -> str:
        if value == "auto":
            return "auto"
        try:
            return as_integer(tag, name, value)
        except VobizValidationError:
            raise _fail(tag, name, f'must be an integer from {low} to {high} or "auto"', value) from None

    return check


def _choice(*allowed: str, normalize: Callable[[str], str] = str) -> _Check:
    def check(tag: str, name: str, value: Any) -> str:
        if isinstance(value, str) and normalize(value) in allowed:
            return normalize(value)
        raise _fail(tag, name, "must be one of " + ", ".join(repr(a) for a in allowed), value)

    return check


_method = _choice("GET", "POST", normalize=str.upper)


def _url(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str):
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc and not re.search(r"\s", value):
            return _text(tag, name, value)
    raise _fail(tag, name, "must be an absolute http(s) URL", value)


def _language(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _LANGUAGE.match(value):
        return value
    raise _fail(tag, name, 'must be a language code such as "en-US"', value)


def _input_type(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str):
        kinds = value.lower().split()
        if kinds and len(set(kinds)) == len(kinds) and set(kinds) <= {"dtmf", "speech"}:
            return "dtmf speech" if len(kinds) == 2 else kinds[0]
    raise _fail(tag, name, "must be 'dtmf', 'speech' or 'dtmf speech'", value)


def _finish_on_key(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and (value == "" or value == "none" or value in _FINISH_KEYS):
        return value
    raise _fail(tag, name, 'must be one key of 0-9, * or #, or "" / "none" to disable it', value)


def _hints(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str):
        return _nonempty_text(tag, name, value)
    if isinstance(value, Sequence) and value and all(isinstance(h, str) and h.strip() for h in value):
        return _text(tag, name, ",".join(h.strip() for h in value))
    raise _fail(tag, name, "must be a comma-separated string or a non-empty list of strings", value)


def _dtmf_digits(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _DTMF_DIGITS.match(value):
        return value
    # Vobiz silently ignores a DTMF element with any other character; refuse it instead.
    raise _fail(tag, name, "must contain only 0-9, *, #, w and W", value)


_PHONE = re.compile(r"^\+?[0-9]{2,15}$")
_SEND_DIGITS = re.compile(r"^[0-9*#wW]+(@[0-9]{2,5})?$")
_DIGITS_PATTERNS = re.compile(r"^[0-9*#]+(,[0-9*#]+)*$")
_SIP_HEADERS = re.compile(r"^[A-Za-z0-9_-]+=[^,=\s]+(,[A-Za-z0-9_-]+=[^,=\s]+)*$")
_SIP_URI = re.compile(r"^sips?:[^@\s]+@[^@\s]+$")


def _phone_number(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _PHONE.match(value.strip()):
        return value.strip()
    raise _fail(tag, name, "must be a phone number in E.164 form (digits, optionally after +)", value)


def _send_digits(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _SEND_DIGITS.match(value):
        return value
    raise _fail(tag, name, "must be 0-9, *, #, w and W, optionally ending with @<milliseconds>", value)


def _digits_match(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _DIGITS_PATTERNS.match(value):
        return value
    raise _fail(tag, name, "must be comma-separated patterns of 0-9, * and #", value)


def _sip_headers(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _SIP_HEADERS.match(value):
        return value
    raise _fail(tag, name, "must be comma-separated name=value pairs", value)


def _sip_uri(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str) and _SIP_URI.match(value.strip()):
        return _text(tag, name, value.strip())
    raise _fail(tag, name, "must be a SIP URI such as sip:alice@example.com", value)


def _stream_url(tag: str, name: str, value: Any) -> str:
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme in ("ws", "wss") and parts.netloc and not re.search(r"\s", value.strip()):
            return _text(tag, name, value.strip())
    raise _fail(tag, name, "must be an absolute ws(s) URL", value)


def _sound(*words: str, urls: bool = True) -> _Check:
    """One of ``words``, or (with ``urls``) an absolute http(s) URL."""
    wanted = " or ".join([*(repr(w) for w in words), *(["an absolute http(s) URL"] if urls else [])])

    def check(tag: str, name: str, value: Any) -> str:
        if isinstance(value, str) and value in words:
            return value
        if urls:
            try:
                return _url(tag, name, value)
            except VobizValidationError:
                pass
        raise _fail(tag, name, f"must be {wanted}", value)

    return check


def _text_max(limit: int) -> _Check:
    def check(tag: str, name: str, value: Any) -> str:
        text = _nonempty_text(tag, name, value)
        if len(text) > limit:
            raise _fail(tag, name, f"must be at most {limit} characters", value)
        return text

    return check


def _finish_keys(tag: str, name: str, value: Any) -> str:
    """Several keys (``<Record finishOnKey>``): any of 0-9, * and #, or ``""`` / ``"none"``."""
    if isinstance(value, str) and (value in ("", "none") or (value and set(value) <= _FINISH_KEYS)):
        return value
    raise _fail(tag, name, 'must be keys among 0-9, * and #, or "" / "none" to disable them', value)


def _attr(name: str, check: _Check) -> dict[str, Any]:
    """Field metadata: the field is rendered as the XML attribute ``name``; ``None`` leaves it out."""
    return {"attr": name, "check": check}


def _content(check: _Check) -> dict[str, Any]:
    """Field metadata: the field is the element's text content."""
    return {"content": check}
