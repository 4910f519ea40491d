"""The standalone receiver's connections: a deadline for every request head, and room kept for new clients.

uvicorn has no header-read timeout: a connection that sends nothing, or its request headers a byte at a
time, stays open for as long as the client likes, and enough of them use up the process's file descriptors
until a legitimate request is dropped. :func:`guarded_protocol` wraps uvicorn's HTTP protocol (httptools or
h11, whichever uvicorn would pick) with a :class:`ConnectionGuard` shared by all connections of the server,
which applies these :class:`~vobiz_provider.receiver.server_limits.ServerLimits`:

* a connection must deliver a complete request head within ``header_timeout`` seconds of opening, or of its
  first byte after a previous answer (an idle kept-alive connection is uvicorn's ``timeout_keep_alive``'s
  business); otherwise it is closed. While the app handles a request (the body included) the timer is off:
  the app's response deadline bounds that;
* a request head larger than ``max_head_bytes`` closes the connection;
* at most ``max_connections`` connections are kept: a new one closes the oldest connection that has no
  request in progress (waiting, slow or idle), so a crowd of idle clients cannot lock out a real one. If
  every connection has a request in progress, uvicorn's ``limit_concurrency`` answers 503.

Everything happens on the event loop, in the protocol's callbacks: no locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar, Final

from uvicorn.protocols.http.auto import AutoHTTPProtocol

if TYPE_CHECKING:
    from vobiz_provider.receiver.server_limits import ServerLimits

__all__ = ["ConnectionGuard", "guarded_protocol"]

log = logging.getLogger(__name__)

#: Seconds between two log lines about the connections the guard closed.
LOG_INTERVAL: Final = 10.0


class _Connection:
    """The guard's state of one connection."""

    __slots__ = ("head_bytes", "timer")

    def __init__(self) -> None:
        self.timer: asyncio.TimerHandle | None = None
        self.head_bytes = 0


class ConnectionGuard:
    """The connections of one server: head deadlines, head sizes, and room for new connections.

    :param limits: The limits applied (``header_timeout``, ``max_head_bytes``, ``max_connections``).
    :param loop: The server's event loop (the running one by default, when the first connection opens).
    """

    def __init__(self, *, limits: ServerLimits, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.limits = limits
        self._loop = loop
        # Insertion order is opening order: the first idle one found is the oldest.
        self._open: dict[Any, _Connection] = {}
        #: Connections closed, by why: ``"timeout"``, ``"oversized"``, ``"room"``.
        self.closed_counts: dict[str, int] = {"timeout": 0, "oversized": 0, "room": 0}
        self._logged_counts = dict(self.closed_counts)
        self._logged_at: float | None = None  # the first closing is logged at once
        self._started = time.monotonic()

    def __len__(self) -> int:
        """The number of connections open (and not being closed by the guard)."""
        return len(self._open)

    def in_progress(self) -> int:
        """The number of connections whose request the app is handling."""
        return sum(1 for each in list(self._open) if _busy(each))

    # -- called by the protocol -----------------------------------------------------------------------------

    def opened(self, connection: Any) -> None:
        """A connection was accepted: make room if needed, then start its head deadline."""
        if len(self._open) >= self.limits.max_connections:
            self._make_room()
        state = self._open[connection] = _Connection()
        self._arm(connection, state)

    def receiving(self, connection: Any, size: int) -> None:
        """``size`` bytes arrived, before the protocol parses them."""
        state = self._open.get(connection)
        if state is None or _busy(connection):
            return
        if state.timer is None:  # the first byte of a new request on a kept-alive connection
            self._arm(connection, state)
        state.head_bytes += size

    def received(self, connection: Any) -> None:
        """The protocol parsed what arrived: stop the deadline once the app has the request."""
        state = self._open.get(connection)
        if state is None:
            return
        if _busy(connection):
            self._disarm(state)
            state.head_bytes = 0
        elif state.head_bytes > self.limits.max_head_bytes:
            self._close(connection, "oversized")

    def lost(self, connection: Any) -> None:
        """The connection is gone."""
        state = self._open.pop(connection, None)
        if state is not None:
            self._disarm(state)

    # -- internals ------------------------------------------------------------------------------------------

    def _arm(self, connection: Any, state: _Connection) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        state.head_bytes = 0
        state.timer = self._loop.call_later(self.limits.header_timeout, self._expired, connection)

    @staticmethod
    def _disarm(state: _Connection) -> None:
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None

    def _expired(self, connection: Any) -> None:
        state = self._open.get(connection)
        if state is None:
            return
        state.timer = None
        if not _busy(connection):
            self._close(connection, "timeout")

    def _make_room(self) -> None:
        oldest_idle = next((each for each in self._open if not _busy(each)), None)
        if oldest_idle is not None:
            self._close(oldest_idle, "room")

    def _close(self, connection: Any, why: str) -> None:
        state = self._open.pop(connection, None)
        if state is not None:
            self._disarm(state)
        transport = connection.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        # uvicorn forgets a connection when the loop reports it lost, which may come after the next request
        # is parsed: forget it now, so that limit_concurrency does not count it against that request.
        connection.connections.discard(connection)
        self.closed_counts[why] += 1
        self._maybe_log()

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < LOG_INTERVAL:
            return
        since = {why: count - self._logged_counts[why] for why, count in self.closed_counts.items()}
        self._logged_counts = dict(self.closed_counts)
        elapsed = now - (self._started if self._logged_at is None else self._logged_at)
        self._logged_at = now
        log.warning(
            "Vobiz receiver closed %d connections in the last %.0f s: %d without a complete request "
            "head after %g s, %d with a head over %d bytes, %d idle ones to make room (at most %d open)",
            sum(since.values()),
            elapsed,
            since["timeout"],
            self.limits.header_timeout,
            since["oversized"],
            self.limits.max_head_bytes,
            since["room"],
            self.limits.max_connections,
        )


def _busy(connection: Any) -> bool:
    """Whether the app is handling a request of ``connection`` (its head is complete, no answer sent yet)."""
    cycle = getattr(connection, "cycle", None)
    return cycle is not None and not cycle.response_complete


class _Guarded:
    """Mixed into uvicorn's HTTP protocol class: reports a connection's events to the guard."""

    guard: ClassVar[ConnectionGuard]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.guard.opened(self)

    def data_received(self, data: bytes) -> None:
        self.guard.receiving(self, len(data))
        super().data_received(data)  # type: ignore[misc]
        self.guard.received(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.lost(self)
        super().connection_lost(exc)  # type: ignore[misc]


def guarded_protocol(guard: ConnectionGuard, base: type[asyncio.Protocol] = AutoHTTPProtocol) -> type:
    """uvicorn's HTTP protocol class ``base`` with ``guard`` watching its connections (``Config(http=...)``).

    :param guard: The guard shared by all connections of the server.
    :param base: uvicorn's ``HttpToolsProtocol`` or ``H11Protocol``; by default the one uvicorn picks.
    """
    return type(f"Guarded{base.__name__}", (_Guarded, base), {"guard": guard})
