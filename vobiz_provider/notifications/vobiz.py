"""``VobizNotifier``: phone someone and speak a message when a task fails or a deadline is missed.

.. code-block:: python

    from vobiz_provider.notifications.vobiz import VobizNotifier

    on_failure_callback = VobizNotifier(
        to="+919876543210",
        from_number="+918000000000",
        message="Task {{ ti.task_id }} of {{ dag.dag_id }} failed.",
        gather={"prompt": "Press 1 to acknowledge.", "num_digits": 1},
    )

    # A Deadline Alert (runs async_notify in the triggerer; SyncCallback runs notify on an executor):
    DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(hours=1),
        callback=AsyncCallback(
            VobizNotifier,
            kwargs={"to": "+919876543210", "from_number": "+918000000000",
                    "message": "{{ dag_run.dag_id }} is running late."},
        ),
    )

The message is spoken by the callback receiver (no XML to host): the notifier places the call like the
operator does (:class:`~vobiz_provider.calls.placement.CallPlacer`), storing the message server-side under a
signed correlation token and giving Vobiz the receiver's answer URL, so ``callback_base_url`` (connection
extra or ``[vobiz] callback_base_url``) and ``[vobiz] callback_secret`` must be set, and the receiver must be
reachable from Vobiz. The call's hangup (and the digits pressed) land in the call ledger, under the task id
``<task_id>.vobiz_notify.<digest>``, which never mixes with the calls the task places itself.

Airflow may run a callback more than once (a callback listed twice, a DAG-level and a task-level callback, a
Deadline Alert evaluated again). Each call is claimed in the call ledger under a dedupe key first
(default ``dag_id/run_id/task_id``) and its destinations, so the same people are phoned once per
``dedupe_window``. A claim is released when Vobiz refused the call, and kept when it may have been placed.

Escalation (call the next person when the first does not answer or does not press the acknowledge digit) is
best built from two ``VobizCallOperator`` tasks: ``expected_digits="1"`` on the first and
``trigger_rule="all_failed"`` on the second; see the example DAGs.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from airflow.sdk import BaseNotifier

from vobiz_provider.calls.templating import (
    RECEIVER_ANSWER_PLACEHOLDER,
    build_answer_spec,
    check_static_answer,
    check_static_request,
)
from vobiz_provider.exceptions import VobizCallOutcomeUnknownError, VobizError, VobizValidationError
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.phone_masking import masked_number, masked_numbers

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from vobiz_provider.calls.placement import CallPlacer, PlacedCall, Placement
    from vobiz_provider.config import VobizSettings
    from vobiz_provider.ledger import PlacementLedger
    from vobiz_provider.models.answer import GatherSpec

__all__ = ["VobizNotifier", "send_vobiz_call_notification"]

#: Suffix of the task id in a notification's correlation token, so its calls never mix with the calls the
#: task places itself (the operator's retry look-ups go by task instance).
NOTIFY_SUFFIX: Final = "vobiz_notify"
#: Task id part of the correlation token of a notification sent without a task (DAG callback, deadline).
DAG_LEVEL_TASK: Final = f"__dag__.{NOTIFY_SUFFIX}"
#: DAG id part of the correlation token of a notification sent outside Airflow (with its own dedupe key).
OUTSIDE_AIRFLOW_DAG: Final = "__vobiz_notifier__"
# Keep the correlation's task id inside the ledger's 250-character column.
_MAX_TASK_ID: Final = 200


def _attr(source: Any, name: str) -> Any:
    """``source.name`` or ``source[name]`` (the Deadline Alert context holds plain dicts)."""
    if source is None:
        return None
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


def _shown_key(dedupe_key: str) -> str:
    """The dedupe key for a log line: the destinations it ends with (``|to=a,b``) masked."""
    base, sep, destinations = dedupe_key.rpartition("|to=")
    if not sep:
        return dedupe_key
    return f"{base}|to={masked_numbers(destinations.split(','), separator=',')}"


class VobizNotifier(BaseNotifier):
    """Phone one or more people and speak a message (optionally asking for an acknowledge digit).

    Use it as ``on_failure_callback`` / ``on_retry_callback`` / ``on_success_callback`` of a task or a DAG
    (runs ``notify``), or as the callback of a Deadline Alert (``AsyncCallback(VobizNotifier, kwargs={...})``,
    runs ``async_notify`` in the triggerer without blocking it).

    :param to: Destination(s): an E.164 number or ``sip:`` URI, or a list of them (all are dialled at once).
        Templated.
    :param from_number: Caller ID, a number of the Vobiz account (E.164). Templated.
    :param message: What to say when the call is answered. Templated.
    :param vobiz_conn_id: The ``vobiz`` connection. Templated.
    :param voice: ``WOMAN`` or ``MAN``.
    :param language: Language code of the message, e.g. ``en-US`` or ``hi-IN``.
    :param loop: How many times to say the message.
    :param gather: A keypad prompt said after the message, e.g.
        ``{"prompt": "Press 1 to acknowledge", "num_digits": 1}`` (see
        :class:`~vobiz_provider.models.answer.GatherSpec`); the digits land on the call record. Its
        ``connect`` connects the callee to another number on given keys (``{"2": {"to": "+1415..."}}``).
        Templated.
    :param dedupe_key: Calls with the same key (and the same destinations) are placed once per
        ``dedupe_window``. Default: ``dag_id/run_id/task_id`` (a DAG-level callback gets the run's last task
        instance from Airflow, so it shares the key of that task's own callback); ``dag_id/run_id`` when the
        context has no task instance, plus ``/deadline/<id>`` for a Deadline Alert. Templated.
    :param dedupe_window: Seconds (or a ``timedelta``) during which a key blocks another call; ``0`` turns
        deduplication off.
    :param caller_name: Caller name shown to SIP destinations (at most 50 characters).
    :param time_limit: Longest the call may last once answered, seconds.
    :param ring_timeout: Seconds to ring before giving up.
    """

    template_fields: Sequence[str] = (
        "to",
        "from_number",
        "message",
        "gather",
        "dedupe_key",
        "vobiz_conn_id",
    )

    def __init__(
        self,
        *,
        to: str | list[str],
        from_number: str,
        message: str,
        vobiz_conn_id: str = "vobiz_default",
        voice: str = "WOMAN",
        language: str = "en-US",
        loop: int = 1,
        gather: Mapping[str, Any] | GatherSpec | None = None,
        dedupe_key: str | None = None,
        dedupe_window: timedelta | float = 3600,
        caller_name: str | None = None,
        time_limit: int | None = None,
        ring_timeout: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = to
        self.from_number = from_number
        self.message = message
        self.vobiz_conn_id = vobiz_conn_id
        self.voice = voice
        self.language = language
        self.loop = loop
        self.gather = dict(gather) if isinstance(gather, dict) else gather
        self.dedupe_key = dedupe_key
        self.dedupe_window = self._window(dedupe_window)
        self.caller_name = caller_name
        self.time_limit = time_limit
        self.ring_timeout = ring_timeout
        self._check_static_fields()

    # ------------------------------------------------------------------------------------- validation

    @staticmethod
    def _window(value: timedelta | float) -> timedelta:
        if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
            raise VobizValidationError(
                f"VobizNotifier dedupe_window must be seconds or a timedelta, got {value!r}"
            )
        window = value if isinstance(value, timedelta) else timedelta(seconds=value)
        if window.total_seconds() < 0:
            raise VobizValidationError(f"VobizNotifier dedupe_window must not be negative, got {value!r}")
        return window

    def _check_static_fields(self) -> None:
        """Refuse, when the DAG is parsed, every argument that is already known to be invalid."""
        try:
            check_static_answer(**self._answer_arguments())
            check_static_request(self._call_fields(), template_fields=self.template_fields)
        except VobizValidationError as err:
            raise VobizValidationError(f"VobizNotifier: {err}") from None

    def _answer_arguments(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "gather": self.gather,
            "voice": self.voice,
            "language": self.language,
            "loop": self.loop,
        }

    def _call_fields(self) -> dict[str, Any]:
        fields = {
            "to": self.to,
            "from_number": self.from_number,
            "caller_name": self.caller_name,
            "time_limit": self.time_limit,
            "ring_timeout": self.ring_timeout,
        }
        return {name: value for name, value in fields.items() if value is not None}

    # ------------------------------------------------------------------------------------- context

    def _identity(self, context: Mapping[str, Any]) -> tuple[str, str, str | None, int, int, str | None]:
        """``(dag_id, run_id, task_id, map_index, try_number, deadline_id)`` of the firing callback.

        Called outside Airflow (no task instance, DAG or DAG run in the context) with an explicit
        ``dedupe_key``, the notification is its own run: ``__vobiz_notifier__/key-<digest of the key>``.
        """
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        dag_id = _attr(ti, "dag_id") or _attr(context.get("dag"), "dag_id") or _attr(dag_run, "dag_id")
        run_id = _attr(ti, "run_id") or context.get("run_id") or _attr(dag_run, "run_id")
        if not dag_id or not run_id:
            if self.dedupe_key:
                digest = hashlib.sha256(str(self.dedupe_key).encode("utf-8")).hexdigest()[:16]
                return (OUTSIDE_AIRFLOW_DAG, f"key-{digest}", None, -1, 1, None)
            raise VobizError(
                "VobizNotifier could not tell which DAG run it is notifying about (no ti, dag or dag_run "
                "in the context): run it as an Airflow callback, or pass dedupe_key= to name the "
                "notification yourself"
            )
        map_index = _attr(ti, "map_index")
        try_number = _attr(ti, "try_number")
        deadline_id = _attr(context.get("deadline"), "id")
        return (
            str(dag_id),
            str(run_id),
            _attr(ti, "task_id"),
            map_index if isinstance(map_index, int) and map_index >= -1 else -1,
            try_number if isinstance(try_number, int) and try_number >= 0 else 1,
            str(deadline_id) if deadline_id is not None else None,
        )

    def default_dedupe_key(self, context: Mapping[str, Any]) -> str:
        """The default key: ``dag_id/run_id/task_id`` (``dag_id/run_id`` without a task instance).

        A Deadline Alert adds ``/deadline/<id>``.

        :param context: The callback's context.
        """
        dag_id, run_id, task_id, _, _, deadline_id = self._identity(context)
        key = f"{dag_id}/{run_id}" + (f"/{task_id}" if task_id else "")
        return key + (f"/deadline/{deadline_id}" if deadline_id else "")

    def _plan(
        self, context: Mapping[str, Any], placer: CallPlacer, callback_base_url: str | None
    ) -> tuple[str, Placement]:
        """The dedupe key and the call to place, checked before anything is claimed or sent."""
        from vobiz_provider.correlation import CorrelationToken  # a dataclass: not at DAG-parse time (B4)

        base_url = placer.require_receiver(callback_base_url, what="VobizNotifier")
        try:
            spec = build_answer_spec(**self._answer_arguments())
            request = MakeCallRequest.build(
                **self._call_fields(), answer_url=RECEIVER_ANSWER_PLACEHOLDER, answer_method="POST"
            )
        except VobizValidationError as err:
            raise VobizValidationError(f"VobizNotifier: {err}") from None
        base_key = self.dedupe_key or self.default_dedupe_key(context)
        # Scoped by the destinations: two notifiers phoning different people both phone.
        dedupe_key = f"{base_key}|to={','.join(request.destinations)}"
        digest = hashlib.sha256(dedupe_key.encode("utf-8")).hexdigest()[:10]
        dag_id, run_id, task_id, map_index, try_number, _ = self._identity(context)
        correlation = CorrelationToken(
            dag_id=dag_id,
            run_id=run_id,
            task_id=(f"{task_id[:_MAX_TASK_ID]}.{NOTIFY_SUFFIX}" if task_id else DAG_LEVEL_TASK)
            + f".{digest}",
            map_index=map_index,
            try_number=try_number,
            conn_id=self.vobiz_conn_id,
        )
        placement = placer.plan(
            request, correlation=correlation, callback_base_url=base_url, spec=spec, route=("hangup",)
        )
        return dedupe_key, placement

    # ------------------------------------------------------------------------------------- ledger

    def _claim(self, ledger: PlacementLedger, dedupe_key: str, destinations: Sequence[str]) -> bool:
        if self.dedupe_window.total_seconds() == 0:
            return True
        if ledger.claim_notification(dedupe_key, window=self.dedupe_window):
            return True
        self.log.info(
            "Not phoning %s: a Vobiz notification with dedupe key %r was already placed within the last %s",
            masked_numbers(destinations),
            _shown_key(dedupe_key),
            self.dedupe_window,
        )
        return False

    def _release(self, ledger: PlacementLedger, dedupe_key: str, err: BaseException) -> None:
        """Forget the claim of a call that was certainly not placed, so a later attempt may phone."""
        if isinstance(err, VobizCallOutcomeUnknownError) or self.dedupe_window.total_seconds() == 0:
            return
        try:
            ledger.release_notification(dedupe_key)
        except Exception as release_err:
            self.log.warning("Could not release the Vobiz notification claim: %s", release_err)

    def _log_fired(self, placed: PlacedCall) -> None:
        self.log.info(
            "Vobiz notification call placed from %s to %s (request_uuid %s); the receiver at %s speaks the "
            "message",
            masked_number(placed.placement.request.from_number),
            masked_numbers(placed.destinations),
            ", ".join(placed.request_uuids),
            placed.placement.callback_base_url,
        )

    # ------------------------------------------------------------------------------------- sending

    def _placer(self, settings: VobizSettings | None = None) -> CallPlacer:
        # The hook, the client and the ledger: loaded when a notification is sent, not at DAG-parse time.
        from vobiz_provider.calls.placement import CallPlacer
        from vobiz_provider.hooks.vobiz import VobizHook

        return CallPlacer(hook=VobizHook(vobiz_conn_id=self.vobiz_conn_id), log=self.log, settings=settings)

    def notify(self, context: Mapping[str, Any]) -> None:
        """Phone the destinations (once per dedupe window) and speak the message.

        :param context: The callback's context (rendered template fields already applied).
        """
        placer = self._placer()
        try:
            dedupe_key, placement = self._plan(context, placer, placer.callback_base_url())
            ledger = placer.ledger
            if not self._claim(ledger, dedupe_key, placement.request.destinations):
                return
            try:
                placed = placer.place(placement)
            except Exception as err:
                self._release(ledger, dedupe_key, err)
                raise
            self._log_fired(placed)
        finally:
            placer.hook.close()

    async def async_notify(self, context: Mapping[str, Any]) -> None:
        """:meth:`notify` for the event loop (Deadline Alerts in the triggerer): ledger work runs in threads.

        :param context: The callback's context (rendered template fields already applied).
        """
        from vobiz_provider.config import get_settings  # a dataclass: not at DAG-parse time (B4)

        placer = self._placer(settings=await asyncio.to_thread(get_settings))
        try:
            dedupe_key, placement = self._plan(context, placer, await placer.acallback_base_url())
            ledger = await asyncio.to_thread(lambda: placer.ledger)
            destinations = placement.request.destinations
            if not await asyncio.to_thread(self._claim, ledger, dedupe_key, destinations):
                return
            try:
                placed = await placer.aplace(placement)
            except Exception as err:
                await asyncio.to_thread(self._release, ledger, dedupe_key, err)
                raise
            self._log_fired(placed)
        finally:
            await placer.hook.aclose()


#: Alias in the style of Airflow's own notifiers (``send_slack_notification``, ...).
send_vobiz_call_notification = VobizNotifier
