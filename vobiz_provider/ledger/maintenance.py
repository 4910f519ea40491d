"""Keeping the ledger small: ``vobiz-callbacks prune`` deletes what no waiting task can still need."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final

from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import utcnow
from vobiz_provider.ledger.schema import (
    answers,
    calls,
    events,
    inbound_events,
    nonces,
    notifications,
    placements,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


__all__ = ["STALE_CALL_AGE", "Maintenance"]

#: A call not heard of for this long is not waited for by anyone: its callback URLs have expired (they live
#: at most ~26 h) and no task waits longer than its call can last.
STALE_CALL_AGE: Final = dt.timedelta(days=2)


class Maintenance(LedgerPart):
    """The schema and the pruning of old rows (``vobiz-callbacks db upgrade | prune``)."""

    #: Seconds a replay key is kept (set by the ledger from ``[vobiz] nonce_window``).
    nonce_window: float

    def upgrade(self) -> int:
        """Create the tables or bring them to the current version (idempotent); returns the version.

        Every part upgrades the schema on first use; this does it now (``vobiz-callbacks db upgrade``).
        """
        return self._db.upgrade()

    def prune(self, *, older_than: dt.timedelta) -> int:
        """Delete what is older than ``older_than``: callbacks, ended calls, answers, notification claims,
        placements whose URLs expired, and inbound calls, key presses and hangups.

        An inbound event is deleted by its age alone: a stream's cursor only moves forward, so a deleted row
        is never delivered again (the streams' cursors, one row each, are kept).

        A call not ended is kept while it may still be waited for: it is deleted only once it has not
        changed for both ``older_than`` and :data:`STALE_CALL_AGE`. Replay keys are kept for ``[vobiz]
        nonce_window`` even when ``older_than`` is shorter (a forgotten one lets a signature be replayed).

        :param older_than: Age limit; keep it longer than any task waits for its call.
        :return: The number of rows deleted.
        """
        if older_than.total_seconds() < 0:
            raise ValueError("prune(older_than=...) must not be negative")

        def work(conn: Connection) -> int:
            now = utcnow()
            cutoff = now - older_than
            stale = min(cutoff, now - STALE_CALL_AGE)
            replay_cutoff = min(cutoff, now - dt.timedelta(seconds=self.nonce_window))
            deleted = conn.execute(events.delete().where(events.c.received_at < cutoff)).rowcount
            deleted += conn.execute(
                calls.delete().where(calls.c.terminal.is_(True), calls.c.updated_at < cutoff)
            ).rowcount
            deleted += conn.execute(
                calls.delete().where(calls.c.terminal.is_(False), calls.c.updated_at < stale)
            ).rowcount
            deleted += conn.execute(placements.delete().where(placements.c.expires_at < cutoff)).rowcount
            deleted += conn.execute(nonces.delete().where(nonces.c.seen_at < replay_cutoff)).rowcount
            deleted += conn.execute(answers.delete().where(answers.c.created_at < cutoff)).rowcount
            deleted += conn.execute(
                notifications.delete().where(notifications.c.claimed_at < cutoff)
            ).rowcount
            deleted += conn.execute(
                inbound_events.delete().where(inbound_events.c.received_at < cutoff)
            ).rowcount
            return deleted

        return self._db.run(work, write=True)
