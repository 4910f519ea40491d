"""Fixtures for the end-to-end tests: real Airflow processes (``airflow standalone``) and the emulator as a
separate process, on loopback.

Every process started here runs in its own session and is stopped with its whole process group (SIGTERM,
then SIGKILL after a grace period: ``tests/_processes.py``), so no LocalExecutor worker or triggerer child
outlives the test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from _processes import (
    EmulatorProcess,
    emulator_subprocess,
)
from _standalone import StandaloneAirflow, run_standalone

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[EmulatorProcess]:
    """The emulator as a separate process on a free loopback port."""
    try:
        with emulator_subprocess() as emulator:
            yield emulator
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


# ------------------------------------------------------------------------------------ airflow standalone


@pytest.fixture(scope="session")
def standalone_airflow(
    tmp_path_factory: pytest.TempPathFactory, emulator_process: EmulatorProcess
) -> Iterator[StandaloneAirflow]:
    """``airflow standalone`` in a fresh AIRFLOW_HOME with the e2e DAGs, healthy and serving ``/vobiz``.

    Session-scoped: every e2e module that needs no settings of its own shares the one run (it takes ~70 s
    to start on 2 cores).
    """
    with run_standalone(tmp_path_factory.mktemp("standalone-airflow-home"), emulator_process) as airflow:
        yield airflow
