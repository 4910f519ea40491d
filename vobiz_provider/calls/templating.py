"""What can be checked when the DAG is parsed, and what only once Airflow renders the arguments.

Shared by the operator and the notifier: static values are validated at parse time (a typo breaks the DAG
import, not a run), templated or lazily resolved ones when the task runs, always before anything is sent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models.call import MakeCallRequest

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from vobiz_provider.models.answer import AnswerSpec, GatherSpec

__all__ = [
    "KEYPAD",
    "MESSAGE_PLACEHOLDER",
    "RECEIVER_ANSWER_PLACEHOLDER",
    "build_answer_spec",
    "check_expected_digits",
    "check_static_answer",
    "check_static_request",
    "needs_rendering",
    "parse_expected_digits",
    "positive_seconds",
]

_JINJA_MARKERS: Final = ("{{", "{%", "{#")
#: The keys a callee can press (what ``expected_digits`` may contain).
KEYPAD: Final = frozenset("0123456789*#")


def needs_rendering(value: Any) -> bool:
    """Whether ``value`` can only be checked once rendered: it holds Jinja, or a lazily resolved value.

    Strings need rendering when they contain Jinja markers; lists, tuples and dicts when any item does;
    numbers, booleans, ``None`` and pydantic models (e.g. a ``GatherSpec``) never; anything else
    (``XComArg``, ``MappedArgument``, ...) is resolved by Airflow at run time, so always.

    :param value: An operator's or notifier's argument value.
    """
    if isinstance(value, str):
        return any(marker in value for marker in _JINJA_MARKERS)
    if value is None or isinstance(value, (bool, int, float, BaseModel)):
        return False
    if isinstance(value, (list, tuple)):
        return any(needs_rendering(item) for item in value)
    if isinstance(value, dict):
        return any(needs_rendering(item) for item in value.values())
    return True


#: Stands in for the receiver's answer URL while a request is validated; never sent (the real URL, which
#: carries the correlation token, replaces it just before dialling).
RECEIVER_ANSWER_PLACEHOLDER: Final = "https://receiver.invalid/vobiz/callbacks/answer"
#: Stands in for a templated message while the other spoken-message arguments are checked at parse time.
MESSAGE_PLACEHOLDER: Final = "message"


def check_static_request(fields: Mapping[str, Any], *, template_fields: Collection[str]) -> None:
    """Validate, at parse time, the Make-Call fields whose values are known (not templated or lazy).

    :param fields: The Make-Call fields that are set, by their Python names.
    :param template_fields: The fields Airflow renders (only those may still hold templates).
    :raises VobizValidationError: Naming every invalid field.
    """
    static = {
        name: value
        for name, value in fields.items()
        if name not in template_fields or not needs_rendering(value)
    }
    MakeCallRequest.validate_fields(**static)


def check_static_answer(
    *, message: Any, gather: Any, voice: Any, language: Any, loop: Any
) -> AnswerSpec | None:
    """Validate, at parse time, what is known of a spoken message; ``None`` if nothing can be checked yet.

    A templated message stands in as :data:`MESSAGE_PLACEHOLDER`; a templated keypad prompt is left out (or,
    with no message either, nothing is checked).

    :raises VobizValidationError: Naming the invalid field.
    """
    if message is not None and needs_rendering(message):
        message = MESSAGE_PLACEHOLDER
    if gather is not None and needs_rendering(gather):
        if message is None:
            return None
        gather = None
    return build_answer_spec(message=message, gather=gather, voice=voice, language=language, loop=loop)


def build_answer_spec(*, message: Any, gather: Any, voice: Any, language: Any, loop: Any) -> AnswerSpec:
    """The validated :class:`~vobiz_provider.models.answer.AnswerSpec` of these arguments.

    :raises VobizValidationError: Naming the invalid field.
    """
    # models.answer builds two pydantic models: loaded when a DAG speaks a message, not by every DAG (B4).
    from vobiz_provider.models.answer import AnswerSpec

    return AnswerSpec.build(message=message, voice=voice, language=language, loop=loop, gather=gather)


def positive_seconds(value: float | timedelta) -> float:
    """A wait timeout in seconds, refused unless positive.

    :param value: Seconds or a ``timedelta``.
    :raises ValueError: When it is zero or negative.
    """
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if total <= 0:
        raise ValueError(f"timeout must be positive, got {value!r}")
    return total


def parse_expected_digits(task_id: str, value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``expected_digits`` as a tuple of key strings, checked.

    :param task_id: The task, for messages.
    :param value: ``"1"``, ``["1", "2"]`` or ``None``.
    :raises VobizValidationError: When it is not keys of the keypad.
    """
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)) or not values:
        raise VobizValidationError(
            f'Task {task_id!r}: expected_digits must be a string of keys (e.g. "1") or a non-empty list '
            f"of them, got {value!r}"
        )
    checked: list[str] = []
    for item in values:
        if not isinstance(item, str) or not item or not set(item) <= KEYPAD:
            raise VobizValidationError(
                f"Task {task_id!r}: expected_digits must contain only the keys 0-9, * and #, got {item!r}"
            )
        checked.append(item)
    return tuple(dict.fromkeys(checked))


def check_expected_digits(task_id: str, expected_digits: Sequence[str], gather: GatherSpec) -> None:
    """Refuse expected answers the keypad prompt can never collect.

    :param task_id: The task, for messages.
    :param expected_digits: From :func:`parse_expected_digits`.
    :param gather: The prompt.
    :raises VobizValidationError: Naming the answer that cannot be pressed.
    """
    for digits in expected_digits:
        if gather.num_digits is not None and len(digits) > gather.num_digits:
            raise VobizValidationError(
                f"Task {task_id!r}: expected_digits {digits!r} can never be pressed: gather "
                f"collects at most num_digits={gather.num_digits} key(s)"
            )
        if gather.finish_on_key not in (None, "", "none") and gather.finish_on_key in digits:
            raise VobizValidationError(
                f"Task {task_id!r}: expected_digits {digits!r} can never be pressed: "
                f"{gather.finish_on_key!r} is gather's finish_on_key (it ends the input)"
            )
