"""pytest fixtures for testing code that talks to Vobiz, backed by the local emulator.

Registered automatically through the ``pytest11`` entry point ``vobiz_emulator`` when the provider is
installed. Fixtures:

* ``vobiz_emulator`` - a running emulator (:class:`~vobiz_provider.testing.EmulatorHandle`) in a clean
  state for one test (default settings, no calls, records, scripts or faults), with
  ``AIRFLOW_CONN_VOBIZ_DEFAULT`` pointing at it. One server is shared by the session, so the fixture
  is cheap; change settings freely with ``vobiz_emulator.configure(...)``: they are restored for the
  next test.
* ``vobiz_emulator_factory`` - ``factory(**settings) -> EmulatorHandle`` to start separate emulators
  (e.g. two accounts); each is stopped after the test.
* ``vobiz_emulator_session`` - the shared server behind ``vobiz_emulator`` (not reset for you).

Example::

    def test_my_dag_places_a_call(vobiz_emulator):
        vobiz_emulator.script("919876543210", CallScript.busy())
        ...  # run the code under test; it reads the vobiz_default connection
        hangup = vobiz_emulator.wait_for_callbacks("hangup")[0]
        assert hangup.fields["CallStatus"] == "busy"
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from vobiz_provider.testing.emulator.server import EmulatorHandle, run_emulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(scope="session")
def vobiz_emulator_session() -> Iterator[EmulatorHandle]:
    """One emulator server for the whole session (state is shared; ``vobiz_emulator`` resets it)."""
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def vobiz_emulator_factory() -> Iterator[Callable[..., EmulatorHandle]]:
    """Start emulators with custom settings: ``factory(**settings)``; each is stopped after the test."""
    with contextlib.ExitStack() as stack:

        def factory(**settings: Any) -> EmulatorHandle:
            return stack.enter_context(run_emulator(**settings))

        yield factory


@pytest.fixture
def vobiz_emulator(
    vobiz_emulator_session: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmulatorHandle]:
    """A running emulator in a clean state for this test; ``AIRFLOW_CONN_VOBIZ_DEFAULT`` points at it."""
    handle = vobiz_emulator_session
    handle.emulator.reset(settings=True)
    monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", handle.connection_json())
    yield handle
    handle.emulator.reset(settings=True)
