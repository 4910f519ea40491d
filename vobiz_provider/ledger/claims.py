"""Notification claims: a notifier phones once per dedupe key and window, however often Airflow runs it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import utcnow
from vobiz_provider.ledger.schema import notifications

if TYPE_CHECKING:
    import datetime as dt

    from sqlalchemy.engine import Connection


__all__ = ["NotificationClaims"]


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class NotificationClaims(LedgerPart):
    """The ``vobiz_notifications`` table, keyed by the SHA-256 of each dedupe key."""

    def claim_notification(self, key: str, *, window: dt.timedelta) -> bool:
        """Claim the right to place the notification ``key``; ``False`` if it was claimed within ``window``.

        Atomic on both backends (one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE claimed_at < cutoff``): of
        several callers racing for one key, exactly one gets ``True``.

        :param key: The dedupe key (any length; stored as its SHA-256).
        :param window: How long a claim blocks the same key.
        """
        if not isinstance(key, str) or not key:
            raise ValueError("claim_notification needs a non-empty key")
        if window.total_seconds() < 0:
            raise ValueError("claim_notification(window=...) must not be negative")
        digest = _digest(key)

        def work(conn: Connection) -> bool:
            now = utcnow()
            statement = self._db.insert(notifications).values(dedupe_key=digest, claimed_at=now)
            statement = statement.on_conflict_do_update(
                index_elements=["dedupe_key"],
                set_={"claimed_at": now},
                where=notifications.c.claimed_at <= now - window,
            )
            return conn.execute(statement).rowcount == 1

        return self._db.run(work, write=True)

    def release_notification(self, key: str) -> None:
        """Forget the claim on ``key`` (the call could not be placed, so a later attempt may phone).

        :param key: The dedupe key given to :meth:`claim_notification`.
        """
        digest = _digest(key)
        self._db.run(
            lambda conn: conn.execute(notifications.delete().where(notifications.c.dedupe_key == digest)),
            write=True,
        )
