"""The transport limits of ``vobiz-callbacks serve``: timeouts, connections, listen backlog, and defaults.

Vobiz sends each callback in one go and waits 3 s for the answer, so the standalone receiver can be strict
with clients that take their time. The connection and backlog defaults follow the process's open-file limit
(``ulimit -n``): every connection, and every connection waiting in the listen backlog, holds a file
descriptor, and the process needs a few more for its store, logs and secrets backend
(:data:`RESERVED_FDS`). Running out of descriptors is what let idle connections lock out real callbacks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from vobiz_provider.config import DEFAULT_MAX_BODY_BYTES

try:
    import resource
except ImportError:  # pragma: no cover - not on Unix
    resource = None  # type: ignore[assignment]

__all__ = ["ServerLimits", "open_files_limit"]

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT: Final = 5.0
DEFAULT_KEEP_ALIVE_TIMEOUT: Final = 5.0
DEFAULT_GRACEFUL_TIMEOUT: Final = 10.0
#: Most connections kept open by default, whatever the open-file limit.
DEFAULT_MAX_CONNECTIONS: Final = 1000
#: Largest listen backlog by default (nginx's on Linux).
DEFAULT_BACKLOG: Final = 511
#: File descriptors left for the store, the logs, the secrets backend... when the defaults are derived.
RESERVED_FDS: Final = 64
#: Bytes allowed for the request line and headers on top of the query string (``[vobiz] max_body_bytes``).
HEADER_ALLOWANCE: Final = 16384


def open_files_limit() -> int | None:
    """The process's soft ``RLIMIT_NOFILE``; ``None`` when unlimited or unknown."""
    if resource is None:  # pragma: no cover
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """What ``vobiz-callbacks serve`` allows a client; :meth:`for_process` fills in the defaults.

    :param header_timeout: Seconds a connection has to send a complete request head, from its opening or
        from the first byte of a new request on a kept-alive connection; then it is closed.
    :param keep_alive_timeout: Seconds an idle kept-alive connection stays open after an answer.
    :param graceful_timeout: Seconds a shutdown waits for requests in progress before cancelling them.
    :param max_connections: Connections kept open; a new one closes the oldest without a request in
        progress. A request arriving while every connection has one in progress is answered 503.
    :param backlog: Connections the kernel queues before the receiver accepts them.
    :param max_head_bytes: Largest request head (request line, query string, headers); larger closes the
        connection.
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    backlog: int = DEFAULT_BACKLOG
    max_head_bytes: int = DEFAULT_MAX_BODY_BYTES + HEADER_ALLOWANCE

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keep_alive_timeout", "graceful_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        for name in ("max_connections", "backlog", "max_head_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def for_process(
        cls,
        *,
        max_body_bytes: int,
        fd_limit: int | None,
        max_connections: int | None = None,
        backlog: int | None = None,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    ) -> ServerLimits:
        """The limits for a process with ``fd_limit`` open files; ``None`` arguments take the default.

        :param max_body_bytes: ``[vobiz] max_body_bytes`` (a GET callback carries its fields in the query).
        :param fd_limit: The soft ``RLIMIT_NOFILE`` (:func:`open_files_limit`); ``None`` when unlimited.
        :param max_connections: Connections kept open (default: what the descriptors allow, at most 1000).
        :param backlog: Listen backlog (default: a quarter of the spare descriptors, at most 511).
        :param header_timeout: See the class.
        :param keep_alive_timeout: See the class.
        :param graceful_timeout: See the class.
        """
        budget = None if fd_limit is None else max(fd_limit - RESERVED_FDS, 16)
        if backlog is None:
            backlog = DEFAULT_BACKLOG if budget is None else max(8, min(DEFAULT_BACKLOG, budget // 4))
        if max_connections is None:
            spare = DEFAULT_MAX_CONNECTIONS if budget is None else budget - backlog
            max_connections = max(8, min(DEFAULT_MAX_CONNECTIONS, spare))
        return cls(
            max_connections=max_connections,
            backlog=backlog,
            max_head_bytes=max_body_bytes + HEADER_ALLOWANCE,
            header_timeout=header_timeout,
            keep_alive_timeout=keep_alive_timeout,
            graceful_timeout=graceful_timeout,
        )

    def fd_shortfall(self, fd_limit: int | None) -> int:
        """How many descriptors short ``fd_limit`` is of what these limits may hold at once (0: enough)."""
        if fd_limit is None:
            return 0
        return max(0, self.max_connections + self.backlog + RESERVED_FDS - fd_limit)

    def uvicorn_options(self) -> dict[str, Any]:
        """The matching ``uvicorn.Config`` arguments (the head deadline is the connection guard's)."""
        return {
            # The guard keeps at most max_connections open, so uvicorn's 503 comes only when all of them
            # have a request in progress (uvicorn counts connections and requests against this number).
            "limit_concurrency": self.max_connections + 1,
            "backlog": self.backlog,
            "timeout_keep_alive": self.keep_alive_timeout,
            "timeout_graceful_shutdown": self.graceful_timeout,
            "h11_max_incomplete_event_size": self.max_head_bytes,
            "ws": "none",  # the receiver has no WebSocket route: no upgrade path for clients to use
        }
