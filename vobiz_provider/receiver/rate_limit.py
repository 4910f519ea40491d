"""How many callbacks one correlation token may send: an in-process token bucket per task try.

Every callback URL of a task try carries the same signed token, so a token that leaked (through a proxy's
access log, say) could be replayed at will. The receiver gives each task try a bucket of
``[vobiz] callback_rate_burst`` callbacks, refilled at ``[vobiz] callback_rate_limit`` per second; a callback
that finds its bucket empty is answered 429 with ``Retry-After`` and not stored (Vobiz retries it).

The inbound routes use the same buckets, one per application, with the application's own rate and burst.

The buckets live in the receiver's process: with several receivers, each allows the rate on its own.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = ["TokenRateLimiter"]

#: Seconds between two sweeps of the buckets that have refilled (a full bucket is the same as none).
SWEEP_INTERVAL: Final = 60.0


class TokenRateLimiter:
    """Token buckets by key (the receiver uses the task instance and try of the correlation token).

    The rate and the burst are passed with each request, so that changed settings apply at once.

    :param clock: Monotonic seconds (tests pass a fake clock).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens left, when they were counted, its rate, its burst)
        self._buckets: dict[Hashable, tuple[float, float, float, int]] = {}
        self._swept = clock()

    def __len__(self) -> int:
        """The number of buckets held (those not known to be full)."""
        return len(self._buckets)

    def acquire(self, key: Hashable, *, rate: float, burst: int) -> float | None:
        """Take one token from ``key``'s bucket.

        :param key: Whose bucket.
        :param rate: Tokens added per second (positive).
        :param burst: The bucket's size: what may be taken at once.
        :return: ``None`` when a token was taken; else the seconds until one will be there.
        """
        now = self._clock()
        with self._lock:
            if now - self._swept >= SWEEP_INTERVAL:
                self._sweep(now)
            tokens, counted, _, _ = self._buckets.get(key, (float(burst), now, rate, burst))
            tokens = min(float(burst), tokens + (now - counted) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now, rate, burst)
                return None
            self._buckets[key] = (tokens, now, rate, burst)
            return (1.0 - tokens) / rate

    def _sweep(self, now: float) -> None:
        # Each bucket with its own rate and burst (the inbound applications' differ from the tries').
        self._swept = now
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket[0] + (now - bucket[1]) * bucket[2] < bucket[3]
        }
