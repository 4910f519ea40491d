"""Placements: the tries that placed calls with receiver URLs, recorded before they dial.

A try opens its placement (:meth:`Placements.open_placement`) before ``POST /Call/``, with the number of
destinations it dials and until when its URLs are valid; :meth:`~vobiz_provider.ledger.calls.Calls.
register_fired_calls` then marks it registered. The receiver binds each callback to the calls of its try
through it (:mod:`vobiz_provider.ledger.binding`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vobiz_provider.correlation import token_lifetime
from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import check_lengths, utcnow
from vobiz_provider.ledger.schema import placements

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger.database import Database

__all__ = ["Placements", "mark_registered"]


def mark_registered(
    conn: Connection, db: Database, correlation: CorrelationToken, *, destinations: int, now: dt.datetime
) -> None:
    """Mark ``correlation``'s try as having recorded its calls (in the caller's transaction).

    A try that recorded calls without opening a placement first (code that places calls itself) gets one
    now, valid for the default lifetime of a callback URL.

    :param conn: The transaction recording the fired calls.
    :param db: The ledger's database (its dialect's ``INSERT ... ON CONFLICT``).
    :param correlation: The try that placed them.
    :param destinations: How many calls it recorded.
    :param now: The transaction's clock.
    """
    lifetime = dt.timedelta(seconds=token_lifetime(ring_timeout=None, time_limit=None))
    statement = db.insert(placements).values(
        ti_key=correlation.ti_key,
        try_number=correlation.try_number,
        opened_at=now,
        registered_at=now,
        expires_at=now + lifetime,
        destinations=destinations,
    )
    conn.execute(
        statement.on_conflict_do_update(index_elements=["ti_key", "try_number"], set_={"registered_at": now})
    )


class Placements(LedgerPart):
    """The ``vobiz_placements`` table."""

    def open_placement(self, correlation: CorrelationToken, *, destinations: int, expires_at: float) -> None:
        """Record that ``correlation``'s try is about to dial ``destinations`` numbers (idempotent).

        Call it before ``POST /Call/``: until the try records the calls Vobiz accepted, the receiver defers
        their callbacks (503) instead of refusing them. Opening again (the same try placing another call)
        adds the destinations and keeps the later expiry.

        :param correlation: The try placing the call.
        :param destinations: How many destinations the request dials (at least 1).
        :param expires_at: When its callback URLs expire, in seconds since the epoch (the tokens' ``exp``).
        """
        if destinations < 1:
            raise ValueError(f"open_placement needs at least one destination, got {destinations}")
        check_lengths([("ti_key", placements.c.ti_key, correlation.ti_key)])
        expiry = dt.datetime.fromtimestamp(expires_at, dt.timezone.utc)

        def work(conn: Connection) -> None:
            # Locked by its key like call writes (PostgreSQL): two first openings cannot both insert.
            self._db.lock(conn, [f"placement|{correlation.ti_key}"])
            now = utcnow()
            key = (placements.c.ti_key == correlation.ti_key) & (
                placements.c.try_number == correlation.try_number
            )
            row = conn.execute(sa.select(placements).where(key).with_for_update()).mappings().first()
            if row is None:
                conn.execute(
                    placements.insert().values(
                        ti_key=correlation.ti_key,
                        try_number=correlation.try_number,
                        opened_at=now,
                        registered_at=None,
                        expires_at=expiry,
                        destinations=destinations,
                    )
                )
                return
            conn.execute(
                placements.update()
                .where(key)
                .values(
                    opened_at=now,
                    expires_at=max(row["expires_at"], expiry),
                    destinations=row["destinations"] + destinations,
                )
            )

        self._db.run(work, write=True)
