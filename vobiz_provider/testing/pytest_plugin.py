"""pytest fixtures for testing code that talks to Vobiz, backed by the local emulator.

Registered automatically through the ``pytest11`` entry point ``vobiz_emulator`` when the provider is
installed. Fixtures:

* ``vobiz_emulator`` - a running emulator (:class:`~vobiz_provider.testing.EmulatorHandle`) for one test,
  with ``AIRFLOW_CONN_VOBIZ_DEFAULT`` pointing at it;
* ``vobiz_emulator_factory`` - ``factory(**settings) -> EmulatorHandle`` to start emulators with custom
  settings (e.g. ``cps=1``, ``error_shape="envelope"``); all are stopped after the test.

Example::

    def test_my_dag_places_a_call(vobiz_emulator):
        vobiz_emulator.script("919876543210", CallScript.busy())
        ...  # run the code under test; it reads the vobiz_default connection
        hangup = vobiz_emulator.wait_for_callbacks("hangup")[0]
        assert hangup.fields["CallStatus"] == "busy"

The emulator modules are imported only when a fixture is used, so the plugin costs nothing otherwise.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from vobiz_provider.testing.emulator.server import EmulatorHandle


@pytest.fixture
def vobiz_emulator_factory() -> Iterator[Callable[..., EmulatorHandle]]:
    """Start emulators with custom settings: ``factory(**settings)``; each is stopped after the test."""
    from vobiz_provider.testing.emulator.server import run_emulator

    with contextlib.ExitStack() as stack:

        def factory(**settings: Any) -> EmulatorHandle:
            return stack.enter_context(run_emulator(**settings))

        yield factory


@pytest.fixture
def vobiz_emulator(
    vobiz_emulator_factory: Callable[..., EmulatorHandle], monkeypatch: pytest.MonkeyPatch
) -> EmulatorHandle:
    """A running emulator for this test; ``AIRFLOW_CONN_VOBIZ_DEFAULT`` points at it."""
    handle = vobiz_emulator_factory()
    monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", handle.connection_json())
    return handle
