"""Placements: the tries that placed calls with receiver URLs, recorded before they dial.

A try opens its placement (:meth:`Placements.open_placement`) before ``POST /Call/``, with the number of
destinations it dials and until when its URLs are valid; :meth:`~vobiz_provider.ledger.calls.Calls.
register_fired_calls` then marks it registered. The receiver binds each callback to the calls of its try
through it (:mod:`vobiz_provider.ledger.binding`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vobiz_provider.correlation import token_lifetime
from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import check_lengths, chunks, utcnow
from vobiz_provider.ledger.schema import calls, placements

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger.database import Database

__all__ = ["PlacementState", "Placements", "mark_registered"]


@dataclass(frozen=True, kw_only=True)
class PlacementState:
    """What the ledger knows of one try's placement (:meth:`Placements.last_placement`).

    :param try_number: The try.
    :param opened_at: When it last opened its placement (before dialling).
    :param registered_at: When it recorded the calls Vobiz accepted (``None``: it never did, so it died
        or failed between opening and recording: whether ``POST /Call/`` reached Vobiz is unknown).
    :param settled_at: When a try of the task reported how its calls ended (``None``: nobody did yet).
    """

    try_number: int
    opened_at: dt.datetime
    registered_at: dt.datetime | None
    settled_at: dt.datetime | None


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

    def last_placement(self, ti_key: str, *, before_try: int) -> PlacementState | None:
        """The placement of the newest try of ``ti_key`` before ``before_try`` that opened one, if any.

        :param ti_key: ``dag_id/run_id/task_id/map_index`` (:attr:`CorrelationToken.ti_key`).
        :param before_try: The current try: only earlier tries count.
        """
        statement = (
            sa.select(placements)
            .where(placements.c.ti_key == ti_key, placements.c.try_number < before_try)
            .order_by(placements.c.try_number.desc())
            .limit(1)
        )
        row = self._db.run(lambda conn: conn.execute(statement).mappings().first(), write=False)
        if row is None:
            return None
        return PlacementState(
            try_number=row["try_number"],
            opened_at=row["opened_at"],
            registered_at=row["registered_at"],
            settled_at=row["settled_at"],
        )

    def settle_calls(self, request_uuids: Sequence[str]) -> int:
        """Record that the outcome of these calls was reported (the task failed or succeeded with it).

        Marks the placement of every try that recorded one of them; a later try then knows the outcome was
        seen, and a call that failed is dialled again rather than reported a second time. Returns how many
        placements were marked.

        :param request_uuids: Request (or call) UUIDs of the calls.
        """
        wanted = [uuid for uuid in dict.fromkeys(request_uuids) if uuid]
        if not wanted:
            return 0

        def work(conn: Connection) -> int:
            tries: set[tuple[str, int]] = set()
            for chunk in chunks(wanted):
                statement = sa.select(calls.c.ti_key, calls.c.try_number).where(
                    calls.c.request_uuid.in_(chunk) | calls.c.call_uuid.in_(chunk),
                    calls.c.ti_key.is_not(None),
                    calls.c.try_number.is_not(None),
                )
                tries.update((row.ti_key, row.try_number) for row in conn.execute(statement))
            now = utcnow()
            for ti_key, try_number in sorted(tries):
                conn.execute(
                    placements.update()
                    .where(placements.c.ti_key == ti_key, placements.c.try_number == try_number)
                    .values(settled_at=now)
                )
            return len(tries)

        return self._db.run(work, write=True)
