"""The receiver's log of stored callbacks: each at DEBUG, at most one INFO line every few seconds."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Final

from vobiz_provider.untrusted import loggable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vobiz_provider.correlation import CorrelationToken

__all__ = ["LOG_SUMMARY_INTERVAL", "StoredCallbackLog"]

log = logging.getLogger(__name__)

#: Seconds between two INFO summaries of the callbacks stored (each one is logged at DEBUG).
LOG_SUMMARY_INTERVAL: Final = 10.0
#: Most characters of a callback field in the log line of a stored callback.
_FIELD_LIMIT: Final = 100


class StoredCallbackLog:
    """Logs the callbacks stored: each at DEBUG, and at most one INFO line every ``interval`` seconds.

    At a few callbacks a minute the INFO line is the callback's own (kind, ``CallUUID``, ``CallStatus``,
    ``HangupCause``, task and try), as if every callback were logged at INFO. Under load it is a summary of
    the callbacks stored since the last INFO line, by kind: formatting a log record through Airflow's
    logging costs a receiver several times what storing the callback in a shared transaction does.

    :param interval: Seconds between two INFO lines.
    """

    def __init__(self, *, interval: float = LOG_SUMMARY_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, bool]] = Counter()
        self._since: float | None = None

    def count(
        self, *, kind: str, fields: Mapping[str, str], correlation: CorrelationToken, duplicate: bool
    ) -> None:
        """Count (and maybe log) one callback the ledger answered for.

        :param kind: The callback kind.
        :param fields: Its fields.
        :param correlation: The task instance it belongs to.
        :param duplicate: Whether it had been stored before.
        """
        now = time.monotonic()
        with self._lock:
            self._counts[(kind, duplicate)] += 1
            due = self._since is None or now - self._since >= self.interval
            if due:
                counts, self._counts = self._counts, Counter()
                since, self._since = self._since, now
        if not due and not log.isEnabledFor(logging.DEBUG):
            return
        if not due or sum(counts.values()) == 1:
            log.log(
                logging.INFO if due else logging.DEBUG,
                "Vobiz %s callback %s: CallUUID=%s CallStatus=%s HangupCause=%s (task %s, try %s)",
                kind,
                "duplicate" if duplicate else "stored",
                loggable(fields.get("CallUUID"), limit=_FIELD_LIMIT),
                loggable(fields.get("CallStatus"), limit=_FIELD_LIMIT),
                loggable(fields.get("HangupCause") or fields.get("HangupCauseName"), limit=_FIELD_LIMIT),
                correlation.ti_key,
                correlation.try_number,
            )
            return
        by_kind = Counter[str]()
        for (each, _), count in counts.items():
            by_kind[each] += count
        log.info(
            "Vobiz callbacks in the last %.0f s: %d stored, %d duplicate (%s)",
            now - since if since is not None else 0.0,
            sum(count for (_, dup), count in counts.items() if not dup),
            sum(count for (_, dup), count in counts.items() if dup),
            ", ".join(f"{each} {count}" for each, count in sorted(by_kind.items())),
        )
