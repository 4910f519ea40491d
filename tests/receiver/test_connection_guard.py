"""The connection guard on both of uvicorn's HTTP implementations, and the limits ``serve`` derives.

uvicorn picks httptools when it is installed and h11 otherwise; the guard must work on either. Each test runs
uvicorn in a thread on loopback with a tiny ASGI app and short limits.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from _receiver_server import readable
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vobiz_provider.receiver.cli import main
from vobiz_provider.receiver.connection_guard import ConnectionGuard, guarded_protocol
from vobiz_provider.receiver.server_limits import ServerLimits

if TYPE_CHECKING:
    from collections.abc import Iterator

HEADER_TIMEOUT = 0.5
MAX_CONNECTIONS = 5


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after reading the body, ``?sleep=<seconds>`` later."""
    assert scope["type"] == "http"
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    query = scope["query_string"].decode()
    if query.startswith("sleep="):
        await asyncio.sleep(float(query.removeprefix("sleep=")))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def guarded_server(base: type[asyncio.Protocol], **overrides: Any) -> Iterator[tuple[str, ConnectionGuard]]:
    limits = ServerLimits(
        **{
            "header_timeout": HEADER_TIMEOUT,
            "max_connections": MAX_CONNECTIONS,
            "backlog": 64,
            "max_head_bytes": 4096,
            **overrides,
        }
    )
    guard = ConnectionGuard(limits=limits)
    config = uvicorn.Config(
        slow_app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        http=guarded_protocol(guard, base),
        **limits.uvicorn_options(),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", guard
    finally:
        server.should_exit = True
        thread.join(10)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (reading and discarding what it sends), or ``None``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if readable(sock, 0.02):
            try:
                if not sock.recv(65536):
                    return time.monotonic() - start
            except ConnectionResetError:
                return time.monotonic() - start
    return None


def port_of(origin: str) -> tuple[str, int]:
    return "127.0.0.1", int(origin.rsplit(":", 1)[1])


PROTOCOLS = pytest.mark.parametrize("base", [HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])


@PROTOCOLS
def test_idle_and_slow_heads_are_closed_after_the_header_timeout(base: type[asyncio.Protocol]) -> None:
    with guarded_server(base) as (origin, guard):
        idle = socket.create_connection(port_of(origin))
        slow = socket.create_connection(port_of(origin))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with idle, slow:
            for _ in range(5):  # trickling keeps nothing open
                time.sleep(HEADER_TIMEOUT / 5)
                slow.sendall(b"X")
            idle_closed = closed_within(idle, 2)
            slow_closed = closed_within(slow, 2)
        assert guard.closed_counts["timeout"] == 2
    assert idle_closed is not None
    assert slow_closed is not None


@PROTOCOLS
def test_a_request_in_progress_outlives_the_header_timeout(base: type[asyncio.Protocol]) -> None:
    with guarded_server(base) as (origin, guard), httpx.Client(timeout=10) as client:
        response = client.get(f"{origin}/?sleep={HEADER_TIMEOUT * 3}")
        again = client.get(origin)  # kept alive for the next request
        assert guard.closed_counts == {"timeout": 0, "oversized": 0, "room": 0}
    assert (response.status_code, again.status_code) == (200, 200)


@PROTOCOLS
def test_new_connections_close_the_oldest_idle_ones(base: type[asyncio.Protocol]) -> None:
    with guarded_server(base, header_timeout=60) as (origin, guard):
        held = [socket.create_connection(port_of(origin)) for _ in range(MAX_CONNECTIONS * 2)]
        try:
            with httpx.Client(timeout=10) as client:
                response = client.get(origin)
            closed = [closed_within(sock, 0.2) is not None for sock in held]
            assert len(guard) <= MAX_CONNECTIONS
        finally:
            for sock in held:
                sock.close()
    assert response.status_code == 200
    assert closed[: MAX_CONNECTIONS + 1] == [True] * (MAX_CONNECTIONS + 1)  # the oldest went first
    assert not closed[-1]


@PROTOCOLS
def test_busy_connections_are_not_closed_to_make_room(base: type[asyncio.Protocol]) -> None:
    with guarded_server(base, header_timeout=60) as (origin, guard), httpx.Client(timeout=10) as client:
        results: list[int] = []

        def slow_request() -> None:
            with httpx.Client(timeout=10) as own:
                results.append(own.get(f"{origin}/?sleep=1").status_code)

        threads = [threading.Thread(target=slow_request) for _ in range(MAX_CONNECTIONS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while guard.in_progress() < MAX_CONNECTIONS:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        overflow = client.get(origin)
        for thread in threads:
            thread.join()
    assert results == [200] * MAX_CONNECTIONS
    assert overflow.status_code == 503  # uvicorn's limit_concurrency, not a dropped connection


@PROTOCOLS
def test_an_oversized_head_closes_the_connection(base: type[asyncio.Protocol]) -> None:
    with guarded_server(base) as (origin, guard), socket.create_connection(port_of(origin)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 8192)
        assert closed_within(sock, 2) is not None
    assert guard.closed_counts["oversized"] == 1


# -- the limits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fd_limit", "max_connections", "backlog"),
    [(None, 1000, 511), (65536, 1000, 511), (1024, 720, 240), (256, 144, 48)],
)
def test_defaults_fit_the_open_file_limit(fd_limit: int | None, max_connections: int, backlog: int) -> None:
    limits = ServerLimits.for_process(max_body_bytes=65536, fd_limit=fd_limit)
    assert (limits.max_connections, limits.backlog) == (max_connections, backlog)
    assert limits.fd_shortfall(fd_limit) == 0
    assert limits.max_head_bytes == 65536 + 16384


def test_explicit_limits_are_kept_and_a_shortfall_is_reported() -> None:
    limits = ServerLimits.for_process(max_body_bytes=1024, fd_limit=256, max_connections=500, backlog=100)
    assert (limits.max_connections, limits.backlog) == (500, 100)
    assert limits.fd_shortfall(256) == 500 + 100 + 64 - 256
    assert limits.uvicorn_options()["limit_concurrency"] == 501


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--header-timeout", "0"], "invalid duration '0'"),
        (["serve", "--keep-alive-timeout", "soon"], "invalid duration 'soon'"),
        (["serve", "--graceful-timeout", "inf"], "invalid duration 'inf'"),
        (["serve", "--max-connections", "0"], "invalid number '0'"),
        (["serve", "--backlog", "-5"], "invalid number '-5'"),
    ],
)
def test_bad_limits_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
