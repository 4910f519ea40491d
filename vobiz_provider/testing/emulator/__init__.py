"""A strict local Vobiz: the REST API, the call lifecycle and its callbacks, for tests and demos.

Like moto for AWS: start one with :func:`run_emulator` (or the ``vobiz_emulator`` pytest fixture, or
``python -m vobiz_provider.testing.emulator``), point the client or an Airflow connection at its
``base_url``, script what each destination does with :class:`CallScript`, and read back every request,
callback and call.
"""

from __future__ import annotations

from vobiz_provider.testing.emulator.core import VobizEmulator
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
    "ReceivedRequest",
    "RemoteEmulator",
    "VobizEmulator",
    "run_emulator",
]
