"""``VobizCallSensor``: wait for a Vobiz call placed elsewhere (another task, another system) to end.

It decides "ended" as the trigger does (:class:`~vobiz_provider.calls.tracker.CallTracker`). The tracker,
the ledger, the hook and the trigger are imported when the sensor runs, not when a DAG file is parsed
(benchmark B4): each brings pydantic models, SQLAlchemy or httpx.
"""

from __future__ import annotations

import os
import time
from configparser import ConfigParser
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from vobiz_provider.exceptions import LedgerUnavailableError, VobizCallFailedFinalError, VobizError
from vobiz_provider.models.call import TERMINAL_STATUSES
from vobiz_provider.phone_masking import masked_number
from vobiz_provider.untrusted import loggable

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from airflow.sdk import Context

    from vobiz_provider.calls.tracker import CallTracker
    from vobiz_provider.models.record import CallRecord

__all__ = ["VobizCallSensor"]


def _default_deferrable() -> bool:
    """``[operators] default_deferrable`` if the deployment sets it (environment or ``airflow.cfg``), else
    ``True``: waiting for a call belongs in the triggerer unless the deployment says otherwise.

    ``conf.getboolean(..., fallback=True)`` alone would never fall back: Airflow ships the option with a
    default of ``False``, so only an explicit setting is honoured here.
    """
    explicit = os.environ.get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE") is not None or (
        # ConfigParser's own has_option sees only the loaded airflow.cfg, not Airflow's built-in defaults.
        ConfigParser.has_option(conf, "operators", "default_deferrable")
    )
    if explicit:
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=True)
        return deferrable
    return True


#: Least seconds between two API look-ups of one sensor instance (poke mode).
MIN_API_INTERVAL = 30.0
_EVENT_STATUSES = frozenset({"hangup", "timeout", "error"})


def _describe(record: CallRecord) -> str:
    """One failed call for the failure's message, every value :func:`loggable` (no forged log lines)."""
    cause = loggable(record.hangup_cause_name or record.hangup_cause or "unknown cause")
    code = f" ({record.hangup_cause_code})" if record.hangup_cause_code is not None else ""
    source = f", hung up by {loggable(record.hangup_source)}" if record.hangup_source else ""
    uuid = loggable(record.call_uuid or record.request_uuid)
    to = loggable(masked_number(record.to or None))
    return f"call {uuid} to {to}: {loggable(record.status)}, {cause}{code}{source}"


