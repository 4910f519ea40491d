"""Storing callbacks in tests exactly as the receiver does, without a receiver in between."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from vobiz_provider.correlation import CREDENTIALS_USER, KINDS_OF_URL, CorrelationToken, callback_url
from vobiz_provider.ledger.schema import STEPS, schema_version

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from vobiz_provider.ledger import CallLedger, IngestResult, PreparedCallback

#: The try whose calls the tests' callbacks belong to when they name none.
TEST_TRY = CorrelationToken(dag_id="tests", run_id="run", task_id="call")

#: A callback_secret long enough to be accepted (32 bytes or more).
TEST_SECRET = "tests-callback-secret-0123456789abcdef"


def place(
    ledger: CallLedger,
    request_uuid: str,
    destinations: Sequence[str] = ("+919876543210",),
    *,
    correlation: CorrelationToken = TEST_TRY,
    from_number: str | None = None,
) -> None:
    """Record, as the operator does after ``POST /Call/``, that ``correlation``'s try placed this request.

    The receiver stores callbacks only for calls their URL's try recorded.
    """
    ledger.register_fired_calls(
        request_uuids=[request_uuid],
        destinations=list(destinations),
        from_number=from_number,
        correlation=correlation,
    )


def token_for(
    correlation: CorrelationToken, kind: str, *, secret: str = TEST_SECRET, lifetime: float = 3600.0
) -> str:
    """The token the placer would put in the ``kind`` URL of ``correlation``'s call."""
    # The answer URL's token also opens the routes of the XML served for it.
    route = "answer" if kind in ("gather", "dial", "record") else kind
    return correlation.encode(secret, kinds=KINDS_OF_URL[route], expires_at=time.time() + lifetime)


def url_for(base_url: str, correlation: CorrelationToken, kind: str, *, secret: str = TEST_SECRET) -> str:
    """The receiver URL of ``kind`` for ``correlation``'s call, as the placer builds it (with the
    credentials that make Vobiz sign it)."""
    return callback_url(base_url, kind, token_for(correlation, kind, secret=secret), secret=secret)


def _prepare(
    ledger: CallLedger, kind: str, fields: Mapping[str, str], *, bind: bool, **kwargs: Any
) -> PreparedCallback:
    correlation = kwargs.setdefault("correlation", TEST_TRY)
    request_uuid = fields.get("RequestUUID")
    if bind and request_uuid:
        place(ledger, request_uuid, [fields.get("To") or "+919876543210"], correlation=correlation)
    return ledger.prepare_callback(kind, fields, **kwargs)


def store_callback(
    ledger: CallLedger, kind: str, fields: Mapping[str, str], *, bind: bool = True, **kwargs: Any
) -> IngestResult:
    """Store one callback (a batch of one) and return what the ledger did; its own failure is raised.

    By default it is a callback of a call placed by ``correlation``'s try (``TEST_TRY`` when not given):
    its ``RequestUUID`` and ``To`` are recorded as fired first (:func:`place`). ``bind=False`` stores it
    as it comes, to test what the ledger refuses.

    A ledger whose class sets ``via_group_commit = True`` stores it through the group-commit writer instead,
    as the receiver does.

    :param kwargs: ``correlation``, ``replay_keys``, ``timezone``, ``nonce_window``, ``callback``...
    """
    prepared = _prepare(ledger, kind, fields, bind=bind, **kwargs)
    if getattr(ledger, "via_group_commit", False):
        return ledger.submit_callback(prepared).result(timeout=60)
    [result] = ledger.ingest([prepared])
    if isinstance(result, BaseException):
        raise result
    return result


async def astore_callback(
    ledger: CallLedger, kind: str, fields: Mapping[str, str], *, bind: bool = True, **kwargs: Any
) -> IngestResult:
    """:func:`store_callback` through the group-commit writer, awaited without blocking the loop."""
    prepared = await asyncio.to_thread(_prepare, ledger, kind, fields, bind=bind, **kwargs)
    return await asyncio.wrap_future(ledger.submit_callback(prepared))


def bare_url(url: str) -> str:
    """``url`` as issued by the provider, without its ``vobiz:<password>@`` (asserted to be there: it is
    what makes Vobiz sign the callbacks)."""
    parts = urlsplit(url)
    assert parts.username == CREDENTIALS_USER and parts.password, f"no callback credentials in {url!r}"
    return url.replace(f"{parts.username}:{parts.password}@", "", 1)


def store_of_version(store_url: str, version: int) -> sa.engine.Engine:
    """The store at ``store_url`` as the release of schema ``version`` left it: its first ``version`` upgrade
    steps run and that version recorded. Returns an engine on it (dispose it), to add that release's rows.
    """
    url = sa.engine.make_url(store_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema_version.create(conn)
        for step in STEPS[:version]:
            step(conn)
        upgraded_at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        conn.execute(schema_version.insert().values(id=1, version=version, upgraded_at=upgraded_at))
    return engine
