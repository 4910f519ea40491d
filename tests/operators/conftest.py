"""Fixtures for the operator tests: the emulator as Vobiz, and running a DAG with ``dag.test()``
(shared with the example-DAG tests through ``tests/_dagtest.py``)."""

from __future__ import annotations

from _dagtest import (  # noqa: F401 (fixtures)
    HOLD_XML,
    DagTestRunner,
    answer_url,
    callback_receiver,
    dag_runner,
    store_without_receiver,
)
