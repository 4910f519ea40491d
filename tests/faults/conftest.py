"""Fixtures of the fault suite: every scenario runs once per store kind, SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgresql"``; the PostgreSQL run skips (or errors) as ``postgres_url`` does."""
    kind: str = request.param
    if kind == "postgresql":
        request.getfixturevalue("postgres_url")
    return kind


@pytest.fixture
def fault_store_url(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty callback store of kind :func:`store_kind`: a SQLite file, or a PostgreSQL schema of
    its own on the shared server (dropped afterwards)."""
    if store_kind == "postgresql":
        url: str = request.getfixturevalue("pg_schema_url")
        return url
    return f"sqlite:///{tmp_path / 'faults-callbacks.db'}"
