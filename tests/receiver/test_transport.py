"""``vobiz-callbacks serve`` against slow clients: real sockets on loopback, a real server process.

Each test is a finding of the security review: a body that does not arrive within the response deadline
must be answered, not leave the connection hanging.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from _receiver_server import ServedReceiver, serve_subprocess

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import CallLedger

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "transport-test-callback-secret"
AUTH_TOKEN = "transport-test-auth-token"

#: The receiver's response deadline (``RESPONSE_DEADLINE``): a callback is answered within it.
RESPONSE_DEADLINE = 2.5


def server_env(store_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__VOBIZ__")}
    env.update(
        {
            "AIRFLOW__VOBIZ__CALLBACK_SECRET": SECRET,
            "AIRFLOW__VOBIZ__CALLBACK_STORE": store_url,
            "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(
                {"conn_type": "vobiz", "login": "MA_TRANSPORT1", "password": AUTH_TOKEN}
            ),
        }
    )
    return env


@pytest.fixture(scope="module")
def module_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('transport') / 'callbacks.db'}"


@pytest.fixture(scope="module")
def served(module_store_url: str) -> Iterator[ServedReceiver]:
    """One server for the module."""
    with serve_subprocess(server_env(module_store_url), "--log-level", "info") as running:
        yield running


def address(origin: str) -> tuple[str, int]:
    parts = urlsplit(origin)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def token(call: str = "t") -> str:
    return CorrelationToken(dag_id="transport", run_id=call, task_id="t", try_number=1).encode(SECRET)


def stored_events(store_url: str, call_uuid: str) -> int:
    store = CallLedger(store_url)
    try:
        return len(store.lookup(call_uuids=[call_uuid]))
    finally:
        store.dispose()


def drain_until_closed(sock: socket.socket, *, within: float) -> tuple[float, bytes]:
    """Read until the server closes ``sock`` or ``within`` seconds pass; (seconds it took, bytes read)."""
    start = time.monotonic()
    received = b""
    while time.monotonic() - start < within:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if not readable:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return time.monotonic() - start, received
        if not chunk:
            return time.monotonic() - start, received
        received += chunk
    return float("inf"), received


def trickle(sock: socket.socket, data: bytes, *, every: float, within: float) -> tuple[float, bytes]:
    """Send ``data`` one byte every ``every`` seconds until the server answers or closes ``sock``.

    :return: Seconds until the server answered or closed (``inf`` if it did neither within ``within``
        seconds), and what it sent.
    """
    start = time.monotonic()
    for byte in data:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            answered_after = time.monotonic() - start
            _, answer = drain_until_closed(sock, within=5)
            return answered_after, answer
        if time.monotonic() - start > within:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start, b""
    return float("inf"), b""


# -- slow bodies ------------------------------------------------------------------------------------------


def test_slow_body_is_answered_408_within_the_deadline_and_nothing_is_stored(
    served: ServedReceiver, module_store_url: str
) -> None:
    call_uuid = f"slow-body-{uuid.uuid4()}"
    body = f"CallUUID={call_uuid}&Event=Hangup&CallStatus=completed&HangupCauseCode=4000".encode()
    with socket.create_connection(address(served.origin)) as sock:
        head = (
            f"POST /vobiz/callbacks/hangup?t={token(call_uuid)} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body) + 1000}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[:10])
        elapsed, answer = trickle(sock, body[10:] + b"x" * 1000, every=0.1, within=RESPONSE_DEADLINE + 5)
    assert elapsed < RESPONSE_DEADLINE + 2, f"no answer to a slow body after {elapsed:.1f} s"
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert stored_events(module_store_url, call_uuid) == 0


def test_slow_body_without_a_token_is_answered_within_the_deadline(served: ServedReceiver) -> None:
    with socket.create_connection(address(served.origin)) as sock:
        head = (
            "POST /vobiz/callbacks/hangup HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"CallUUID=x")
        elapsed, answer = trickle(sock, b"y" * 990, every=0.1, within=RESPONSE_DEADLINE + 5)
    assert elapsed < RESPONSE_DEADLINE + 2, f"no answer to a slow body after {elapsed:.1f} s"
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
