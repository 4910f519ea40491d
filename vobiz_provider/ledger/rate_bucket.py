"""One calls-per-second budget per Vobiz account, shared by every process and host through the store.

Vobiz answers 429 when an account places calls faster than its CPS limit, counted across everything that
uses the account. The per-process pacer (:mod:`vobiz_provider.client.pacing`) keeps one process under the
limit; two Celery workers each pacing to ``cps`` together send twice as fast. Every host that places calls
already reaches the callback store, so the account's budget lives there: one row per account in
``vobiz_rate_slots`` holding the account's next free send slot (a token bucket one token deep, i.e. the
generic cell rate algorithm: a deeper bucket would let ``2 x cps`` calls into one sliding second).

Reserving a slot is **one round trip**, one atomic statement on either backend::

    INSERT INTO vobiz_rate_slots (bucket, next_slot) VALUES (:bucket, now + :interval)
    ON CONFLICT (bucket) DO UPDATE SET next_slot = max(next_slot, now) + :interval
    RETURNING next_slot - :interval - now          -- seconds to wait for the reserved slot

``now`` is the database server's clock, so hosts whose clocks disagree still share one timeline, and the
answer is a duration each caller sleeps on its own clock. Concurrent callers are serialised by the row
lock (PostgreSQL) or the write lock (SQLite); each gets its own slot, ``(1 + SLACK) / cps`` apart, the same
spacing as the per-process pacer.

:class:`vobiz_provider.calls.pacing.SharedCallPacer` puts this behind the client's pacer interface (and
falls back to the per-process pacer while the store is down). The ledger does not import the client (the
receiver, which uses the ledger, must not depend on it): the caller passes the spacing.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vobiz_provider.ledger.database import LedgerPart

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["RateBuckets", "bucket_key"]

_POSTGRES_RESERVE = sa.text(
    "WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) "
    "INSERT INTO vobiz_rate_slots AS s (bucket, next_slot) "
    "SELECT :bucket, clock.now + :interval FROM clock "
    "ON CONFLICT (bucket) DO UPDATE "
    "SET next_slot = GREATEST(s.next_slot, (SELECT now FROM clock)) + :interval "
    "RETURNING s.next_slot - :interval - (SELECT now FROM clock)"
)
# julianday('now') has millisecond precision; SQLite evaluates 'now' once per statement.
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_SQLITE_RESERVE = sa.text(
    f"INSERT INTO vobiz_rate_slots (bucket, next_slot) VALUES (:bucket, {_SQLITE_NOW} + :interval) "
    f"ON CONFLICT (bucket) DO UPDATE SET next_slot = max(next_slot, {_SQLITE_NOW}) + :interval "
    f"RETURNING next_slot - :interval - {_SQLITE_NOW}"
)


def bucket_key(*, base_url: str, auth_id: str) -> str:
    """The row of an account's budget: the SHA-256 of its API root and Auth ID (the per-process pacer's
    key), so that one account on two API roots (the emulator, Vobiz) has two budgets.

    :param base_url: The API base URL.
    :param auth_id: The account.
    """
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{auth_id}".encode()).hexdigest()


class RateBuckets(LedgerPart):
    """The ``vobiz_rate_slots`` table: each account's next free ``POST /Call/`` slot."""

    def reserve_call_slot(self, bucket: str, *, interval: float) -> float:
        """Reserve the bucket's next send slot; the seconds to wait for it (``0.0`` when it is now).

        One statement in one transaction (see the module docstring).

        :param bucket: The account's bucket (:func:`bucket_key`).
        :param interval: Seconds between two slots (``(1 + slack) / cps``; > 0).
        :raises LedgerUnavailableError: When the store cannot be reached.
        """
        if not interval > 0:
            raise ValueError(f"interval must be greater than 0 seconds, got {interval!r}")
        params = {"bucket": bucket, "interval": float(interval)}
        statement = _POSTGRES_RESERVE if self._db.dialect == "postgresql" else _SQLITE_RESERVE

        def work(conn: Connection) -> float:
            return float(conn.execute(statement, params).scalar_one())

        return max(0.0, self._db.run(work, write=True))
