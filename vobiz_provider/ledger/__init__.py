"""The call ledger: Vobiz's callbacks and the state of every call the provider placed, durably.

The receiver stores each callback, the operator and the notifier record what they say and the calls they
fire, and the triggers' shared poller reads the state of every waiting call in one query per interval.
Each component holds the ledger as the role it plays (:mod:`vobiz_provider.ledger.roles`):
:class:`CallLedger` is the facade that gives every role its methods over the modules doing the work —
:mod:`~vobiz_provider.ledger.database` (engine, transactions, locks, schema),
:mod:`~vobiz_provider.ledger.ingest` (the one callback write path), :mod:`~vobiz_provider.ledger.calls`
(call rows and legs), :mod:`~vobiz_provider.ledger.feed` (the poller's change feed),
:mod:`~vobiz_provider.ledger.answers`, :mod:`~vobiz_provider.ledger.claims` and
:mod:`~vobiz_provider.ledger.maintenance`.

Share one ledger per URL with :func:`get_ledger`. Methods are blocking: from asyncio code, call them in a
worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from vobiz_provider.config import get_settings
from vobiz_provider.ledger.answers import AnswerBook, AnswerEntry
from vobiz_provider.ledger.calls import CallTable
from vobiz_provider.ledger.claims import NotificationClaims
from vobiz_provider.ledger.database import Database
from vobiz_provider.ledger.feed import CallChange, ChangeFeed
from vobiz_provider.ledger.ingest import CallbackIngest, IngestResult, PreparedCallback
from vobiz_provider.ledger.maintenance import prune
from vobiz_provider.ledger.roles import CallbackSink, CallReader, LedgerMaintenance, PlacementLedger

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence
    from concurrent.futures import Future

    from sqlalchemy.engine import URL, Engine

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.models.answer import AnswerSpec
    from vobiz_provider.models.callbacks import VobizCallback
    from vobiz_provider.models.record import CallRecord

__all__ = [
    "AnswerEntry",
    "CallChange",
    "CallLedger",
    "CallReader",
    "CallbackSink",
    "IngestResult",
    "LedgerMaintenance",
    "PlacementLedger",
    "PreparedCallback",
    "dispose_ledgers",
    "get_ledger",
]


class CallLedger:
    """The ledger at one SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``); thread-safe.

    It plays every role of :mod:`vobiz_provider.ledger.roles`; each method says which module does the work.

    :param url: SQLAlchemy URL. PostgreSQL needs ``psycopg2`` (extra ``airflow-provider-vobiz[postgres]``).
    :param echo: Log every SQL statement (debugging).
    :param nonce_window: Default replay window of signature nonces, in seconds.
    :param busy_timeout: Seconds a SQLite writer waits for the lock, or a PostgreSQL connection attempt
        waits, before :class:`~vobiz_provider.exceptions.LedgerUnavailableError` is raised.
    """

    def __init__(
        self, url: str, *, echo: bool = False, nonce_window: float = 300.0, busy_timeout: float = 5.0
    ) -> None:
        self._db = Database(url, echo=echo, busy_timeout=busy_timeout)
        self._calls = CallTable(self._db)
        self._ingest = CallbackIngest(self._db, self._calls, nonce_window=nonce_window)
        self._feed = ChangeFeed(self._db)
        self._answers = AnswerBook(self._db)
        self._claims = NotificationClaims(self._db)

    @classmethod
    def from_settings(cls, settings: VobizSettings | None = None) -> CallLedger:
        """A new ledger at ``[vobiz] callback_store`` (prefer :func:`get_ledger`, which shares one per URL).

        :param settings: The settings; read from Airflow's configuration when omitted.
        """
        settings = settings or get_settings()
        return cls(settings.callback_store, nonce_window=settings.nonce_window)

    def __repr__(self) -> str:
        return f"CallLedger({self._db.describe()!r})"

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL (its ``repr`` hides the password)."""
        return self._db.url

    @property
    def nonce_window(self) -> float:
        """The default replay window of signature nonces, in seconds."""
        return self._ingest.nonce_window

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for event listeners in tests and diagnostics)."""
        return self._db.engine

    def dispose(self) -> None:
        """Write the callbacks still queued, stop the writer thread and close the pooled connections.

        The ledger can still be used; it reconnects (and restarts the writer) on demand.
        """
        self._ingest.close(timeout=self._db.busy_timeout + 5)
        self._db.engine.dispose()

    # -- LedgerMaintenance --------------------------------------------------------------------------------

    def upgrade(self) -> int:
        """Create or upgrade the tables (:meth:`.database.Database.upgrade`); returns the version."""
        return self._db.upgrade()

    def prune(self, *, older_than: dt.timedelta) -> int:
        """Delete what no waiting task can need any more (:func:`.maintenance.prune`)."""
        return prune(self._db, older_than=older_than)

    # -- CallbackSink -------------------------------------------------------------------------------------

    def prepare_callback(
        self,
        kind: str,
        fields: Mapping[str, str],
        *,
        correlation: CorrelationToken | None = None,
        nonce: str | None = None,
        timezone: str | None = None,
        nonce_window: float | None = None,
        callback: VobizCallback | None = None,
    ) -> PreparedCallback:
        """Check a callback, without touching the database (:meth:`.ingest.CallbackIngest.prepare`)."""
        return self._ingest.prepare(
            kind,
            fields,
            correlation=correlation,
            nonce=nonce,
            timezone=timezone,
            nonce_window=nonce_window,
            callback=callback,
        )

    def submit_callback(self, prepared: PreparedCallback) -> Future[IngestResult]:
        """Queue it for the shared commit of the writer thread (:meth:`.ingest.CallbackIngest.submit`)."""
        return self._ingest.submit(prepared)

    def ingest(self, items: Sequence[PreparedCallback]) -> list[IngestResult | BaseException]:
        """Store callbacks in one transaction, now (:meth:`.ingest.CallbackIngest.ingest`)."""
        return self._ingest.ingest(items)

    def load_answer_entry(self, correlation: CorrelationToken) -> AnswerEntry | None:
        """The answer spec a try stored, with its receiver root (:meth:`.answers.AnswerBook.load_entry`)."""
        return self._answers.load_entry(correlation)

    # -- PlacementLedger ----------------------------------------------------------------------------------

    def save_answer(
        self, correlation: CorrelationToken, spec: AnswerSpec, *, callback_base_url: str | None = None
    ) -> None:
        """Store what a try's call says (:meth:`.answers.AnswerBook.save`)."""
        self._answers.save(correlation, spec, callback_base_url=callback_base_url)

    def register_fired_calls(
        self,
        *,
        request_uuids: Sequence[str],
        destinations: Sequence[str],
        from_number: str | None = None,
        correlation: CorrelationToken | None = None,
    ) -> None:
        """Record an accepted Make-Call request's calls (:meth:`.calls.CallTable.register_fired_calls`)."""
        self._calls.register_fired_calls(
            request_uuids=request_uuids,
            destinations=destinations,
            from_number=from_number,
            correlation=correlation,
        )

    def find_attempts(
        self, *, dag_id: str, run_id: str, task_id: str, map_index: int = -1, before_try: int | None = None
    ) -> list[CallRecord]:
        """The calls a task instance's tries fired (:meth:`.calls.CallTable.find_attempts`)."""
        return self._calls.find_attempts(
            dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, before_try=before_try
        )

    def claim_notification(self, key: str, *, window: dt.timedelta) -> bool:
        """Claim a notification's dedupe key (:meth:`.claims.NotificationClaims.claim`)."""
        return self._claims.claim(key, window=window)

    def release_notification(self, key: str) -> None:
        """Forget a claim (:meth:`.claims.NotificationClaims.release`)."""
        self._claims.release(key)

    # -- CallReader ---------------------------------------------------------------------------------------

    def lookup(
        self, *, request_uuids: Sequence[str] = (), call_uuids: Sequence[str] = ()
    ) -> list[CallRecord]:
        """The calls with these UUIDs, in one query (:meth:`.calls.CallTable.lookup`)."""
        return self._calls.lookup(request_uuids=request_uuids, call_uuids=call_uuids)

    def changed_calls(
        self, *, since: dt.datetime | None, request_uuids: Sequence[str] = (), call_uuids: Sequence[str] = ()
    ) -> list[CallChange]:
        """The calls changed since a cursor (:meth:`.feed.ChangeFeed.changed_calls`)."""
        return self._feed.changed_calls(since=since, request_uuids=request_uuids, call_uuids=call_uuids)

    def last_callback_at(self) -> dt.datetime | None:
        """When the newest callback arrived (:meth:`.feed.ChangeFeed.last_callback_at`)."""
        return self._feed.last_callback_at()

    def cache_api_result(self, record: CallRecord) -> None:
        """Store a state learnt from the Vobiz API (:meth:`.calls.CallTable.cache_api_result`)."""
        self._calls.cache_api_result(record)


_LEDGERS: dict[str, CallLedger] = {}
_LEDGERS_LOCK = threading.Lock()


def get_ledger(url: str | None = None) -> CallLedger:
    """The process-wide ledger for ``url`` (default ``[vobiz] callback_store``): one engine per URL.

    :param url: SQLAlchemy URL of the ledger.
    """
    settings = get_settings() if url is None else None
    key = settings.callback_store if settings is not None else url
    assert key is not None
    with _LEDGERS_LOCK:
        ledger = _LEDGERS.get(key)
        if ledger is None:
            ledger = _LEDGERS[key] = CallLedger.from_settings(settings) if settings else CallLedger(key)
        return ledger


def dispose_ledgers() -> None:
    """Dispose of every ledger made by :func:`get_ledger` and forget them (process shutdown, tests)."""
    with _LEDGERS_LOCK:
        ledgers = list(_LEDGERS.values())
        _LEDGERS.clear()
    for ledger in ledgers:
        ledger.dispose()
