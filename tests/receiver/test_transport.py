"""``vobiz-callbacks serve`` against slow and idle clients: real sockets on loopback, a real server process.

Each test is a finding of the security review: connections that send their request slowly or not at all
must be closed within a bound, a body that does not arrive within the response deadline must be answered,
and a legitimate request must still get through while many idle connections are held open.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest
from _ledger_helpers import place, token_for
from _receiver_server import ServedReceiver, readable, serve_subprocess

from vobiz_provider.correlation import CorrelationToken, callback_url
from vobiz_provider.ledger import CallLedger
from vobiz_provider.signatures import signature_headers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = "transport-test-callback-secret-0123456789"
AUTH_TOKEN = "transport-test-auth-token"

#: ``--header-timeout`` of the shared server: short, so that the tests are quick.
HEADER_TIMEOUT = 1.0
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
    """One server for the module, with a short header timeout."""
    with serve_subprocess(
        server_env(module_store_url), "--log-level", "info", "--header-timeout", str(HEADER_TIMEOUT)
    ) as running:
        yield running


def address(origin: str) -> tuple[str, int]:
    parts = urlsplit(origin)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def token(call: str = "t") -> str:
    return token_for(
        CorrelationToken(dag_id="transport", run_id=call, task_id="t", try_number=1), "hangup", secret=SECRET
    )


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
        if not readable(sock, 0.05):
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
        if readable(sock, every):
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


# -- slow and idle clients ----------------------------------------------------------------------------------


def test_idle_connection_is_closed_after_the_header_timeout(served: ServedReceiver) -> None:
    with socket.create_connection(address(served.origin)) as sock:
        elapsed, data = drain_until_closed(sock, within=HEADER_TIMEOUT + 3)
    assert elapsed < HEADER_TIMEOUT + 2, f"an idle connection was still open after {elapsed:.1f} s"
    assert data == b""


def test_slow_request_headers_are_cut_off(served: ServedReceiver) -> None:
    with socket.create_connection(address(served.origin)) as sock:
        sock.sendall(f"POST /vobiz/callbacks/hangup?t={token()} HTTP/1.1\r\nHost: x\r\n".encode())
        # A header byte every 0.1 s: each one would reset a naive idle timer.
        elapsed, answer = trickle(sock, b"X-Slow: " + b"a" * 200, every=0.1, within=HEADER_TIMEOUT + 3)
    assert elapsed < HEADER_TIMEOUT + 2, f"slow headers kept the connection open for {elapsed:.1f} s"
    assert answer == b""  # closed, nothing handed to the app


def test_slow_headers_after_a_kept_alive_request_are_cut_off_too(served: ServedReceiver) -> None:
    with socket.create_connection(address(served.origin), timeout=10) as sock:
        sock.sendall(b"GET /vobiz/health HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 10
        answer = b""
        while b'{"status":"ok"}' not in answer and time.monotonic() < deadline:
            answer += sock.recv(65536)
        assert b"200 OK" in answer
        elapsed, more = trickle(sock, b"GET /vobiz/health HTTP/1.1\r\nX: " + b"a" * 200, every=0.1, within=10)
    assert elapsed < HEADER_TIMEOUT + 2, f"slow headers kept the connection open for {elapsed:.1f} s"
    assert more == b""


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


def test_keep_alive_clients_are_still_served(served: ServedReceiver) -> None:
    with httpx.Client(timeout=10) as client:
        first = client.get(f"{served.origin}/vobiz/health")
        time.sleep(HEADER_TIMEOUT / 2)
        second = client.get(f"{served.origin}/vobiz/health")
        time.sleep(HEADER_TIMEOUT * 1.5)  # longer than the header timeout, shorter than keep-alive
        third = client.get(f"{served.origin}/vobiz/health")
    assert [response.status_code for response in (first, second, third)] == [200, 200, 200]


# -- many idle connections ----------------------------------------------------------------------------------

#: The server's RLIMIT_NOFILE in the exhaustion test, and how many idle connections the test holds.
FD_LIMIT = 256
IDLE_CONNECTIONS = 400


def _lower_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_a_legitimate_request_gets_through_while_idle_connections_exhaust_the_fd_limit(
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE_CONNECTIONS + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE_CONNECTIONS + 200), hard))
    store_url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    held: list[socket.socket] = []
    try:
        # A long header timeout: what keeps the receiver reachable here is not idle connections timing out.
        with serve_subprocess(
            server_env(store_url),
            "--log-level",
            "warning",
            "--header-timeout",
            "60",
            preexec_fn=_lower_fd_limit,
        ) as running:
            # Connected from several threads: a connection the full listen backlog turned away retries its
            # SYN after a second, and those waits overlap.
            with ThreadPoolExecutor(32) as pool:
                held.extend(
                    pool.map(
                        lambda _: socket.create_connection(address(running.origin), timeout=30),
                        range(IDLE_CONNECTIONS),
                    )
                )
            call_uuid = f"fd-{uuid.uuid4()}"
            correlation = token(call_uuid)
            ledger = CallLedger(store_url)
            place(
                ledger,
                f"req-{call_uuid}",
                correlation=CorrelationToken(dag_id="transport", run_id=call_uuid, task_id="t"),
            )
            ledger.dispose()
            fields = {
                "CallUUID": call_uuid,
                "RequestUUID": f"req-{call_uuid}",
                "To": "+919876543210",
                "Event": "Hangup",
                "CallStatus": "completed",
            }
            start = time.monotonic()
            with httpx.Client(timeout=10) as client:
                health = client.get(f"{running.origin}/vobiz/health")
                url = callback_url(f"{running.origin}/vobiz", "hangup", correlation, secret=SECRET)
                stored = client.post(url, data=fields, headers=signature_headers(url, AUTH_TOKEN))
            elapsed = time.monotonic() - start
            assert health.status_code == 200, health.text
            assert stored.status_code == 200, stored.text
            assert elapsed < 5, f"the legitimate requests took {elapsed:.1f} s"
            closed = sum(readable(sock, 0) for sock in held)
            # The receiver made room by closing idle connections rather than running out of descriptors.
            assert closed >= IDLE_CONNECTIONS - FD_LIMIT
    finally:
        for sock in held:
            sock.close()
    assert stored_events(store_url, call_uuid) == 1
