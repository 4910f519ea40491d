"""Group commit: one writer thread applies queued items in shared transactions, then answers each.

A transaction per callback costs a commit (an fsync on PostgreSQL, the WAL append and lock hand-over on
SQLite) and several milliseconds of driver work; a receiver answering many senders at once spends most of
its time there. :class:`GroupCommitter` lets request handlers queue their item and wait on a
:class:`~concurrent.futures.Future`; a single writer thread takes everything queued (up to ``max_batch``),
hands it to ``apply_batch`` (which opens one transaction, writes every item and commits) and only then
resolves the futures. So an item's future is resolved only after the commit that made it durable, and
items that arrive while a batch is being written form the next batch: the more senders, the larger the
batches, with no waiting added when there is a single sender.

A caller on an event loop uses :meth:`GroupCommitter.asubmit`: its future is the loop's own, and the writer
resolves all of a batch's futures of one loop with one ``call_soon_threadsafe``, rather than chaining a
thread future to a loop future per item (``asyncio.wrap_future``: two callbacks and a loop wake-up each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Final, Generic, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

__all__ = ["DEFAULT_MAX_BATCH", "GroupCommitter"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Most items written in one transaction.
DEFAULT_MAX_BATCH: Final = 256

_STOP: Final = object()

if TYPE_CHECKING:
    #: A queued item's future: a thread future (:meth:`GroupCommitter.submit`) or a loop's (``asubmit``).
    _Waiter: TypeAlias = "Future[R] | asyncio.Future[R]"


def _settle(outcomes: list[tuple[asyncio.Future[R], R | BaseException]]) -> None:
    """On the loop: resolve the loop futures of one batch (a future cancelled meanwhile is left as it is)."""
    for future, outcome in outcomes:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class GroupCommitter(Generic[T, R]):
    """A writer thread that applies queued items in batches, one transaction per batch.

    ``apply_batch`` gets the items of a batch in arrival order and returns, in the same order, each item's
    result or the exception that item failed with. If it raises, every item of the batch fails with that
    exception. It must return only after the batch is committed.

    The thread starts on the first :meth:`submit` (again in a forked child) and stops with :meth:`close`.

    :param apply_batch: Writes a batch in one transaction and commits it.
    :param max_batch: Most items per batch.
    :param name: The writer thread's name.
    """

    def __init__(
        self,
        *,
        apply_batch: Callable[[Sequence[T]], Sequence[R | BaseException]],
        max_batch: int = DEFAULT_MAX_BATCH,
        name: str = "vobiz-group-commit",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._apply_batch = apply_batch
        self._max_batch = max_batch
        self._name = name
        self._guard = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[T, _Waiter[R]] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; the future resolves once the batch holding it is committed (or failed).

        Cancelling the future before its batch starts withdraws the item: it is not written.
        """
        future: Future[R] = Future()
        self._ensure_thread()
        self._queue.put((item, future))
        return future

    def asubmit(self, item: T) -> asyncio.Future[R]:
        """:meth:`submit` for a caller on an event loop: the future is the running loop's own.

        The writer resolves it on the loop once the batch holding it is committed (or failed). Cancelling it
        before its batch starts withdraws the item (one cancelled while its batch is written is still
        written: the item is then stored, and its answer dropped).
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._ensure_thread()
        self._queue.put((item, future))
        return future

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the writer thread (a later :meth:`submit` starts a new one).

        :param timeout: Seconds to wait for the thread.
        """
        with self._guard:
            thread, self._thread = self._thread, None
            if thread is None or not thread.is_alive():
                return
            self._queue.put(_STOP)
        thread.join(timeout)

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            return
        with self._guard:
            if self._pid != os.getpid():
                # A forked child inherits the queue but not the thread: start afresh.
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name=self._name, daemon=True
                )
                self._thread.start()

    def _run(self, pending: queue.SimpleQueue[tuple[T, _Waiter[R]] | object]) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[T, _Waiter[R]]] = []
            entry = pending.get()
            while True:
                if entry is _STOP:
                    stopping = True
                else:
                    item, future = cast("tuple[T, _Waiter[R]]", entry)  # not _STOP: a queued item
                    # A future cancelled while queued (its request gave up) is not written.
                    if isinstance(future, Future):
                        if future.set_running_or_notify_cancel():
                            batch.append((item, future))
                    elif not future.cancelled():
                        batch.append((item, future))
                if stopping or len(batch) >= self._max_batch:
                    break
                try:
                    entry = pending.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)

    def _write(self, batch: list[tuple[T, _Waiter[R]]]) -> None:
        outcomes: Sequence[R | BaseException]
        try:
            outcomes = self._apply_batch([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"apply_batch returned {len(outcomes)} results for {len(batch)} items")
        except BaseException as err:  # every waiting request gets the error
            outcomes = [err] * len(batch)
        on_loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[R], R | BaseException]]] = {}
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(future, Future):
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            else:
                on_loops.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, settled in on_loops.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, settled)
