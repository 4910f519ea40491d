"""Fixtures for the example-DAG tests (shared with the operator tests through ``tests/_dagtest.py``)."""

from __future__ import annotations

from _dagtest import answer_url, callback_receiver, dag_runner, no_network  # noqa: F401 (fixtures)
