"""Storing Vobiz's callbacks: ONE write path, where a single callback is a batch of one.

:meth:`Ingest.prepare_callback` checks a callback and works out what storing it writes, without touching the
database; :meth:`Ingest.ingest` writes prepared callbacks in one transaction: for each, first whether its
URL's try may store it at all (:mod:`~vobiz_provider.ledger.binding`: refused callbacks store nothing),
then its signature's replay keys, its event row (which counts against its try's budget) and its call's
new state commit together. So if storing fails (503 to Vobiz) the nonce is not burnt and Vobiz's retry
with the same signature is still accepted; a nonce that was accepted always has its callback stored; and
a repeated callback (same fields, a Vobiz retry) is stored once and changes nothing the second time. The
receiver hands callbacks to :meth:`Ingest.asubmit_callback`, whose writer thread
(:class:`~vobiz_provider.ledger.group_commit.GroupCommitter`) gives everything queued meanwhile to
:meth:`Ingest.ingest` as one batch.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from vobiz_provider.exceptions import LedgerUnavailableError
from vobiz_provider.ledger.binding import Refusal, check, load_tries, note_stored, owner_of
from vobiz_provider.ledger.callback_columns import (
    callback_columns,
    callback_status,
    dedupe_key,
    log_unreadable,
    normalise_kind,
    stored_form,
)
from vobiz_provider.ledger.calls import Calls
from vobiz_provider.ledger.change_signal import notify_changed
from vobiz_provider.ledger.group_commit import GroupCommitter
from vobiz_provider.ledger.rows import correlation_values, to_call_record, utcnow
from vobiz_provider.ledger.schema import UTCDateTime, events, nonces
from vobiz_provider.models.callbacks import read_callback

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Mapping, Sequence
    from concurrent.futures import Future

    from sqlalchemy.engine import Connection

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.models.callbacks import VobizCallback
    from vobiz_provider.models.record import CallRecord

__all__ = ["Ingest", "IngestResult", "PreparedCallback"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    """What storing one callback did.

    :param stored: The callback was new and has been stored.
    :param duplicate: The callback was stored before (a Vobiz retry, whatever its nonce): nothing changed.
    :param call_uuid: The call it belongs to, if known.
    :param replayed: The signature nonce was seen within the replay window with *other* fields: a captured
        signature reused on a forged body. Nothing was stored; the receiver should refuse it (403).
    :param refusal: Why its URL's try may not store it (:mod:`~vobiz_provider.ledger.binding`): nothing was
        stored.
    :param call_row: The call's ``vobiz_calls`` row after this callback (``None`` when nothing was stored):
        :attr:`record` is built from it on first use, since the receiver answers without it.
    """

    stored: bool
    duplicate: bool
    call_uuid: str | None
    replayed: bool = False
    refusal: Refusal | None = None
    call_row: Mapping[str, Any] | None = dataclass_field(default=None, repr=False, compare=False)

    @cached_property
    def record(self) -> CallRecord | None:
        """The call's state after this callback (``None`` when nothing was stored)."""
        return None if self.call_row is None else to_call_record(self.call_row)


@dataclass(frozen=True, kw_only=True)
class PreparedCallback:
    """A checked callback and the rows storing it writes (:meth:`Ingest.prepare_callback`).

    :param kind: The normalised callback kind.
    :param form: The fields as strings, as stored in the event row
        (:func:`~vobiz_provider.ledger.callback_columns.stored_form`).
    :param values: The call columns it carries, with the task instance's.
    :param status: The call status it reports, if any.
    :param event: ``Event``.
    :param call_status: ``CallStatus``.
    :param dedupe_key: Its :func:`~vobiz_provider.ledger.callback_columns.dedupe_key`.
    :param replay_keys: The replay keys of its valid signatures (empty when unsigned).
    :param nonce_window: Replay window in seconds.
    :param max_callbacks_per_call: Its try's budget, per destination dialled.
    :param ti_key: The task instance key of its correlation token.
    :param try_number: The try of its correlation token.
    """

    kind: str
    form: dict[str, str] = dataclass_field(repr=False)
    values: dict[str, Any] = dataclass_field(repr=False)
    status: str | None
    event: str | None
    call_status: str | None
    dedupe_key: str
    replay_keys: tuple[str, ...] = dataclass_field(repr=False)
    nonce_window: float
    max_callbacks_per_call: int
    ti_key: str
    try_number: int

    @property
    def call_uuid(self) -> str | None:
        """The ``CallUUID`` it names, if any."""
        call_uuid: str | None = self.values["call_uuid"]
        return call_uuid


