"""Push for the triggers' poller: a cheap sign that a callback was committed, without querying the calls.

The poller (:mod:`vobiz_provider.triggers.poller`) asks the store for changed calls once per interval. So
that a waiting trigger learns of a hangup within a fraction of a second whatever that interval, the store
also *signals* writes, and the poller runs its query early when it hears one:

* **PostgreSQL**: the transaction that stores callbacks sends ``NOTIFY`` on :data:`CHANNEL`
  (:func:`notify_changed`), which PostgreSQL delivers at commit and only then. The watcher holds one
  connection of its own that ``LISTEN`` s, and the event loop watches its socket: no thread, no timer, no
  CPU while nothing is written.
* **SQLite** (a file): ``PRAGMA data_version`` on a connection of the watcher's own changes whenever another
  connection, in any process, commits to the file. The watcher reads it every :data:`SQLITE_CHECK_INTERVAL`
  seconds (a few microseconds, no lock taken, ``busy_timeout`` 0 so it never waits) and signals on change.

A signal only means "something may have changed": the poller's change-feed query decides what. Polling
stays the safety net: a signal lost (connection dropped, watcher failed, in-memory SQLite) only delays the
event to the next interval, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection, Engine

__all__ = ["CHANNEL", "SQLITE_CHECK_INTERVAL", "ChangeSignal", "notify_changed", "open_signal"]

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel of committed callbacks (one per database, whatever the schema: a
#: listener of another schema of the same database only runs one query too many).
CHANNEL: Final = "vobiz_calls_changed"
#: Seconds between two ``PRAGMA data_version`` reads of a SQLite watcher.
SQLITE_CHECK_INTERVAL: Final = 0.075

_NOTIFY: Final = sa.text(f"NOTIFY {CHANNEL}")


def notify_changed(conn: Connection) -> None:
    """Signal, at the commit of ``conn``'s transaction, that call rows changed (PostgreSQL; else nothing)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY)


class ChangeSignal:
    """Calls ``on_change`` on the event loop whenever the store may have changed; :meth:`close` to stop.

    Build it with :func:`open_signal` (in a worker thread: it connects).

    :param dbapi: The watcher's own DB-API connection (detached from the engine's pool).
    :param dialect: ``postgresql`` or ``sqlite``.
    """

    def __init__(self, *, dbapi: Any, dialect: str) -> None:
        self._dbapi = dbapi
        self._dialect = dialect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._version: Any = None
        self._fd: int | None = None
        #: Whether the watcher stopped by itself (its connection failed): the poller opens a new one.
        self.broken = False

    def start(self, on_change: Callable[[], None]) -> None:
        """Start watching on the running loop."""
        loop = self._loop = asyncio.get_running_loop()
        self._on_change = on_change
        if self._dialect == "postgresql":
            self._fd = self._dbapi.fileno()
            loop.add_reader(self._fd, self._readable)
        else:
            self._version = self._data_version()
            self._timer = loop.call_later(SQLITE_CHECK_INTERVAL, self._check)

    def close(self) -> None:
        """Stop watching and close the connection (on the loop that started it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._fd = None
        with contextlib.suppress(Exception):
            self._dbapi.close()

    def _signal(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _fail(self, err: BaseException) -> None:
        log.warning("Watching the callback store for changes failed (polling goes on): %s", err)
        self.broken = True
        self.close()
        self._signal()  # whatever happened meanwhile is read now

    def _readable(self) -> None:
        try:
            self._dbapi.poll()
        except Exception as err:
            self._fail(err)
            return
        if self._dbapi.notifies:
            self._dbapi.notifies.clear()
            self._signal()

    def _data_version(self) -> Any:
        return self._dbapi.execute("PRAGMA data_version").fetchone()[0]

    def _check(self) -> None:
        try:
            version = self._data_version()
        except Exception as err:
            self._fail(err)
            return
        if version != self._version:
            self._version = version
            self._signal()
        if self._loop is not None and not self.broken:
            self._timer = self._loop.call_later(SQLITE_CHECK_INTERVAL, self._check)


def open_signal(engine: Engine) -> ChangeSignal | None:
    """A watcher of ``engine``'s database, on a connection of its own (blocking: it connects); ``None`` when
    the store cannot signal (an in-memory SQLite database, another dialect)."""
    dialect = engine.dialect.name
    if dialect == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return None
    if dialect not in ("sqlite", "postgresql"):
        return None
    pooled = engine.raw_connection()
    pooled.detach()  # the watcher's own: never handed back to the pool
    dbapi: Any = pooled.dbapi_connection
    try:
        if dialect == "postgresql":
            dbapi.autocommit = True
            with dbapi.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
        else:
            dbapi.execute("PRAGMA busy_timeout = 0")
    except Exception:
        dbapi.close()
        raise
    return ChangeSignal(dbapi=dbapi, dialect=dialect)
