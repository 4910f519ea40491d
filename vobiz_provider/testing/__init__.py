"""Testing helpers for users of the provider: the local Vobiz emulator and its pytest fixtures.

This is the public import path of the emulator (its modules live in :mod:`vobiz_provider.testing.emulator`).
The ``vobiz_emulator`` pytest fixture is registered automatically (``pytest11`` entry point); see
:mod:`vobiz_provider.testing.pytest_plugin`.
"""

from __future__ import annotations

from vobiz_provider.testing.emulator.core import VobizEmulator
from vobiz_provider.testing.emulator.inbound import InboundCallResult, place_inbound_call
from vobiz_provider.testing.emulator.remote import RemoteEmulator
from vobiz_provider.testing.emulator.script import OUTCOMES, CallScript
from vobiz_provider.testing.emulator.server import EmulatorHandle, run_emulator
from vobiz_provider.testing.emulator.settings import EmulatorSettings
from vobiz_provider.testing.emulator.state import CallbackAttempt, EmulatedCall, Fault, ReceivedRequest

__all__ = [
    "OUTCOMES",
    "CallScript",
    "CallbackAttempt",
    "EmulatedCall",
    "EmulatorHandle",
    "EmulatorSettings",
    "Fault",
    "InboundCallResult",
    "ReceivedRequest",
    "RemoteEmulator",
    "VobizEmulator",
    "place_inbound_call",
    "run_emulator",
]