def _event_row(prepared: PreparedCallback, now: dt.datetime) -> dict[str, Any]:
    return {
        "received_at": now,
        "kind": prepared.kind,
        "event": prepared.event,
        "call_uuid": prepared.values["call_uuid"],
        "request_uuid": prepared.values["request_uuid"],
        "call_status": prepared.call_status,
        "ti_key": prepared.ti_key,
        "try_number": prepared.try_number,
        "dedupe_key": prepared.dedupe_key,
        "nonce": prepared.replay_keys[0] if prepared.replay_keys else None,
        "fields": prepared.form,
    }


class Ingest(Calls):
    """Prepares and stores callbacks (see the module docstring); they apply to the ledger's calls."""

    def _init_ingest(self, *, nonce_window: float, max_callbacks_per_call: int) -> None:
        self._init_calls()
        #: Default replay window of signature nonces, in seconds.
        self.nonce_window = nonce_window
        #: Default budget of a try's callback URLs, per destination dialled.
        self.max_callbacks_per_call = max_callbacks_per_call
        self._committer: GroupCommitter[PreparedCallback, IngestResult] | None = None
        self._committer_lock = threading.Lock()
        self._last_nonce_purge = -math.inf  # never: the first batch that claims a key purges
        # Built once and run with parameters: building an insert per callback costs far more than running it
        # (SQLAlchemy derives a cache key from every literal).
        insert_nonces = self._db.insert(nonces)
        self._claim_nonces = insert_nonces.on_conflict_do_update(
            index_elements=["nonce"],
            set_={"seen_at": insert_nonces.excluded.seen_at},
            where=nonces.c.seen_at < sa.bindparam("cutoff", type_=UTCDateTime()),
        ).returning(nonces.c.nonce)
        self._insert_events = (
            self._db.insert(events)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(events.c.dedupe_key)
        )

    # -- preparing ----------------------------------------------------------------------------------------

    def prepare_callback(
        self,
        kind: str,
        fields: Mapping[str, str],
        *,
        correlation: CorrelationToken,
        replay_keys: Sequence[str] = (),
        timezone: str | None = None,
        nonce_window: float | None = None,
        max_callbacks_per_call: int | None = None,
        callback: VobizCallback | None = None,
    ) -> PreparedCallback:
        """Check one callback and work out what storing it writes, without touching the database.

        :param kind: The receiver route: ``ring``, ``answer``, ``hangup``, ``machine-detection``, ``gather``.
        :param fields: The form (or query) fields exactly as received (``CallUUID``, ``Event``, ...).
        :param correlation: The verified correlation token of the callback URL: the callback is stored only
            if it belongs to a call that token's try placed (:mod:`~vobiz_provider.ledger.binding`).
        :param replay_keys: The verified signature's replay keys
            (:attr:`~vobiz_provider.signatures.SignatureCheck.replay_keys`); one seen within the replay
            window makes the callback ``replayed`` and nothing is stored.
        :param timezone: The account timezone of ``StartTime``/``AnswerTime``/``EndTime`` (the connection's
            ``timezone``); UTC when omitted.
        :param nonce_window: Replay window in seconds (default: the ledger's).
        :param max_callbacks_per_call: The try's budget per destination (default: the ledger's).
        :param callback: The callback model already parsed from ``fields`` in ``timezone``
            (:func:`~vobiz_provider.models.callbacks.parse_callback`), so they are not parsed again.
        :raises ValueError: For an unknown ``kind``.
        """
        kind = normalise_kind(kind)
        form = {str(key): "" if value is None else str(value) for key, value in fields.items()}
        if callback is None:  # a value that does not parse is left empty (the raw form is kept), logged once
            callback = read_callback(form, timezone=timezone or "UTC", kind=kind)
            if callback.unreadable_fields:
                log_unreadable(kind, form, callback.unreadable_fields)
        values, event, call_status = callback_columns(kind, form, callback)
        status = callback_status(
            kind,
            form,
            values["hangup_cause_code"],
            values["hangup_cause"],
            answered=values["answer_time"] is not None,
        )
        return PreparedCallback(
            kind=kind,
            form=stored_form(form),
            values={**values, **correlation_values(correlation)},
            status=status,
            event=event,
            call_status=call_status,
            dedupe_key=dedupe_key(kind, form),
            replay_keys=tuple(replay_keys),
            nonce_window=self.nonce_window if nonce_window is None else nonce_window,
            max_callbacks_per_call=(
                self.max_callbacks_per_call if max_callbacks_per_call is None else max_callbacks_per_call
            ),
            ti_key=correlation.ti_key,
            try_number=correlation.try_number,
        )

    # -- writing ------------------------------------------------------------------------------------------

    def submit_callback(self, prepared: PreparedCallback) -> Future[IngestResult]:
        """Queue a prepared callback for the writer thread; the future resolves once it is committed.

        Group commit: one writer thread per ledger gives every callback queued meanwhile to :meth:`ingest`
        (one transaction), and only then resolves their futures. If the batch cannot be committed, every
        future fails with :class:`~vobiz_provider.exceptions.LedgerUnavailableError` and nothing of the
        batch is stored. Cancelling the future before the writer takes it withdraws the callback.

        :param prepared: From :meth:`prepare_callback`.
        """
        return self._writer().submit(prepared)

    def asubmit_callback(self, prepared: PreparedCallback) -> asyncio.Future[IngestResult]:
        """:meth:`submit_callback` for a caller on an event loop: the future is the running loop's own,
        resolved there once the callback is committed (the receiver's path).

        :param prepared: From :meth:`prepare_callback`.
        """
        return self._writer().asubmit(prepared)

    def _writer(self) -> GroupCommitter[PreparedCallback, IngestResult]:
        committer = self._committer
        if committer is None:
            with self._committer_lock:
                if self._committer is None:
                    self._committer = GroupCommitter(apply_batch=self.ingest)
                committer = self._committer
        return committer

    def _stop_writer(self, timeout: float | None = None) -> None:
        """Write the callbacks still queued and stop the writer thread (a later :meth:`submit` restarts it).

        :param timeout: Seconds to wait for the writer.
        """
        with self._committer_lock:
            committer, self._committer = self._committer, None
        if committer is not None:
            committer.close(timeout=timeout)

    def ingest(self, items: Sequence[PreparedCallback]) -> list[IngestResult | BaseException]:
        """Store prepared callbacks in one transaction and commit; each one's result, in order.

        A callback that fails on its own (a bug, a constraint) does not fail the others: the batch is then
        written again one callback per transaction, and that callback's result is its exception.

        :param items: From :meth:`prepare_callback`, in arrival order.
        :raises LedgerUnavailableError: When the ledger cannot be reached or the commit fails: nothing of
            the batch is stored.
        """
        lock_keys = [key for item in items for key in (item.values["request_uuid"], item.values["call_uuid"])]

        def work(conn: Connection) -> list[IngestResult | BaseException]:
            self._db.lock(conn, lock_keys)
            results = self._write(conn, items, now=utcnow())
            if any(result.stored for result in results):
                notify_changed(conn)  # waiting triggers hear of it at the commit (PostgreSQL)
            return list(results)

        try:
            return self._db.run(work, write=True)
        except LedgerUnavailableError:
            raise
        except Exception as err:
            if len(items) == 1:
                return [err]
            reason = str(getattr(err, "orig", None) or err).strip().splitlines()
            log.warning(
                "A batch of %d callbacks failed (%s: %s); writing them one by one",
                len(items),
                type(err).__name__,
                reason[0] if reason else "",
            )
        results: list[IngestResult | BaseException] = []
        for item in items:
            try:
                results.extend(self.ingest([item]))
            except Exception as item_err:  # this callback's own failure, answered to its sender alone
                results.append(item_err)
        return results

    def _write(
        self, conn: Connection, items: Sequence[PreparedCallback], *, now: dt.datetime
    ) -> list[IngestResult]:
        """Store each item in order, with one statement per step for the whole batch.

        The caller holds the advisory locks of every item's UUIDs (PostgreSQL) or the write lock (SQLite).
        Each item ends as if written alone after the ones before it: a replay key or a dedupe key repeated
        within the batch counts as seen, a call learnt from an earlier item binds the later ones, and items
        that touch the same call, or a call already stored, are applied one after the other. Only calls new
        to the ledger and to the batch are inserted in bulk.
        """
        results: list[IngestResult | None] = [None] * len(items)
        known_rows = self._load_known(conn, items)

        # 0. Binding: a callback its URL's try may not store is refused before anything is written.
        tries = load_tries(conn, {(item.ti_key, item.try_number) for item in items}, known_rows)
        call_owners = {row["call_uuid"]: owner_of(row) for row in known_rows if row["call_uuid"]}
        admitted: list[int] = []
        for index, item in enumerate(items):
            known = tries[(item.ti_key, item.try_number)]
            refusal = check(
                item.values,
                owner=(item.ti_key, item.try_number),
                known=known,
                call_owner=call_owners.get(item.call_uuid) if item.call_uuid else None,
                max_per_call=item.max_callbacks_per_call,
                now=now,
            )
            if refusal is not None:
                results[index] = IngestResult(
                    stored=False, duplicate=False, call_uuid=item.call_uuid, refusal=refusal
                )
                continue
            note_stored(known, item.values)
            if item.call_uuid:
                call_owners.setdefault(item.call_uuid, (item.ti_key, item.try_number))
            admitted.append(index)

        # 1. Replay keys: the first use of each key within the batch claims it.
        claimants: dict[str, int] = {}
        for index in admitted:
            for key in items[index].replay_keys:
                claimants.setdefault(key, index)
        fresh: set[str] = set()
        by_window: dict[float, list[str]] = {}
        for key, index in claimants.items():
            by_window.setdefault(items[index].nonce_window, []).append(key)
        for window, batch_keys in by_window.items():
            cutoff = now - dt.timedelta(seconds=window)
            rows = [{"nonce": key, "seen_at": now, "cutoff": cutoff} for key in batch_keys]
            fresh.update(conn.execute(self._claim_nonces, rows).scalars())
        if by_window:
            # One table holds the keys of every window: purge only what is past the longest one in play (a
            # short window's cutoff would forget keys still within a longer window, and accept their replay).
            self._purge_nonces(conn, now=now, window=max(self.nonce_window, *by_window))

        # 2. Events: the first of each dedupe key among the items that claimed their keys (or are unsigned).
        inserting: list[int] = []
        keys: set[str] = set()
        reused: list[int] = []
        for index in admitted:
            item = items[index]
            if any(key not in fresh or claimants[key] != index for key in item.replay_keys):
                reused.append(index)
            elif item.dedupe_key in keys:
                results[index] = IngestResult(stored=False, duplicate=True, call_uuid=item.call_uuid)
            else:
                keys.add(item.dedupe_key)
                inserting.append(index)
        inserted: set[str] = set()
        if inserting:
            rows = [_event_row(items[index], now) for index in inserting]
            inserted.update(conn.execute(self._insert_events, rows).scalars())
        stored = [index for index in inserting if items[index].dedupe_key in inserted]
        for index in inserting:
            if items[index].dedupe_key not in inserted:
                results[index] = IngestResult(stored=False, duplicate=True, call_uuid=items[index].call_uuid)

        # 3. A replay key seen before: Vobiz resending the same callback whose answer it lost (same fields
        # under the same signature), or a captured signature reused on another body (Vobiz signs URL + nonce
        # only).
        for index in reused:
            item = items[index]
            resent = conn.execute(
                sa.select(events.c.id)
                .where(events.c.dedupe_key == item.dedupe_key, events.c.nonce == item.replay_keys[0])
                .limit(1)
            ).first()
            results[index] = IngestResult(
                stored=False, duplicate=True, replayed=resent is None, call_uuid=item.call_uuid
            )

        # 4. Calls: insert those new to the ledger and to the batch at once; apply the others in order.
        call_rows = self._apply_to_calls(conn, [items[index] for index in stored], known_rows, now=now)
        for index, call_row in zip(stored, call_rows, strict=True):
            results[index] = IngestResult(
                stored=True,
                duplicate=False,
                call_uuid=call_row["call_uuid"] if call_row else items[index].call_uuid,
                call_row=call_row,
            )
        return results  # type: ignore[return-value]

    def _purge_nonces(self, conn: Connection, *, now: dt.datetime, window: float) -> None:
        # Purge expired nonces now and then, not on every callback.
        if time.monotonic() - self._last_nonce_purge > max(30.0, window / 2):
            self._last_nonce_purge = time.monotonic()
            conn.execute(nonces.delete().where(nonces.c.seen_at < now - dt.timedelta(seconds=window)))
