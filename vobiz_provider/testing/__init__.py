"""Testing helpers for users of the provider: the local Vobiz emulator and its pytest fixtures.

The ``vobiz_emulator`` pytest fixture is registered automatically (``pytest11`` entry point); see
:mod:`vobiz_provider.testing.pytest_plugin`.
"""

from __future__ import annotations

from vobiz_provider.testing.emulator import (
    OUTCOMES,
    CallbackAttempt,
    CallScript,
    EmulatedCall,
    EmulatorHandle,
    EmulatorSettings,
    Fault,
    ReceivedRequest,
    RemoteEmulator,
    VobizEmulator,
    run_emulator,
)

__all__ = [
    "OUTCOMES",
    "CallScript",
    "CallbackAttempt",
    "EmulatedCall",
    "EmulatorHandle",
    "EmulatorSettings",
    "Fault",
    "ReceivedRequest",
    "RemoteEmulator",
    "VobizEmulator",
    "run_emulator",
]
