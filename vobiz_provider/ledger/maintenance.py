"""Keeping the ledger small: ``vobiz-callbacks prune`` deletes what no waiting task can still need."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import utcnow
from vobiz_provider.ledger.schema import answers, calls, events, nonces, notifications

if TYPE_CHECKING:
    import datetime as dt

    from sqlalchemy.engine import Connection


__all__ = ["Maintenance"]


class Maintenance(LedgerPart):
    """The schema and the pruning of old rows (``vobiz-callbacks db upgrade | prune``)."""

    def upgrade(self) -> int:
        """Create the tables or bring them to the current version (idempotent); returns the version.

        Every part upgrades the schema on first use; this does it now (``vobiz-callbacks db upgrade``).
        """
        return self._db.upgrade()

    def prune(self, *, older_than: dt.timedelta) -> int:
        """Delete callbacks, ended calls, nonces, answers and notification claims older than ``older_than``.

        Calls still in progress are kept whatever their age: a waiting task may still need them.

        :param older_than: Age limit; keep it longer than any task waits for its call.
        :return: The number of rows deleted.
        """
        if older_than.total_seconds() < 0:
            raise ValueError("prune(older_than=...) must not be negative")

        def work(conn: Connection) -> int:
            cutoff = utcnow() - older_than
            deleted = conn.execute(events.delete().where(events.c.received_at < cutoff)).rowcount
            deleted += conn.execute(
                calls.delete().where(calls.c.terminal.is_(True), calls.c.updated_at < cutoff)
            ).rowcount
            deleted += conn.execute(nonces.delete().where(nonces.c.seen_at < cutoff)).rowcount
            deleted += conn.execute(answers.delete().where(answers.c.created_at < cutoff)).rowcount
            deleted += conn.execute(
                notifications.delete().where(notifications.c.claimed_at < cutoff)
            ).rowcount
            return deleted

        return self._db.run(work, write=True)
