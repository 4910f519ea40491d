"""Fixtures of the sensor tests: a real SQLite callback store and an answer URL for emulated calls."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from vobiz_provider.callbacks.store import CallbackStore


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


class _AnswerHandler(BaseHTTPRequestHandler):
    """Answers every answer-URL fetch (and any callback) with XML that keeps the call up for a while."""

    body = b'<?xml version="1.0" encoding="UTF-8"?><Response><Wait length="20"/></Response>'

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def answer_url() -> Iterator[str]:
    """An answer URL on loopback. Callbacks sent there are answered 200 and lost to the store."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnswerHandler)
    thread = threading.Thread(target=server.serve_forever, name="vobiz-sensor-answer", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/answer"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _fresh_pacer() -> Iterator[None]:
    # Emulators of different tests may reuse a port: forget CPS reservations between tests.
    from vobiz_provider.client.pacing import pacer

    pacer.reset()
    yield
    pacer.reset()
