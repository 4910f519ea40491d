"""Fixtures for the emulator tests: a real HTTP receiver that plays the application's side."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from vobiz_provider.testing.emulator.server import EmulatorHandle, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request

FROM = "14155550100"
TO = "14155550101"


@dataclass
class Hit:
    """One request the receiver got."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    url: str


@dataclass
class _Reply:
    status: int = 200
    body: str = "ok"
    content_type: str = "text/plain"


@dataclass
class Receiver:
    """The application's side: records every request and answers as told per path."""

    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    replies: dict[str, list[_Reply]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def reply(
        self,
        path: str,
        *,
        status: int = 200,
        body: str = "ok",
        content_type: str = "text/plain",
        times: int | None = None,
    ) -> None:
        """Answer ``path`` like this from now on, or only for the next ``times`` requests."""
        reply = _Reply(status=status, body=body, content_type=content_type)
        with self.lock:
            queue = self.replies.setdefault(path, [])
            if times is None:
                queue[:] = [reply]
            else:
                queue[:0] = [reply] * times

    def call_body(self, **fields: Any) -> dict[str, Any]:
        """A valid Make-Call body whose URLs point at this receiver (``None`` drops a field)."""
        body: dict[str, Any] = {
            "from": FROM,
            "to": TO,
            "answer_url": self.url("/answer"),
            "answer_method": "POST",
            "hangup_url": self.url("/hangup"),
            "ring_url": self.url("/ring"),
        }
        body.update(fields)
        return {k: v for k, v in body.items() if v is not None}

    def xml(self, path: str, document: str) -> None:
        """Serve a VobizXML document at ``path``."""
        self.reply(path, body=document, content_type="application/xml")

    def hits_for(self, path: str) -> list[Hit]:
        with self.lock:
            return [hit for hit in self.hits if hit.path == path]

    async def handle(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()} if request.method == "POST" else {}
        hit = Hit(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            form=form,
            headers={k.lower(): v for k, v in request.headers.items()},
            url=str(request.url),
        )
        with self.lock:
            self.hits.append(hit)
            queue = self.replies.get(request.url.path, [])
            reply = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else _Reply()
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


@pytest.fixture(scope="module")
def _receiver_server() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["GET", "POST"])])
    with serve_in_thread(app) as port:
        receiver.port = port
        yield receiver


@pytest.fixture
def receiver(_receiver_server: Receiver) -> Receiver:
    """A live receiver on a free loopback port (shared by a module, emptied for every test)."""
    with _receiver_server.lock:
        _receiver_server.hits.clear()
        _receiver_server.replies.clear()
    return _receiver_server


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing"


@pytest.fixture
def make_emulator(receiver: Receiver, vobiz_emulator_factory: Any) -> Any:
    """``make_emulator(**settings)``: emulators with fast callback retries.

    Depends on ``receiver`` so that the emulators stop before the receiver does (no callbacks into a
    closing server).
    """

    def factory(**settings: Any) -> EmulatorHandle:
        settings.setdefault("callback_backoff", 0.01)
        return vobiz_emulator_factory(**settings)

    return factory


@pytest.fixture
def emulator(make_emulator: Any) -> EmulatorHandle:
    """An emulator with fast callback retries."""
    return make_emulator()


@pytest.fixture
def connect() -> Iterator[Any]:
    """``connect(handle, **headers)``: a plain httpx client on an emulator's API (not the provider's)."""
    clients: list[httpx.Client] = []

    def factory(handle: EmulatorHandle, **headers: str) -> httpx.Client:
        client = httpx.Client(base_url=handle.base_url, headers={**handle.auth_headers, **headers}, timeout=5)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def client(emulator: EmulatorHandle, connect: Any) -> httpx.Client:
    """A plain httpx client on :func:`emulator`."""
    return connect(emulator)
