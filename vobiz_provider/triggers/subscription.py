"""One waiting trigger's place in the shared poller (:mod:`vobiz_provider.triggers.poller`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Iterable

    from vobiz_provider.ledger import CallChange
    from vobiz_provider.models.record import CallRecord

__all__ = ["Subscription"]


class SharedPoller(Protocol):
    """What a subscription reads of its :class:`~vobiz_provider.triggers.poller.SharedPoller`."""

    _error: BaseException | None
    _fatal: BaseException | None
    _polled_at: float | None
    _last_callback_at: float | None
    _failing_since: float | None
    #: The one context every subscription's wait timer runs in (see :meth:`Subscription.wait`).
    _context: contextvars.Context

    def _ensure_running(self) -> None: ...

    def _join(self, subscription: Subscription) -> None: ...

    def _leave(self, subscription: Subscription) -> None: ...


class Subscription:
    """One trigger's place in a :class:`SharedPoller`, for the duration of an ``async with`` block.

    The poller sets :attr:`records` (every stored record whose request or call UUID is one of this
    subscription's) after its first poll, and wakes :meth:`wait` only when that changes, when the store
    becomes unreadable or readable again (:attr:`error`), and once after the first poll: 10,000 idle
    waiters cost no wake-ups.

    Every waiting trigger keeps one, so it keeps few objects (each one lengthens every full pass of the
    garbage collector, which stalls the triggerer's loop): it is its own async context manager rather than
    an ``@asynccontextmanager`` generator, its UUIDs are tuples (a tuple of strings is not tracked by the
    collector, a set is), and its attributes are slots.

    :param request_uuids: Request UUIDs whose records this subscriber wants (duplicates and empty ones
        dropped).
    :param call_uuids: Call UUIDs whose records this subscriber wants (likewise).
    :param interval: Seconds between two polls this subscriber asks for.
    :param poller: The poller that serves it.
    """

    __slots__ = (
        "_loaded",
        "_poller",
        "_reported",
        "_rows",
        "_updated",
        "_waiter",
        "call_uuids",
        "interval",
        "records",
        "request_uuids",
    )

    def __init__(
        self,
        *,
        request_uuids: Iterable[str] = (),
        call_uuids: Iterable[str] = (),
        interval: float,
        poller: SharedPoller,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.request_uuids: tuple[str, ...] = tuple(dict.fromkeys(u for u in request_uuids if u))
        self.call_uuids: tuple[str, ...] = tuple(dict.fromkeys(u for u in call_uuids if u))
        self.interval = interval
        self.records: list[CallRecord] | None = None
        self._poller = poller
        #: A poll result arrived that :meth:`wait` has not returned yet.
        self._updated = False
        self._waiter: asyncio.Future[None] | None = None
        #: The rows delivered so far, by row id (their versions tell a change from a re-read).
        self._rows: dict[int, CallChange] = {}
        #: Whether a poll has loaded this subscriber's rows (from then on it is kept current by the cursor).
        self._loaded = False
        self._reported = False

    def __repr__(self) -> str:
        return (
            f"Subscription(request_uuids={self.request_uuids!r}, call_uuids={self.call_uuids!r}, "
            f"interval={self.interval!r}, records={self.records!r})"
        )

    async def __aenter__(self) -> Subscription:
        self._poller._join(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._poller._leave(self)

    @property
    def error(self) -> BaseException | None:
        """Why the store cannot be read right now (``None`` while it answers)."""
        return self._poller._error

    @property
    def polled_at(self) -> float | None:
        """Epoch seconds of the last successful poll that covered this subscriber (``None``: none yet)."""
        return self._poller._polled_at if self._loaded else None

    @property
    def last_callback_at(self) -> float | None:
        """Epoch seconds of the newest callback in the store (any call), as last seen by the poller."""
        return self._poller._last_callback_at

    @property
    def failing_since(self) -> float | None:
        """Epoch seconds since which every poll has failed (``None`` while the store answers)."""
        return self._poller._failing_since

    async def wait(self, timeout: float) -> bool:
        """Wait until the next poll result arrives, or ``timeout`` seconds; ``True`` if one arrived.

        :raises BaseException: A signal's exception (e.g. Airflow's task timeout) that landed in the
            poller's task rather than in the waiter's: the wait ends with it, as it would have.
        """
        self._raise_fatal()
        self._poller._ensure_running()  # revive a poller whose task was cancelled under us
        if not self._updated:
            # A bare future and a timer rather than wait_for(Event.wait()), which makes a task per wait:
            # 10,000 waiters re-arm their waits all the time, and every object counts for the garbage
            # collector's full passes. The timer runs in the poller's one context (it only resolves the
            # future), rather than in a copy of the caller's made for each timer.
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(max(timeout, 0.0), _resolve, waiter, context=self._poller._context)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            self._raise_fatal()
            if not self._updated:
                return False
        self._updated = False
        return True

    def _raise_fatal(self) -> None:
        fatal = self._poller._fatal
        if fatal is not None:
            raise fatal

    def _wake(self) -> None:
        self._updated = True
        if self._waiter is not None:
            _resolve(self._waiter)

    def _take(self, change: CallChange) -> bool:
        """Take one row read by a poll; ``True`` if it is new to this subscriber or changed."""
        known = self._rows.get(change.id)
        if known is not None and known.version == change.version:
            return False  # read again inside the cursor's overlap
        self._rows[change.id] = change
        if change.call_uuid is not None and change.leg_key is not None:
            # The call that names a fired leg absorbs (and the store deletes) the leg's placeholder row.
            for row_id, other in list(self._rows.items()):
                if row_id != change.id and other.call_uuid is None and other.leg_key == change.leg_key:
                    del self._rows[row_id]
        return True

    def _publish(self) -> None:
        self.records = [self._rows[row_id].record() for row_id in sorted(self._rows)]
        self._reported = True
        self._wake()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
