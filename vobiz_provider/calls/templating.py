"""What can be checked when the DAG is parsed, and what only once Airflow renders the arguments.

Shared by the operator and the notifier: static values are validated at parse time (a typo breaks the DAG
import, not a run), templated or lazily resolved ones when the task runs, always before anything is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel

from vobiz_provider.models.call import MakeCallRequest

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from vobiz_provider.models.answer import AnswerSpec

__all__ = [
    "MESSAGE_PLACEHOLDER",
    "RECEIVER_ANSWER_PLACEHOLDER",
    "build_answer_spec",
    "check_static_answer",
    "check_static_request",
    "needs_rendering",
]

_JINJA_MARKERS: Final = ("{{", "{%", "{#")


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
