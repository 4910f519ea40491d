"""Annotated field types shared by the response and callback models.

Vobiz sends numbers as JSON numbers or as strings, blanks for "not applicable", and three different time
formats (see ``vobiz-api.md`` §0). These types absorb that variance once:

* :data:`LenientInt`, :data:`LenientFloat`, :data:`LenientDecimal` — numbers or numeric strings; ``""``
  and ``None`` become ``None``. A numeric text longer than 32 characters, a value that is not finite, an
  integer beyond 10**32 or a decimal exponent beyond ±32 is refused with a validation error naming the
  field, before any conversion that could overflow (``int(float("1" * 400))``) or take long.
* :data:`UtcDateTime` — ISO-8601 (``...Z`` or with an offset; naive means UTC) → pendulum ``DateTime`` in
  UTC. Serialised as ISO-8601.
* :data:`UtcSessionTime` — ``YYYY-MM-DD HH:mm:ss[.ffffff]`` in UTC (``SessionStart``).
* :data:`LocalDateTime` — ``yyyy-MM-dd HH:mm:ss`` in the account's local timezone, taken from the
  validation context ``{"timezone": "Asia/Kolkata"}`` (default UTC); ``""`` and ``"0"`` mean "never"
  (e.g. an unanswered call's ``AnswerTime``).

Both callback time types also read the other spellings Vobiz's pages show (:func:`read_time`): a fraction,
a zone suffix (``2026-12-02 21:22:36.000000 UTC``), ISO 8601 with ``Z`` or an offset; a zone suffix or an
offset overrides the assumed zone. ``"null"`` and ``"None"`` are blanks.

Times are always held as UTC instants. When serialising with the context ``{"form": True, "timezone":
...}`` the two callback time types are rendered back in Vobiz's own format; otherwise as ISO-8601.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

import pendulum
from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    PlainValidator,
    SerializationInfo,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from vobiz_provider.untrusted import MAX_NUMBER_LENGTH, quoted

__all__ = [
    "LOCAL_TIME_FORMAT",
    "SESSION_TIME_FORMAT",
    "LenientDecimal",
    "LenientFloat",
    "LenientInt",
    "LocalDateTime",
    "UtcDateTime",
    "UtcSessionTime",
    "blank_to_none",
    "read_time",
    "resolve_timezone",
]

#: ``StartTime``/``AnswerTime``/``EndTime`` of callbacks (strftime form of ``yyyy-MM-dd HH:mm:ss``).
LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: ``SessionStart`` (UTC), e.g. ``2026-06-11 16:03:28.586839``.
SESSION_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

_BLANKS = ("", "null", "None")
#: ``12`` or ``12.000``: a whole number, read exactly (never through a float, which overflows).
_WHOLE: Final = re.compile(r"[+-]?\d+(?:\.0*)?")
#: Largest magnitude of a number (its decimal exponent), either way.
_MAX_EXPONENT: Final = MAX_NUMBER_LENGTH


def blank_to_none(value: Any) -> Any:
    """Map ``""`` (and whitespace) to ``None``; leave everything else alone."""
    if isinstance(value, str) and value.strip() in _BLANKS:
        return None
    return value


def _number_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("vobiz_number", message)


def _bounded_number(value: Any) -> Any:
    """``value`` with blanks as ``None`` and its text stripped; refused when no Vobiz number is that long."""
    value = blank_to_none(value)
    if isinstance(value, str):
        value = value.strip()
        if len(value) > MAX_NUMBER_LENGTH:
            raise _number_error(f"a number of {len(value)} characters (at most {MAX_NUMBER_LENGTH})")
    elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        _check_magnitude(value)
    return value


def _check_magnitude(value: float | Decimal) -> None:
    """Refuse what no Vobiz number is: not finite; an integer of more than 32 digits; a decimal whose
    exponent is beyond 32 either way (``format(Decimal("1e-999999999"), "f")`` is a billion characters)."""
    if isinstance(value, Decimal):
        finite, huge = value.is_finite(), value.is_finite() and abs(value.adjusted()) > _MAX_EXPONENT
    elif isinstance(value, float):
        finite, huge = math.isfinite(value), False
    else:
        finite, huge = True, abs(value) >= 10**_MAX_EXPONENT
    if not finite:
        raise _number_error(f"{quoted(str(value))} is not a finite number")
    if huge:
        raise _number_error(f"a number of magnitude beyond 10**±{_MAX_EXPONENT}")


def _lenient_int(value: Any) -> Any:
    value = _bounded_number(value)
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return int(value.partition(".")[0])
    return value


def _finite_float(value: float | None) -> float | None:
    if value is not None:
        _check_magnitude(value)
    return value


def resolve_timezone(name: str | None) -> pendulum.Timezone | pendulum.FixedTimezone:
    """The pendulum timezone called ``name`` (``None`` → UTC).

    :param name: IANA name such as ``Asia/Kolkata``, or ``UTC``.
    :raises ValueError: for an unknown timezone name.
    """
    if not name:
        return pendulum.UTC
    return _load_timezone(name)


@functools.lru_cache(maxsize=64)
def _load_timezone(name: str) -> pendulum.Timezone | pendulum.FixedTimezone:
    # pendulum re-reads the tzfile on every call (~100 µs); a callback resolves its account's zone 3 times.
    try:
        return pendulum.timezone(name)
    except Exception as exc:  # pendulum raises InvalidTimezone (a ValueError) or ZoneInfo errors
        raise ValueError(f"unknown timezone {quoted(name)}") from exc


def _context_timezone(context: Any) -> pendulum.Timezone | pendulum.FixedTimezone:
    name = context.get("timezone") if isinstance(context, dict) else None
    return resolve_timezone(name)


def _to_utc(value: dt.datetime, assume: Any) -> pendulum.DateTime:
    if value.tzinfo is None:
        return pendulum.instance(value, tz=assume).in_timezone("UTC")
    return pendulum.instance(value).in_timezone("UTC")


def _parse_utc(value: Any) -> pendulum.DateTime | None:
    value = blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _to_utc(value, pendulum.UTC)
    if isinstance(value, str):
        try:
            parsed = pendulum.parse(value.strip(), tz="UTC")
        except Exception:
            raise PydanticCustomError("vobiz_time", f"{quoted(value)} is not an ISO-8601 time") from None
        if isinstance(parsed, dt.datetime):
            return _to_utc(parsed, pendulum.UTC)
    raise PydanticCustomError("vobiz_time", f"{quoted(value)} is not an ISO-8601 time")


#: A zone named after the time (``... UTC``, as the Make-a-call page prints ``SessionStart``), or ``Z``.
_ZONE_SUFFIX: Final = re.compile(r"\s*(?:UTC|GMT|Z)\Z", re.IGNORECASE)
#: The spellings of a time without a zone: Vobiz's own, with or without a fraction, and ISO 8601's.
_NAIVE_FORMATS: Final = (
    LOCAL_TIME_FORMAT,
    SESSION_TIME_FORMAT,
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
)


#: Vobiz's own spelling, the one every callback carries: read without strptime and pendulum (~10x faster).
_PLAIN_TIME: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_UTC_ZONES: Final = (pendulum.UTC, dt.timezone.utc)


def _read_plain(text: str, zone: Any) -> pendulum.DateTime | None:
    """``read_time`` of ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in ``zone``; ``None`` to take the general path
    (another spelling, an impossible date, or a local time that a DST change skips)."""
    match = _PLAIN_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        naive = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )  # fmt: skip
    except ValueError:
        return None
    if zone in _UTC_ZONES:
        instant = naive
    elif isinstance(zone, dt.tzinfo):
        utc = naive.replace(tzinfo=zone).astimezone(dt.timezone.utc)
        if utc.astimezone(zone).replace(tzinfo=None) != naive:
            return None  # in a gap: pendulum's rule applies
        instant = utc.replace(tzinfo=None)
    else:
        return None
    return pendulum.DateTime(
        instant.year, instant.month, instant.day, instant.hour, instant.minute, instant.second,
        instant.microsecond, tzinfo=pendulum.UTC,
    )  # fmt: skip


def read_time(text: str, assume: Any) -> pendulum.DateTime | None:
    """The UTC instant a Vobiz time spells, or ``None`` when it spells none.

    ``2026-12-02 21:22:36``, with a fraction (``.000000``), with a zone suffix (``UTC``, ``GMT``, ``Z``), with
    ``T`` between date and time, or ISO 8601 with an offset (``+05:30``). A zone suffix or an offset
    overrides ``assume``, the zone of a naive time.

    :param text: The field's value.
    :param assume: The pendulum timezone of a time that names none.
    """
    text = text.strip()
    plain = _read_plain(text, assume)
    if plain is not None:
        return plain
    zone = assume
    suffix = _ZONE_SUFFIX.search(text)
    if suffix is not None:
        text, zone = text[: suffix.start()], pendulum.UTC
    for fmt in _NAIVE_FORMATS:
        try:
            return _to_utc(dt.datetime.strptime(text, fmt), zone)
        except ValueError:
            continue
    try:
        parsed: Any = dt.datetime.fromisoformat(text)  # an offset: +05:30, +00:00
    except ValueError:
        try:
            parsed = pendulum.parse(text, tz=zone)
        except Exception:
            return None
    return _to_utc(parsed, zone) if isinstance(parsed, dt.datetime) else None


def _parse_session(value: Any) -> pendulum.DateTime | None:
    value = blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _to_utc(value, pendulum.UTC)
    if isinstance(value, str):
        parsed = read_time(value, pendulum.UTC)
        if parsed is not None:
            return parsed
    raise PydanticCustomError("vobiz_time", f"{quoted(value)} is not a UTC session time")


def _parse_local(value: Any, info: ValidationInfo) -> pendulum.DateTime | None:
    value = blank_to_none(value)
    if value is None or value == "0" or value == 0:
        return None
    try:
        zone = _context_timezone(info.context)
    except ValueError as exc:
        raise PydanticCustomError("vobiz_time", str(exc)) from None
    if isinstance(value, dt.datetime):
        return _to_utc(value, zone)
    if isinstance(value, str):
        parsed = read_time(value, zone)
        if parsed is not None:
            return parsed
    raise PydanticCustomError("vobiz_time", f"{quoted(value)} is not a local time 'yyyy-MM-dd HH:mm:ss'")


def _is_form(info: SerializationInfo) -> bool:
    context = info.context
    return isinstance(context, dict) and bool(context.get("form"))


def _serialize_utc(value: dt.datetime, info: SerializationInfo) -> Any:
    if info.mode == "json" or _is_form(info):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _serialize_session(value: dt.datetime, info: SerializationInfo) -> Any:
    if _is_form(info):
        return value.astimezone(dt.timezone.utc).strftime(SESSION_TIME_FORMAT)
    return _serialize_utc(value, info)


def _serialize_local(value: dt.datetime, info: SerializationInfo) -> Any:
    if _is_form(info):
        zone = _context_timezone(info.context)
        return pendulum.instance(value).in_timezone(zone).strftime(LOCAL_TIME_FORMAT)
    return _serialize_utc(value, info)


def _lenient_decimal(value: Any) -> Any:
    value = _bounded_number(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return value  # let pydantic report it
        _check_magnitude(number)
        return number
    return value


def _decimal_text(value: Decimal, info: SerializationInfo) -> Any:
    if info.mode == "json" or _is_form(info):
        return format(value, "f")
    return value


LenientInt = Annotated[int | None, BeforeValidator(_lenient_int)]
LenientFloat = Annotated[float | None, BeforeValidator(_bounded_number), AfterValidator(_finite_float)]
LenientDecimal = Annotated[
    Decimal | None,
    BeforeValidator(_lenient_decimal),
    PlainSerializer(_decimal_text, when_used="unless-none"),
]
UtcDateTime = Annotated[
    dt.datetime | None,
    PlainValidator(_parse_utc),
    PlainSerializer(_serialize_utc, when_used="unless-none"),
]
UtcSessionTime = Annotated[
    dt.datetime | None,
    PlainValidator(_parse_session),
    PlainSerializer(_serialize_session, when_used="unless-none"),
]
LocalDateTime = Annotated[
    dt.datetime | None,
    PlainValidator(_parse_local),
    PlainSerializer(_serialize_local, when_used="unless-none"),
]
