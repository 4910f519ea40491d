"""The ledger's database: engine, transactions, locks, schema upgrades and error translation.

Built on SQLAlchemy Core (1.4.49+ and 2.x). SQLite (the default, one host) runs in WAL mode and every
write transaction starts with ``BEGIN IMMEDIATE``, so writers queue on ``busy_timeout`` instead of
failing on a lock upgrade; the writers of one process queue on a lock per database file first, in arrival
order (SQLite's busy handler sleeps 1, 2, 5, 10... ms between attempts). PostgreSQL (several hosts) runs at
READ COMMITTED; writes that touch one call take a transaction-scoped advisory lock on its request and call
UUIDs (:meth:`Database.lock`), so "find the row, else insert it" cannot race, and the unique constraints
(``dedupe_key``, ``call_uuid``, ``leg_key``, ``nonce``) with ``INSERT ... ON CONFLICT`` back that up.
Deadlocks and serialization failures are retried. A database that cannot be reached, or stays locked,
raises :class:`~vobiz_provider.exceptions.LedgerUnavailableError`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os.path
import struct
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random

from vobiz_provider.exceptions import LedgerUnavailableError
from vobiz_provider.ledger.rows import utcnow
from vobiz_provider.ledger.schema import SCHEMA_VERSION, STEPS, schema_version

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from sqlalchemy.engine import Connection, Engine

__all__ = ["Conflict", "Database", "LedgerPart"]

T = TypeVar("T")

#: Namespace (first key) of this provider's PostgreSQL advisory locks: "Vobi".
PG_LOCK_NAMESPACE: Final = 0x566F6269
# PostgreSQL: serialization_failure, deadlock_detected.
_RETRYABLE_PGCODES: Final = frozenset({"40001", "40P01"})

# Volatile functions in the select list run after ORDER BY: the locks are taken in key order, so two
# writers locking overlapping sets cannot deadlock each other.
_ADVISORY_LOCKS: Final = sa.text(
    "SELECT pg_advisory_xact_lock(:namespace, key) FROM unnest(CAST(:keys AS integer[])) AS key ORDER BY key"
)


#: Seconds a pooled PostgreSQL connection may sit unused before it is checked (a round trip) when next taken.
PING_AFTER_IDLE: float = 1.0
_IDLE_SINCE: Final = "vobiz_idle_since"


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it has been idle for :data:`PING_AFTER_IDLE` seconds.

    SQLAlchemy's ``pool_pre_ping`` checks at every checkout: a round trip per transaction, which for the
    receiver's writer is one per group-commit batch, on a connection it used a moment ago. A connection
    that fails the check is replaced before the transaction starts (the pool's own recovery); one that dies
    while in use, or within the idle window, fails its transaction, and the pool replaces every connection
    of that server at the disconnect.
    """
    dbapi_error: type[Exception] = getattr(engine.dialect.dbapi, "Error", Exception)

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return  # a new connection, or one used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except dbapi_error as err:
            raise sa_exc.DisconnectionError(f"pooled connection is gone: {err}") from err


class Conflict(Exception):
    """A unique constraint was hit where the locks should have prevented it: retry the transaction."""


def _with_postgres_driver(url: sa.engine.URL) -> sa.engine.URL:
    """``postgresql://`` means psycopg2 here (SQLAlchemy 2.1 defaults to psycopg 3; either works)."""
    if url.drivername != "postgresql":
        return url
    for driver in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(driver) is not None:
            return url.set(drivername=f"postgresql+{driver}")
    return url.set(drivername="postgresql+psycopg2")  # fails with a clear ImportError below


def _lock_id(key: str) -> int:
    lock_id: int = struct.unpack(">i", hashlib.sha256(key.encode()).digest()[:4])[0]
    return lock_id


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, Conflict):
        return True
    return isinstance(err, sa_exc.DBAPIError) and getattr(err.orig, "pgcode", None) in _RETRYABLE_PGCODES


#: One lock per SQLite database file, shared by every ledger of this process on that file.
_SQLITE_WRITE_LOCKS: dict[str, threading.RLock] = {}
_SQLITE_WRITE_LOCKS_GUARD = threading.Lock()


def _sqlite_write_lock(url: sa.engine.URL) -> threading.RLock:
    database = url.database or ""
    key = os.path.realpath(database) if database not in ("", ":memory:") else f"memory:{id(url)}"
    with _SQLITE_WRITE_LOCKS_GUARD:
        return _SQLITE_WRITE_LOCKS.setdefault(key, threading.RLock())


