"""Fixtures of the trigger tests: a real SQLite callback store and Vobiz-like callback forms."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from vobiz_provider.callbacks.store import CallbackStore

_NONCES = itertools.count(1)


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite store file, made the ``[vobiz] callback_store`` of this test."""
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", url)
    return url


@pytest.fixture
def store(store_url: str) -> CallbackStore:
    """The (process-wide cached) store behind :func:`store_url`, upgraded to the current schema."""
    from vobiz_provider.callbacks.store import get_store

    instance = get_store(store_url)
    instance.upgrade()
    return instance
