"""The call ledger: Vobiz's callbacks and the state of every call the provider placed, durably.

The receiver stores each callback, the operator and the notifier record what they say and the calls they
fire, and the triggers' shared poller reads the state of every waiting call in one query per interval.
:class:`CallLedger` is made of one part per job, each in the module named after it:
:mod:`~vobiz_provider.ledger.ingest` (the one callback write path) on top of
:mod:`~vobiz_provider.ledger.calls` (call rows and legs), :mod:`~vobiz_provider.ledger.feed` (the poller's
change feed), :mod:`~vobiz_provider.ledger.placements` (the tries that placed calls, which
:mod:`~vobiz_provider.ledger.binding` binds callbacks to), :mod:`~vobiz_provider.ledger.answers`,
:mod:`~vobiz_provider.ledger.claims`, :mod:`~vobiz_provider.ledger.rate_bucket` (the accounts' shared CPS
budgets) and
:mod:`~vobiz_provider.ledger.maintenance`, all over one :mod:`~vobiz_provider.ledger.database`. Each
component holds the ledger as the role it plays (:mod:`vobiz_provider.ledger.roles`), which names the
methods it may call.

Share one ledger per URL with :func:`get_ledger`. Methods are blocking: from asyncio code, call them in a
worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from vobiz_provider.config import DEFAULT_MAX_CALLBACKS_PER_CALL, DEFAULT_NONCE_WINDOW, get_settings
from vobiz_provider.ledger.answers import AnswerEntry, Answers
from vobiz_provider.ledger.call_views import CallViews
from vobiz_provider.ledger.claims import NotificationClaims
from vobiz_provider.ledger.database import Database
from vobiz_provider.ledger.feed import CallChange, ChangeFeed
from vobiz_provider.ledger.inbound import InboundCalls, InboundEvent, InboundStored
from vobiz_provider.ledger.ingest import Ingest, IngestResult, PreparedCallback
from vobiz_provider.ledger.maintenance import Maintenance
from vobiz_provider.ledger.placements import Placements
from vobiz_provider.ledger.rate_bucket import RateBuckets
from vobiz_provider.ledger.roles import (
    CallbackSink,
    CallBrowser,
    CallReader,
    LedgerMaintenance,
    PlacementLedger,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

    from vobiz_provider.config import VobizSettings

__all__ = [
    "AnswerEntry",
    "CallBrowser",
    "CallChange",
    "CallLedger",
    "CallReader",
    "CallbackSink",
    "InboundEvent",
    "InboundStored",
    "IngestResult",
    "LedgerMaintenance",
    "PlacementLedger",
    "PreparedCallback",
    "dispose_ledgers",
    "get_ledger",
]


class CallLedger(
    Ingest,
    Placements,
    ChangeFeed,
    Answers,
    NotificationClaims,
    RateBuckets,
    Maintenance,
    CallViews,
    InboundCalls,
):
    """The ledger at one SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``); thread-safe.

    It plays every role of :mod:`vobiz_provider.ledger.roles`.

    :param url: SQLAlchemy URL. PostgreSQL needs ``psycopg2`` (extra ``airflow-provider-vobiz[postgres]``).
    :param echo: Log every SQL statement (debugging).
    :param nonce_window: Default replay window of signature nonces, in seconds.
    :param max_callbacks_per_call: Default budget of a try's callback URLs, per destination dialled.
    :param busy_timeout: Seconds a SQLite writer waits for the lock, or a PostgreSQL connection attempt
        waits, before :class:`~vobiz_provider.exceptions.LedgerUnavailableError` is raised.
    """

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        nonce_window: float = DEFAULT_NONCE_WINDOW,
        max_callbacks_per_call: int = DEFAULT_MAX_CALLBACKS_PER_CALL,
        busy_timeout: float = 5.0,
    ) -> None:
        self._db = Database(url, echo=echo, busy_timeout=busy_timeout)
        self._init_ingest(nonce_window=nonce_window, max_callbacks_per_call=max_callbacks_per_call)

    @classmethod
    def from_settings(cls, settings: VobizSettings | None = None) -> CallLedger:
        """A new ledger at ``[vobiz] callback_store`` (prefer :func:`get_ledger`, which shares one per URL).

        :param settings: The settings; read from Airflow's configuration when omitted.
        """
        settings = settings or get_settings()
        return cls(
            settings.callback_store,
            nonce_window=settings.nonce_window,
            max_callbacks_per_call=settings.max_callbacks_per_call,
        )

    def __repr__(self) -> str:
        return f"CallLedger({self._db.describe()!r})"

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL (its ``repr`` hides the password)."""
        return self._db.url

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for event listeners in tests and diagnostics)."""
        return self._db.engine

    def dispose(self) -> None:
        """Write the callbacks still queued, stop the writer thread and close the pooled connections.

        The ledger can still be used; it reconnects (and restarts the writer) on demand.
        """
        self._stop_writer(timeout=self._db.busy_timeout + 5)
        self._db.engine.dispose()


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
