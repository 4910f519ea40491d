"""Fixtures for the notifier tests: a running callback receiver that speaks the stored messages."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.testing import EmulatorHandle


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver(SimpleNamespace):
    base_url: str
    store: CallLedger


@pytest.fixture
def receiver(
    vobiz_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Receiver]:
    """The callback receiver on loopback, answering with the stored spoken messages, with its own SQLite
    store; ``[vobiz]`` points at both."""
    from fastapi import FastAPI

    from vobiz_provider.config import get_settings
    from vobiz_provider.ledger import dispose_ledgers, get_ledger
    from vobiz_provider.receiver.app import MOUNT_PATH, create_app
    from vobiz_provider.testing.emulator.server import serve_in_thread

    port = _free_port()
    base_url = f"http://127.0.0.1:{port}{MOUNT_PATH}"
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{tmp_path / 'callbacks.db'}")
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", base_url)
    settings = get_settings()
    store = get_ledger(settings.callback_store)
    store.upgrade()

    root = FastAPI()
    root.mount(MOUNT_PATH, create_app(settings=settings, ledger=store))
    try:
        with serve_in_thread(root, port=port):
            yield Receiver(base_url=base_url, store=store)
    finally:
        dispose_ledgers()
