"""The ``receiver`` fixture: the receiver app on loopback with a private SQLite ledger (see ``test_app``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from test_app import Receiver, running_receiver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A running receiver whose settings come from ``AIRFLOW__VOBIZ__*`` variables, as in a deployment."""
    with running_receiver(monkeypatch, f"sqlite:///{tmp_path / 'callbacks.db'}") as running:
        yield running
