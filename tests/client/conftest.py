"""Fixtures of the client tests: a client on the emulator, an answer URL that keeps calls up, requests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from _client_helpers import CALLER, DESTINATION, FAST

from vobiz_provider.client import VobizClient
from vobiz_provider.client.pacing import pacer
from vobiz_provider.models import MakeCallRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class _AnswerHandler(BaseHTTPRequestHandler):
    """Answers every answer-URL fetch with XML that keeps the call up for a while."""

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
    """An answer URL (on loopback) whose XML keeps answered calls in progress for 20 s."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnswerHandler)
    thread = threading.Thread(target=server.serve_forever, name="vobiz-test-answer", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/answer"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _fresh_pacer() -> Iterator[None]:
    # Emulators of different tests may reuse a port: forget reservations between tests.
    pacer.reset()
    yield
    pacer.reset()


@pytest.fixture
def client(vobiz_emulator: Any) -> Iterator[VobizClient]:
    with VobizClient(
        auth_id=vobiz_emulator.auth_id,
        auth_token=vobiz_emulator.auth_token,
        base_url=vobiz_emulator.base_url,
        timeout=2.0,
        max_retries=3,
        **FAST,
    ) as client:
        yield client


@pytest.fixture
def call_request(answer_url: str) -> Callable[..., MakeCallRequest]:
    """Build a valid Make-Call request (override any field)."""

    def build(to: str | list[str] = DESTINATION, **fields: Any) -> MakeCallRequest:
        return MakeCallRequest.build(**{"from": CALLER, "to": to, "answer_url": answer_url, **fields})

    return build