class VobizCallSensor(BaseSensorOperator):
    """Wait until a Vobiz call has ended, and fail unless it ended with one of ``success_statuses``.

    The call is looked up in the callback store (one query per poke) and, when the store does not show
    it ended, in the Vobiz API (live call → queued call → CDR). In deferrable mode (the default) the wait
    runs in the triggerer as a :class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger`, sharing
    one store poller with every other waiting call.

    The task's return value (XCom) is the final call record (``CallRecord.to_event()``), or a list of them
    when a request UUID of a multi-destination call is watched.

    :param call_uuid: The call to watch (templated). Exactly one of ``call_uuid``/``request_uuid``.
    :param request_uuid: The ``request_uuid`` Make-Call returned (templated), e.g.
        ``"{{ ti.xcom_pull('fire')['request_uuid'] }}"``.
    :param vobiz_conn_id: The Vobiz connection.
    :param success_statuses: Final statuses that count as success; any other raises
        :class:`~vobiz_provider.exceptions.VobizCallFailedFinalError` (or skips the task with
        ``soft_fail=True``).
    :param deferrable: Wait in the triggerer instead of a worker slot. Defaults to ``True``, or to
        ``[operators] default_deferrable`` when the deployment sets it explicitly.
    :param kwargs: :class:`~airflow.sdk.BaseSensorOperator` arguments (``poke_interval``, ``timeout``,
        ``mode``, ``soft_fail``, ...).
    """

    template_fields: Sequence[str] = ("call_uuid", "request_uuid")
    ui_color = "#d8ecf3"

    def __init__(
        self,
        *,
        call_uuid: str | None = None,
        request_uuid: str | None = None,
        vobiz_conn_id: str = "vobiz_default",
        success_statuses: Iterable[str] = ("completed",),
        deferrable: bool = _default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (call_uuid is None) == (request_uuid is None):
            raise ValueError(
                f"{type(self).__name__} {self.task_id!r}: pass exactly one of call_uuid or request_uuid "
                f"(got call_uuid={call_uuid!r}, request_uuid={request_uuid!r})"
            )
        statuses = [success_statuses] if isinstance(success_statuses, str) else list(success_statuses)
        statuses = [str(status).strip().lower() for status in statuses]
        unknown = sorted(set(statuses) - TERMINAL_STATUSES)
        if not statuses or unknown:
            raise ValueError(
                f"{type(self).__name__} {self.task_id!r}: success_statuses must be final call statuses "
                f"({', '.join(sorted(TERMINAL_STATUSES))}); got {unknown or 'nothing'}"
            )
        self.call_uuid = call_uuid
        self.request_uuid = request_uuid
        self.vobiz_conn_id = vobiz_conn_id
        self.success_statuses = tuple(dict.fromkeys(statuses))
        self.deferrable = deferrable
        self._api_asked_at: float | None = None

    # ------------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------------

    def _uuids(self) -> tuple[list[str], list[str]]:
        """(request UUIDs, call UUIDs) after rendering; refuses an empty rendered value."""
        for name in ("call_uuid", "request_uuid"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(
                    f"{type(self).__name__} {self.task_id!r}: {name} rendered to {value!r}; "
                    "expected a Vobiz call UUID"
                )
        request_uuids = [self.request_uuid.strip()] if self.request_uuid else []
        call_uuids = [self.call_uuid.strip()] if self.call_uuid else []
        return request_uuids, call_uuids

    def _tracker(self) -> CallTracker:
        from vobiz_provider.calls.tracker import CallTracker  # builds the CallRecord model: not at parse time

        request_uuids, call_uuids = self._uuids()
        return CallTracker(request_uuids=request_uuids, destinations=(), call_uuids=call_uuids)

    def _observe(self, tracker: CallTracker, records: Iterable[CallRecord]) -> None:
        for line in tracker.observe(records):
            self.log.info("%s", line)

    def _store_lookup(self, tracker: CallTracker) -> None:
        from vobiz_provider.ledger import get_ledger  # SQLAlchemy: not at DAG-parse time

        try:
            records = get_ledger().lookup(request_uuids=tracker.request_uuids, call_uuids=tracker.call_uuids)
        except LedgerUnavailableError as exc:
            self.log.warning("The Vobiz callback store cannot be read (%s); asking the Vobiz API", exc)
            return
        self._observe(tracker, records)

    def _api_lookup(self, tracker: CallTracker) -> None:
        """Ask the API about every leg the ledger has not settled; record final answers in the ledger."""
        from vobiz_provider.calls.api import ask_api  # the client and httpx: not at DAG-parse time
        from vobiz_provider.hooks.vobiz import VobizHook

        self._api_asked_at = time.monotonic()
        with VobizHook(vobiz_conn_id=self.vobiz_conn_id) as hook:
            client = hook.get_conn()
            for uuid, request_uuid in tracker.uuids_to_ask().items():
                context = {"request_uuid": request_uuid} if request_uuid else {}
                try:
                    record = ask_api(client, uuid, context)
                except VobizError as exc:
                    self.log.warning("Asking the Vobiz API about call %s failed: %s", uuid, exc)
                    continue
                if record is None:
                    self.log.info("Vobiz knows no live, queued or finished call %s (yet)", uuid)
                    continue
                self._observe(tracker, [record])
                if record.terminal:
                    self._record_api_result(record)

    def _record_api_result(self, record: CallRecord) -> None:
        from vobiz_provider.ledger import get_ledger  # SQLAlchemy: not at DAG-parse time

        try:
            get_ledger().cache_api_result(record)
        except Exception as exc:
            self.log.warning("Could not record the API's answer in the callback store: %s", exc)

    def _api_due(self, tracker: CallTracker) -> bool:
        if not tracker.legs or self._api_asked_at is None:
            return True
        return time.monotonic() - self._api_asked_at >= max(self.poke_interval, MIN_API_INTERVAL)

    def _finish(self, tracker: CallTracker) -> Any:
        """The XCom value of a call that ended; raises ``VobizCallFailedFinalError`` if it did not succeed."""
        records = sorted(tracker.legs.values(), key=lambda r: (r.to or "", r.call_uuid or ""))
        calls = [record.to_event() for record in records]
        failed = [record for record in records if record.status not in self.success_statuses]
        if failed:
            raise VobizCallFailedFinalError(
                f"Vobiz {'; '.join(_describe(record) for record in failed)} "
                f"(success statuses: {', '.join(self.success_statuses)})",
                calls=calls,
            )
        return calls[0] if len(calls) == 1 else calls

    # ------------------------------------------------------------------------------------------------
    # sensor API
    # ------------------------------------------------------------------------------------------------

    def poke(self, context: Context) -> PokeReturnValue:
        tracker = self._tracker()
        self._store_lookup(tracker)
        if not tracker.done and self._api_due(tracker):
            self._api_lookup(tracker)
        if not tracker.done:
            pending = ", ".join(loggable(key) for key in tracker.pending())
            states = ", ".join(loggable(record.status) for record in tracker.legs.values()) or "not known yet"
            self.log.info("Vobiz call %s has not ended yet (%s)", pending, states)
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(tracker))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            first = self.poke(context)
        except (AirflowFailException, AirflowSensorTimeout) as exc:
            if self.soft_fail:
                raise AirflowSkipException(f"Skipping due to soft_fail: {exc}") from exc
            raise
        if first.is_done:
            return first.xcom_value
        self._defer()

    def _defer(self) -> None:
        # Airflow's trigger machinery, the ledger and the settings' dataclass: only when the sensor defers.
        from vobiz_provider.config import get_settings
        from vobiz_provider.triggers.hangup import MIN_RECONCILE_INTERVAL, VobizCallHangupTrigger

        request_uuids, call_uuids = self._uuids()
        now = time.time()
        self.defer(
            trigger=VobizCallHangupTrigger(
                request_uuids=request_uuids,
                destinations=[],
                call_uuids=call_uuids or None,
                vobiz_conn_id=self.vobiz_conn_id,
                deadline=now + self.timeout,
                poll_interval=max(1.0, min(float(self.poke_interval), get_settings().poll_interval)),
                # The API was just asked (first poke); the trigger asks again after a pause, rate-limited.
                reconcile_after=now + max(float(self.poke_interval), MIN_RECONCILE_INTERVAL),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: return the final record(s), or raise for timeout/error/failed call."""
        from vobiz_provider.models.record import CallRecord  # a pydantic model: not at DAG-parse time

        if not isinstance(event, dict) or event.get("status") not in _EVENT_STATUSES:
            raise AirflowException(
                f"{type(self).__name__} {self.task_id!r} resumed with an unexpected trigger event: {event!r}"
            )
        message = event.get("message") or ""
        if event["status"] == "timeout":
            raise AirflowSensorTimeout(f"Sensor has timed out: {message}")
        if event["status"] == "error":
            raise AirflowException(f"Waiting for the Vobiz call failed: {message}")
        tracker = self._tracker()
        self._observe(tracker, [CallRecord.from_event(call) for call in event.get("calls") or ()])
        if not tracker.done:
            raise AirflowException(f"The trigger reported a hangup but not every call ended: {event!r}")
        return self._finish(tracker)
