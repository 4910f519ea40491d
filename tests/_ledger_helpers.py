"""Storing callbacks in tests exactly as the receiver does, without a receiver in between."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vobiz_provider.ledger import CallLedger, IngestResult


def store_callback(ledger: CallLedger, kind: str, fields: Mapping[str, str], **kwargs: Any) -> IngestResult:
    """Store one callback (a batch of one) and return what the ledger did; its own failure is raised.

    A ledger whose class sets ``via_group_commit = True`` stores it through the group-commit writer instead,
    as the receiver does.

    :param kwargs: ``correlation``, ``nonce``, ``timezone``, ``nonce_window``, ``callback``.
    """
    prepared = ledger.prepare_callback(kind, fields, **kwargs)
    if getattr(ledger, "via_group_commit", False):
        return ledger.submit_callback(prepared).result(timeout=60)
    [result] = ledger.ingest([prepared])
    if isinstance(result, BaseException):
        raise result
    return result


async def astore_callback(
    ledger: CallLedger, kind: str, fields: Mapping[str, str], **kwargs: Any
) -> IngestResult:
    """:func:`store_callback` through the group-commit writer, awaited without blocking the loop."""
    return await asyncio.wrap_future(ledger.submit_callback(ledger.prepare_callback(kind, fields, **kwargs)))
