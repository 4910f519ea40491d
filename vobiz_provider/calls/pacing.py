"""The account's CPS budget shared by every process and host, behind the client's pacer interface.

:class:`SharedCallPacer` reserves ``POST /Call/`` slots in the callback store
(:mod:`vobiz_provider.ledger.rate_bucket`: one round trip per call) with the per-process pacer's spacing,
``(1 + SLACK) / cps``. When the store cannot be reached it logs a warning and falls back to the
per-process pacer (:mod:`vobiz_provider.client.pacing`): calls keep flowing, and the client retries any
429 they meet, rather than failing because the budget's bookkeeping is down.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from vobiz_provider.client.pacing import SLACK, pacer
from vobiz_provider.exceptions import LedgerUnavailableError
from vobiz_provider.ledger.rate_bucket import bucket_key

if TYPE_CHECKING:
    from vobiz_provider.client.pacing import SlotReserver

__all__ = ["SharedCallPacer", "SlotStore"]

log = logging.getLogger(__name__)


class SlotStore(Protocol):
    """What :class:`SharedCallPacer` needs of the ledger."""

    def reserve_call_slot(self, bucket: str, *, interval: float) -> float:
        """See :meth:`vobiz_provider.ledger.rate_bucket.RateBuckets.reserve_call_slot`."""
        ...


class SharedCallPacer:
    """A :class:`~vobiz_provider.client.pacing.SlotReserver` backed by the store's rate buckets.

    :param store: The ledger holding the budgets.
    :param fallback: Used while the store cannot be reached; the process-wide pacer by default.
    """

    def __init__(self, *, store: SlotStore, fallback: SlotReserver = pacer) -> None:
        self.store = store
        self.fallback = fallback

    def reserve(self, *, base_url: str, auth_id: str, cps: float) -> float:
        """Reserve the account's next send slot in the store (in this process's pacer if it is down).

        :param base_url: The API base URL the call goes to.
        :param auth_id: The account placing the call.
        :param cps: The account's calls-per-second limit (> 0).
        """
        if not cps > 0:
            raise ValueError(f"cps must be greater than 0, got {cps!r}")
        try:
            return self.store.reserve_call_slot(
                bucket_key(base_url=base_url, auth_id=auth_id), interval=(1.0 + SLACK) / cps
            )
        except LedgerUnavailableError as exc:
            log.warning("Pacing calls per process: the shared CPS budget is unavailable (%s)", exc)
            return self.fallback.reserve(base_url=base_url, auth_id=auth_id, cps=cps)
