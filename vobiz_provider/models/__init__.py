"""Pydantic models of every Vobiz payload, shared by the client, the emulator and the callback receiver.

The names below are imported lazily (:pep:`562`): ``from vobiz_provider.models import MakeCallRequest``
loads only :mod:`vobiz_provider.models.call`, so a DAG file that needs the request model does not pay for
building the response and callback models too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vobiz_provider.models.call import TERMINAL_STATUSES, CallStatus, MakeCallRequest
    from vobiz_provider.models.callbacks import (
        CALLBACK_KINDS,
        AnswerCallback,
        GatherCallback,
        HangupCallback,
        MachineDetectionCallback,
        RingCallback,
        VobizCallback,
        parse_callback,
    )
    from vobiz_provider.models.responses import (
        Account,
        CallFiredResponse,
        CallUuidList,
        Cdr,
        CdrEnvelope,
        CdrPage,
        ConcurrencyInfo,
        ErrorBody,
        LiveCall,
        ParsedError,
        QueuedCall,
        parse_error_body,
    )

#: Where each public name lives.
_MODULE_OF: dict[str, str] = {
    **dict.fromkeys(("TERMINAL_STATUSES", "CallStatus", "MakeCallRequest"), "call"),
    **dict.fromkeys(
        (
            "CALLBACK_KINDS",
            "AnswerCallback",
            "GatherCallback",
            "HangupCallback",
            "MachineDetectionCallback",
            "RingCallback",
            "VobizCallback",
            "parse_callback",
        ),
        "callbacks",
    ),
    **dict.fromkeys(
        (
            "Account",
            "CallFiredResponse",
            "CallUuidList",
            "Cdr",
            "CdrEnvelope",
            "CdrPage",
            "ConcurrencyInfo",
            "ErrorBody",
            "LiveCall",
            "ParsedError",
            "QueuedCall",
            "parse_error_body",
        ),
        "responses",
    ),
}

__all__ = [
    "CALLBACK_KINDS",
    "TERMINAL_STATUSES",
    "Account",
    "AnswerCallback",
    "CallFiredResponse",
    "CallStatus",
    "CallUuidList",
    "Cdr",
    "CdrEnvelope",
    "CdrPage",
    "ConcurrencyInfo",
    "ErrorBody",
    "GatherCallback",
    "HangupCallback",
    "LiveCall",
    "MachineDetectionCallback",
    "MakeCallRequest",
    "ParsedError",
    "QueuedCall",
    "RingCallback",
    "VobizCallback",
    "parse_callback",
    "parse_error_body",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
