"""Pydantic models of every Vobiz payload, shared by the client, the emulator and the callback receiver."""

from __future__ import annotations

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
