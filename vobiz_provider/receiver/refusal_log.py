"""The receiver's log of refused callbacks: the first few of an interval one by one, then one summary line.

Anyone who can reach the receiver can make it refuse requests (no token, a forged one, a flood of 429s), and
one WARNING line per refusal let an unauthenticated client write about 100 KB of log a second. Here the
first :data:`REFUSALS_LOGGED_PER_INTERVAL` refusals of each interval are logged as before and the rest are
counted; once the interval is over, one line gives their number by status and reason.
:attr:`RefusalLog.counts` keeps the totals since start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Final

from vobiz_provider.receiver.stored_log import LOG_SUMMARY_INTERVAL

__all__ = ["REFUSALS_LOGGED_PER_INTERVAL", "RefusalLog"]

log = logging.getLogger(__name__)

#: Refusals logged one by one in each interval, before the rest are only counted.
REFUSALS_LOGGED_PER_INTERVAL: Final = 5

_OTHER_REASONS: Final = "(other reasons)"
#: Reasons named in a summary line, the most frequent first.
_REASONS_SHOWN: Final = 10


class RefusalLog:
    """Counts refused callbacks by status and reason; logs the first few of each interval, then a summary.

    :param interval: Seconds of an interval.
    :param individually: Refusals logged one by one in each interval.
    """

    #: Distinct (status, reason) pairs counted; more are counted as "(other reasons)" of their status.
    MAX_REASONS: Final = 100

    def __init__(
        self, *, interval: float = LOG_SUMMARY_INTERVAL, individually: int = REFUSALS_LOGGED_PER_INTERVAL
    ) -> None:
        self.interval = interval
        self.individually = individually
        #: Every refusal since start, by (status, reason).
        self.counts: Counter[tuple[int, str]] = Counter()
        self._lock = threading.Lock()
        self._current: Counter[tuple[int, str]] = Counter()
        self._since: float | None = None
        # The start of the interval whose summary a timer will log.
        self._flush_scheduled_for: float | None = None

    def refused(self, *, kind: str, status: int, reason: str) -> None:
        """Count (and maybe log) one refusal.

        :param kind: The callback kind as it may be shown (not an arbitrary string from the URL).
        :param status: The HTTP status answered.
        :param reason: Why; never contains a token.
        """
        now = time.monotonic()
        with self._lock:
            summary = self._close_interval(now) if self._interval_over(now) else None
            if self._since is None:
                self._since = now
            key = self._key(status, reason)
            self.counts[key] += 1
            self._current[key] += 1
            alone = sum(self._current.values()) <= self.individually
            schedule = not alone and self._flush_scheduled_for != self._since
            if schedule:
                self._flush_scheduled_for = self._since
            delay = self._since + self.interval - now
        if summary:
            log.warning(*summary)
        if alone:
            log.warning("Vobiz %s callback refused with %s: %s", kind, status, reason)
        elif schedule:
            self._schedule_flush(delay)

    def flush(self) -> None:
        """Log the summary of the interval if it is over and refusals were left out of the log."""
        now = time.monotonic()
        with self._lock:
            summary = self._close_interval(now) if self._interval_over(now) else None
        if summary:
            log.warning(*summary)

    # -- internals ------------------------------------------------------------------------------------------

    def _key(self, status: int, reason: str) -> tuple[int, str]:
        key = (status, reason)
        if key in self.counts or len(self.counts) < self.MAX_REASONS:
            return key
        return (status, _OTHER_REASONS)

    def _interval_over(self, now: float) -> bool:
        return self._since is not None and now - self._since >= self.interval

    def _close_interval(self, now: float) -> tuple[object, ...] | None:
        """Start a new interval; the summary line (format and arguments) of the one that ends, if needed."""
        counts, self._current = self._current, Counter()
        since, self._since = self._since, None
        total = sum(counts.values())
        if total <= self.individually or since is None:
            return None
        shown = counts.most_common(_REASONS_SHOWN)
        by_reason = "; ".join(f"{status} {reason}: {count}" for (status, reason), count in shown)
        if len(counts) > len(shown):
            by_reason += f"; {len(counts) - len(shown)} other reasons"
        return (
            "Vobiz callbacks refused in the last %.0f s: %d refused, %d not logged one by one (%s)",
            now - since,
            total,
            total - self.individually,
            by_reason,
        )

    def _schedule_flush(self, delay: float) -> None:
        """Have the summary logged when the interval ends, even if no refusal comes after it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: the next refusal logs it
            return
        loop.call_later(max(delay, 0.0), self.flush)
