"""Pydantic models of every Vobiz payload, shared by the client, the emulator and the callback receiver."""

from __future__ import annotations

from vobiz_provider.models.call import TERMINAL_STATUSES, CallStatus, MakeCallRequest

__all__ = [
    "TERMINAL_STATUSES",
    "CallStatus",
    "MakeCallRequest",
]