class Database:
    """The ledger's database at one SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``).

    Thread-safe. The schema is created or upgraded on first use (or explicitly with :meth:`upgrade`).

    :param url: SQLAlchemy URL. PostgreSQL needs ``psycopg2`` (extra ``airflow-provider-vobiz[postgres]``).
    :param echo: Log every SQL statement (debugging).
    :param busy_timeout: Seconds a SQLite writer waits for the lock, or a PostgreSQL connection attempt
        waits, before :class:`~vobiz_provider.exceptions.LedgerUnavailableError` is raised.
    """

    def __init__(self, url: str, *, echo: bool = False, busy_timeout: float = 5.0) -> None:
        self.url = sa.engine.make_url(url)
        self.busy_timeout = busy_timeout
        self.engine: Engine = self._create_engine(echo=echo)
        #: ``sqlite`` or ``postgresql``.
        self.dialect: str = self.engine.dialect.name
        self._write_lock = _sqlite_write_lock(self.url) if self.dialect == "sqlite" else None
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def describe(self) -> str:
        """The URL with its password hidden, for messages."""
        return self.url.render_as_string(hide_password=True)

    # -- engine ---------------------------------------------------------------------------------------

    def _create_engine(self, *, echo: bool) -> Engine:
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            return self._create_sqlite_engine(echo=echo)
        if backend == "postgresql":
            url = _with_postgres_driver(self.url)
            options: dict[str, Any] = {}
            if url.get_driver_name() == "psycopg2":
                # psycopg2's executemany is a round trip per row: send UPDATEs in pages, as INSERTs are.
                options["executemany_mode"] = "values_plus_batch"
            try:
                engine = sa.create_engine(
                    url,
                    echo=echo,
                    future=True,
                    connect_args={"connect_timeout": max(1, round(self.busy_timeout))},
                    **options,
                )
            except ImportError as err:
                raise ImportError(
                    f"a PostgreSQL callback store needs a driver ({err}); install "
                    "'airflow-provider-vobiz[postgres]' (psycopg2)"
                ) from err
            _ping_when_idle(engine)
            return engine
        raise ValueError(
            f"unsupported callback store {self.describe()!r}: use a sqlite:/// or postgresql:// URL"
        )

    def _create_sqlite_engine(self, *, echo: bool) -> Engine:
        in_memory = self.url.database in (None, "", ":memory:")
        options: dict[str, Any] = {"echo": echo, "future": True}
        if in_memory:
            # One shared connection, or every checkout would see its own empty database.
            options["poolclass"] = sa.pool.StaticPool
        engine = sa.create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": self.busy_timeout},
            **options,
        )
        busy_ms = int(self.busy_timeout * 1000)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own implicit BEGIN is
            # deferred and cannot be made IMMEDIATE).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                if not in_memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front: a deferred transaction that reads and then writes
            # fails with SQLITE_BUSY when another writer committed in between, without waiting.
            immediate = conn.get_execution_options().get("vobiz_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def insert(self, table: sa.Table) -> Any:
        """An ``INSERT`` of this dialect (with ``on_conflict_do_*``)."""
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(table)

    # -- transactions ---------------------------------------------------------------------------------

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn connection problems into :class:`~vobiz_provider.exceptions.LedgerUnavailableError`."""
        try:
            yield
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as err:
            reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
            raise LedgerUnavailableError(
                f"callback store {self.describe()} is unavailable: {reason}"
            ) from err
        except sa_exc.DBAPIError as err:
            if err.connection_invalidated:
                raise LedgerUnavailableError(f"callback store {self.describe()} lost its connection") from err
            raise

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """Wait for this process's turn to write (SQLite only), at most ``busy_timeout``."""
        lock = self._write_lock
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=self.busy_timeout):
            raise LedgerUnavailableError(
                f"callback store {self.describe()} stayed locked for {self.busy_timeout:g} s"
            )
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _begin(self, *, write: bool) -> Iterator[Connection]:
        if not write:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._write_turn(), self.engine.connect() as conn:
            conn = conn.execution_options(vobiz_write=True)
            with conn.begin():
                yield conn

    def run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """Run ``work`` in one transaction (the schema made current first), retrying deadlocks.

        :param work: Does the reads and writes, given the connection.
        :param write: Whether it writes (SQLite then takes the write lock up front).
        :raises LedgerUnavailableError: When the database cannot be reached or stays locked.
        """
        with self.translate_errors():
            self._ensure_schema()
            for attempt in Retrying(
                retry=retry_if_exception(_is_retryable),
                stop=stop_after_attempt(5),
                wait=wait_random(0, 0.05),
                reraise=True,
            ):
                with attempt, self._begin(write=write) as conn:
                    return work(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def lock(self, conn: Connection, keys: Iterable[str | None]) -> None:
        """Serialise the writers of these request/call UUIDs (PostgreSQL; SQLite writers are serial).

        One statement takes every lock, in key order.
        """
        if self.dialect != "postgresql":
            return
        lock_ids = sorted({_lock_id(key) for key in keys if key})
        if lock_ids:
            conn.execute(_ADVISORY_LOCKS, {"namespace": PG_LOCK_NAMESPACE, "keys": lock_ids})

    # -- schema ---------------------------------------------------------------------------------------

    def upgrade(self) -> int:
        """Create the tables or bring them to the current version (idempotent); returns the version.

        Runs in one transaction under a lock (PostgreSQL advisory lock, SQLite write lock), so several
        processes may call it at once.
        """
        with self.translate_errors(), self._begin(write=True) as conn:
            if self.dialect == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:namespace, 0)"), {"namespace": PG_LOCK_NAMESPACE}
                )
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(
                sa.select(schema_version.c.version).where(schema_version.c.id == 1)
            ).scalar_one_or_none()
            version = current or 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the callback store has schema version {version}, newer than this provider's "
                    f"{SCHEMA_VERSION}: upgrade airflow-provider-vobiz on this host"
                )
            for step in STEPS[version:]:
                step(conn)
            if current is None:
                conn.execute(
                    schema_version.insert().values(id=1, version=SCHEMA_VERSION, upgraded_at=utcnow())
                )
            elif version < SCHEMA_VERSION:
                conn.execute(
                    schema_version.update()
                    .where(schema_version.c.id == 1)
                    .values(version=SCHEMA_VERSION, upgraded_at=utcnow())
                )
        self._schema_ready = True
        return SCHEMA_VERSION

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self.upgrade()


class LedgerPart:
    """A part of :class:`~vobiz_provider.ledger.CallLedger`, which is made of one part per job.

    Every part's methods work on the ledger's :class:`Database`.
    """

    _db: Database
