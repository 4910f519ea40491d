"""What each component may do with the ledger: one narrow interface per role.

:class:`~vobiz_provider.ledger.CallLedger` implements all of them; each component holds the ledger as the
role it plays, so what it may write is visible in its types:

=========================  ===================================  =============================================
role                       who                                  writes
=========================  ===================================  =============================================
:class:`CallbackSink`      the receiver                         callback events, signature nonces, call rows
                                                                (``source=callback``) of its try's calls only;
                                                                inbound calls, key presses and hangups
:class:`PlacementLedger`   call placement (operator, notifier)  placements, answer specs, fired calls
                                                                (``source=fired``), settlements, notification
                                                                claims, the account's CPS slots
:class:`CallReader`        triggers, the sensor, the operator   API outcomes only (``source=api``), through
                           when it resumes                      :meth:`CallReader.cache_api_result`
:class:`LedgerMaintenance` ``vobiz-callbacks db upgrade|prune``  the schema; deletes old rows
:class:`CallBrowser`       the calls page, ``vobiz-callbacks``  nothing (reads calls and callbacks for people)
                           ``calls``
=========================  ===================================  =============================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio
    import datetime as dt
    from collections.abc import Collection, Mapping, Sequence
    from concurrent.futures import Future

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger.answers import AnswerEntry
    from vobiz_provider.ledger.call_views import CallDetail, CallFilter, CallPage
    from vobiz_provider.ledger.feed import CallChange
    from vobiz_provider.ledger.inbound import InboundStored
    from vobiz_provider.ledger.ingest import IngestResult, PreparedCallback
    from vobiz_provider.ledger.placements import PlacementState
    from vobiz_provider.models.answer import AnswerSpec
    from vobiz_provider.models.callbacks import VobizCallback
    from vobiz_provider.models.record import CallRecord

__all__ = ["CallBrowser", "CallReader", "CallbackSink", "LedgerMaintenance", "PlacementLedger"]


class CallbackSink(Protocol):
    """The receiver: stores the callbacks Vobiz posts and reads the answer specs it serves."""

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
        """See :meth:`vobiz_provider.ledger.ingest.Ingest.prepare_callback`."""
        ...

    def submit_callback(self, prepared: PreparedCallback) -> Future[IngestResult]:
        """See :meth:`vobiz_provider.ledger.ingest.Ingest.submit_callback`."""
        ...

    def asubmit_callback(self, prepared: PreparedCallback) -> asyncio.Future[IngestResult]:
        """See :meth:`vobiz_provider.ledger.ingest.Ingest.asubmit_callback`."""
        ...

    def store_inbound(
        self,
        *,
        application: str,
        kind: str,
        call_uuid: str,
        values: Mapping[str, Any],
        fields: Mapping[str, str],
        replay_keys: Sequence[str],
        nonce_window: float,
    ) -> InboundStored:
        """Store one inbound call, key press or hangup with its replay keys (one transaction)."""
        ...

    def load_answer_for_call(
        self, correlation: CorrelationToken, *, call_uuid: str | None, request_uuid: str | None = None
    ) -> AnswerEntry | None:
        """See :meth:`vobiz_provider.ledger.answers.Answers.load_answer_for_call`."""
        ...


class PlacementLedger(Protocol):
    """Call placement: stores what a call says, records the calls it fired and finds earlier tries'."""

    def open_placement(self, correlation: CorrelationToken, *, destinations: int, expires_at: float) -> None:
        """See :meth:`vobiz_provider.ledger.placements.Placements.open_placement`."""
        ...

    def save_answer(
        self, correlation: CorrelationToken, spec: AnswerSpec, *, callback_base_url: str | None = None
    ) -> None:
        """See :meth:`vobiz_provider.ledger.answers.Answers.save_answer`."""
        ...

    def register_fired_calls(
        self,
        *,
        request_uuids: Sequence[str],
        destinations: Sequence[str],
        from_number: str | None = None,
        correlation: CorrelationToken | None = None,
    ) -> None:
        """See :meth:`vobiz_provider.ledger.calls.Calls.register_fired_calls`."""
        ...

    def reserve_call_slot(self, bucket: str, *, interval: float) -> float:
        """See :meth:`vobiz_provider.ledger.rate_bucket.RateBuckets.reserve_call_slot`."""
        ...

    def find_attempts(
        self, *, dag_id: str, run_id: str, task_id: str, map_index: int = -1, before_try: int | None = None
    ) -> list[CallRecord]:
        """See :meth:`vobiz_provider.ledger.calls.Calls.find_attempts`."""
        ...

    def last_placement(self, ti_key: str, *, before_try: int) -> PlacementState | None:
        """See :meth:`vobiz_provider.ledger.placements.Placements.last_placement`."""
        ...

    def settle_calls(self, request_uuids: Sequence[str]) -> int:
        """See :meth:`vobiz_provider.ledger.placements.Placements.settle_calls`."""
        ...

    def claim_notification(self, key: str, *, window: dt.timedelta) -> bool:
        """See :meth:`vobiz_provider.ledger.claims.NotificationClaims.claim_notification`."""
        ...

    def release_notification(self, key: str) -> None:
        """See :meth:`vobiz_provider.ledger.claims.NotificationClaims.release_notification`."""
        ...


class CallReader(Protocol):
    """Waiting for calls: reads their state, and caches an outcome learnt from the Vobiz API."""

    def lookup(
        self, *, request_uuids: Sequence[str] = (), call_uuids: Sequence[str] = ()
    ) -> list[CallRecord]:
        """See :meth:`vobiz_provider.ledger.calls.Calls.lookup`."""
        ...

    def changed_calls(
        self, *, since: dt.datetime | None, request_uuids: Sequence[str] = (), call_uuids: Sequence[str] = ()
    ) -> list[CallChange]:
        """See :meth:`vobiz_provider.ledger.feed.ChangeFeed.changed_calls`."""
        ...

    def last_callback_at(self) -> dt.datetime | None:
        """See :meth:`vobiz_provider.ledger.feed.ChangeFeed.last_callback_at`."""
        ...

    def cache_api_result(self, record: CallRecord) -> None:
        """See :meth:`vobiz_provider.ledger.calls.Calls.cache_api_result`."""
        ...


class LedgerMaintenance(Protocol):
    """The ``vobiz-callbacks`` maintenance commands."""

    def upgrade(self) -> int:
        """See :meth:`vobiz_provider.ledger.maintenance.Maintenance.upgrade`."""
        ...

    def prune(self, *, older_than: dt.timedelta) -> int:
        """See :meth:`vobiz_provider.ledger.maintenance.Maintenance.prune`."""
        ...


class CallBrowser(Protocol):
    """The calls page and ``vobiz-callbacks calls``: read-only views of the calls for people."""

    def list_calls(self, where: CallFilter, *, limit: int = 50, before: int | None = None) -> CallPage:
        """See :meth:`vobiz_provider.ledger.call_views.CallViews.list_calls`."""
        ...

    def call_detail(
        self, call_uuid: str, *, allowed_dag_ids: Collection[str] | None = None
    ) -> CallDetail | None:
        """See :meth:`vobiz_provider.ledger.call_views.CallViews.call_detail`."""
        ...

    def run_summary(self, dag_id: str, run_id: str) -> dict[str, int]:
        """See :meth:`vobiz_provider.ledger.call_views.CallViews.run_summary`."""
        ...
