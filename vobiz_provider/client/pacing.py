"""Per-process pacing of ``POST /Call/`` to the account's calls-per-second limit.

Vobiz answers 429 when an account places calls faster than its CPS limit. Every client in the process
(sync and async, of every hook) that talks to the same account through the same API reserves its send time
from one registry keyed by ``(base_url, auth_id)``: the reservation takes the next free slot and moves
the slot ``1 / cps`` seconds (plus 5 % slack) on, under a lock held only for that arithmetic. The caller
then sleeps until its slot outside the lock (``time.sleep`` or ``await asyncio.sleep``), so waiting
callers never block each other and never hold a lock across a sleep.

The slack absorbs jitter between our send times and the moments Vobiz counts: at exactly ``1 / cps``
spacing, ``cps + 1`` calls span exactly one second, and one of them arriving a few milliseconds late
would put ``cps + 1`` calls into one sliding second on Vobiz's side.

This pacer is per process. Calls placed by the operators go through the account's shared slot in the
callback store instead (:mod:`vobiz_provider.ledger.rate_bucket`: one budget for every process and host
that reaches the store), which implements the same :class:`SlotReserver` interface and falls back to this
pacer when the store cannot be reached. Calls placed straight through a client or hook, without a store,
are paced here.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SLACK", "CallPacer", "SlotReserver", "apace_call", "pace_call", "pacer"]

SLACK = 0.05
"""Fraction added to the ``1 / cps`` spacing of calls."""


class SlotReserver(Protocol):
    """Reserves send slots of ``POST /Call/`` for an account: the interface of every pacer."""

    def reserve(self, *, base_url: str, auth_id: str, cps: float) -> float:
        """Reserve the account's next send slot; the seconds to wait for it (``0`` when it is now)."""
        ...


class CallPacer:
    """The registry of next free send slots, one per ``(base_url, auth_id)``.

    :param clock: Monotonic clock in seconds (``time.monotonic``; replaceable for tests).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot: dict[tuple[str, str], float] = {}

    def reserve(self, *, base_url: str, auth_id: str, cps: float) -> float:
        """Reserve the next send slot for this account and return how many seconds to wait for it.

        :param base_url: The API base URL the call goes to.
        :param auth_id: The account placing the call.
        :param cps: The account's calls-per-second limit (> 0).
        """
        if cps <= 0:
            raise ValueError(f"cps must be greater than 0, got {cps!r}")
        key = (base_url.rstrip("/"), auth_id)
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot.get(key, now))
            self._next_slot[key] = slot + (1.0 + SLACK) / cps
        return slot - now

    def reset(self) -> None:
        """Forget every reservation (for tests)."""
        with self._lock:
            self._next_slot.clear()


pacer = CallPacer()
"""The process-wide pacer shared by :class:`~vobiz_provider.client.VobizClient` and its async twin."""


def pace_call(
    *, base_url: str, auth_id: str, cps: float | None, reserver: SlotReserver | None = None
) -> float:
    """Block until the next ``POST /Call/`` for the account may be sent; return the wait (s).

    :param base_url: The API base URL.
    :param auth_id: The account.
    :param cps: The account's calls-per-second limit; ``None`` disables pacing.
    :param reserver: Where the slot is reserved; this process's :data:`pacer` when omitted.
    """
    if cps is None:
        return 0.0
    delay = (reserver or pacer).reserve(base_url=base_url, auth_id=auth_id, cps=cps)
    if delay > 0:
        time.sleep(delay)
    return delay


async def apace_call(
    *, base_url: str, auth_id: str, cps: float | None, reserver: SlotReserver | None = None
) -> float:
    """Async twin of :func:`pace_call`: ``await asyncio.sleep`` until the reserved slot. A ``reserver``
    other than the process pacer may block (a database round trip): it runs in a worker thread."""
    if cps is None:
        return 0.0
    if reserver is None or reserver is pacer:
        delay = pacer.reserve(base_url=base_url, auth_id=auth_id, cps=cps)
    else:
        delay = await asyncio.to_thread(reserver.reserve, base_url=base_url, auth_id=auth_id, cps=cps)
    if delay > 0:
        await asyncio.sleep(delay)
    return delay
