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

The message is spoken by the callback receiver (no XML to host): the notifier stores it server-side under a
signed correlation token and gives Vobiz the receiver's answer URL, so ``callback_base_url`` (connection extra
or ``[vobiz] callback_base_url``) and ``[vobiz] callback_secret`` must be set, and the receiver must be
reachable from Vobiz. The call's hangup (and the digits pressed) land in the callback store, under the task
id ``<task_id>.vobiz_notify.<digest>``, which never mixes with the calls the task places itself.

Airflow may run a callback more than once (a callback listed twice, a DAG-level and a task-level callback, a
Deadline Alert evaluated again). Each call is claimed in the callback store under a dedupe key first
(default ``dag_id/run_id/task_id``) and its destinations, so the same people are phoned once per
``dedupe_window``. A claim is released when Vobiz refused the call, and kept when it may have been placed.

Escalation (call the next person when the first does not answer or does not press the acknowledge digit) is
best built from two ``VobizCallOperator`` tasks: ``expected_digits="1"`` on the first and
``trigger_rule="all_failed"`` on the second; see the example DAGs.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from airflow.sdk import BaseNotifier

from vobiz_provider.exceptions import VobizCallOutcomeUnknownError, VobizError, VobizValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from vobiz_provider.callbacks.store import CallbackStore
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.hooks.vobiz import VobizHook
    from vobiz_provider.models.answer import AnswerSpec, GatherSpec
    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.models.responses import CallFiredResponse

__all__ = ["VobizNotifier", "send_vobiz_call_notification"]

#: Suffix of the task id in a notification's correlation token, so its calls never mix with the calls the
#: task places itself (the operator's retry look-ups go by task instance).
NOTIFY_SUFFIX: Final = "vobiz_notify"
#: Task id part of the correlation token of a notification sent without a task (DAG callback, deadline).
DAG_LEVEL_TASK: Final = f"__dag__.{NOTIFY_SUFFIX}"
# Keep the correlation's task id inside the store's 250-character column.
_MAX_TASK_ID: Final = 200
# A URL that passes validation while the real, token-bearing URLs are not yet attached.
_PLACEHOLDER_URL: Final = "https://receiver.invalid/vobiz/callbacks/answer"


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value or "{#" in value
    if isinstance(value, (list, tuple)):
        return any(_has_template(item) for item in value)
    if isinstance(value, dict):
        return any(_has_template(item) for item in value.values())
    return False


def _attr(source: Any, name: str) -> Any:
    """``source.name`` or ``source[name]`` (the Deadline Alert context holds plain dicts)."""
    if source is None:
        return None
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


@dataclass(frozen=True, kw_only=True)
class _Plan:
    """Everything one notification needs, checked before anything is claimed or sent."""

    dedupe_key: str
    correlation: CorrelationToken
    token: str
    spec: AnswerSpec
    request: MakeCallRequest
    callback_base_url: str


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
        :class:`~vobiz_provider.models.answer.GatherSpec`); the digits land on the call record. Templated.
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
        from vobiz_provider.models.call import MakeCallRequest

        try:
            self._spec(
                message=self.message if not _has_template(self.message) else "placeholder",
                gather=self.gather if not _has_template(self.gather) else None,
            )
            MakeCallRequest.validate_fields(
                **{name: value for name, value in self._call_fields().items() if not _has_template(value)}
            )
        except VobizValidationError as err:
            raise VobizValidationError(f"VobizNotifier: {err}") from None

    def _spec(self, *, message: str, gather: Any) -> AnswerSpec:
        from vobiz_provider.models.answer import AnswerSpec

        return AnswerSpec.build(
            message=message, voice=self.voice, language=self.language, loop=self.loop, gather=gather
        )

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

    @staticmethod
    def _identity(context: Mapping[str, Any]) -> tuple[str, str, str | None, int, int, str | None]:
        """``(dag_id, run_id, task_id, map_index, try_number, deadline_id)`` of the firing callback."""
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        dag_id = _attr(ti, "dag_id") or _attr(context.get("dag"), "dag_id") or _attr(dag_run, "dag_id")
        run_id = _attr(ti, "run_id") or context.get("run_id") or _attr(dag_run, "run_id")
        if not dag_id or not run_id:
            raise VobizError(
                "VobizNotifier could not tell which DAG run it is notifying about (no ti, dag or dag_run "
                "in the context); pass dedupe_key= explicitly or call it as an Airflow callback"
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

    def _plan(self, context: Mapping[str, Any], callback_base_url: str | None, secret: str) -> _Plan:
        from vobiz_provider.correlation import CorrelationToken, callback_url
        from vobiz_provider.models.call import MakeCallRequest

        if callback_base_url is None:
            raise VobizError(
                "VobizNotifier speaks its message through the Vobiz callback receiver, but no callback base "
                f"URL is configured: set the callback_base_url extra of connection {self.vobiz_conn_id!r} "
                "or [vobiz] callback_base_url (AIRFLOW__VOBIZ__CALLBACK_BASE_URL) to the receiver's public "
                "URL, e.g. https://airflow.example.com/vobiz"
            )
        try:
            spec = self._spec(message=self.message, gather=self.gather)
            # Validated with a placeholder answer URL: the real ones carry the token, which must not
            # appear in a validation message.
            request = MakeCallRequest.build(
                **self._call_fields(), answer_url=_PLACEHOLDER_URL, answer_method="POST"
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
        token = correlation.encode(secret)
        request = request.model_copy(
            update={
                "answer_url": callback_url(callback_base_url, "answer", token),
                "hangup_url": callback_url(callback_base_url, "hangup", token),
            }
        )
        return _Plan(
            dedupe_key=dedupe_key,
            correlation=correlation,
            token=token,
            spec=spec,
            request=request,
            callback_base_url=callback_base_url,
        )

    # ------------------------------------------------------------------------------------- store

    def _claim(self, store: CallbackStore, plan: _Plan) -> bool:
        if self.dedupe_window.total_seconds() == 0:
            return True
        if store.claim_notification(plan.dedupe_key, window=self.dedupe_window):
            return True
        self.log.info(
            "Not phoning %s: a Vobiz notification with dedupe key %r was already placed within the last %s",
            ", ".join(plan.request.destinations),
            plan.dedupe_key,
            self.dedupe_window,
        )
        return False

    def _publish(self, store: CallbackStore, plan: _Plan) -> None:
        from vobiz_provider.callbacks.answers import publish_answer

        publish_answer(
            store,
            plan.correlation,
            plan.spec,
            callback_base_url=plan.callback_base_url,
            token=plan.token,
        )

    def _release(self, store: CallbackStore, plan: _Plan, err: BaseException) -> None:
        """Forget the claim of a call that was certainly not placed, so a later attempt may phone."""
        if isinstance(err, VobizCallOutcomeUnknownError) or self.dedupe_window.total_seconds() == 0:
            return
        try:
            store.release_notification(plan.dedupe_key)
        except Exception as release_err:
            self.log.warning("Could not release the Vobiz notification claim: %s", release_err)

    def _record(self, store: CallbackStore, plan: _Plan, response: CallFiredResponse) -> None:
        try:
            store.record_fired(
                request_uuids=list(response.request_uuids),
                destinations=list(plan.request.destinations),
                from_number=plan.request.from_number,
                correlation=plan.correlation,
            )
        except Exception as err:
            # The call is placed; only its tracking in the store is lost.
            self.log.warning(
                "Could not record the Vobiz notification call in the callback store (%s: %s)",
                type(err).__name__,
                err,
            )

    def _log_fired(self, plan: _Plan, response: CallFiredResponse) -> None:
        self.log.info(
            "Vobiz notification call placed from %s to %s (request_uuid %s); the receiver at %s speaks the "
            "message",
            plan.request.from_number,
            ", ".join(plan.request.destinations),
            ", ".join(response.request_uuids),
            plan.callback_base_url,
        )

    # ------------------------------------------------------------------------------------- sending

    def _hook(self) -> VobizHook:
        from vobiz_provider.hooks.vobiz import VobizHook

        return VobizHook(vobiz_conn_id=self.vobiz_conn_id)

    def notify(self, context: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Phone the destinations (once per dedupe window) and speak the message.

        :param context: The callback's context (rendered template fields already applied).
        """
        from vobiz_provider.callbacks.store import get_store
        from vobiz_provider.config import get_settings, resolve_callback_base_url

        hook = self._hook()
        try:
            settings = get_settings()
            base_url = resolve_callback_base_url(hook.get_config().callback_base_url, settings)
            plan = self._plan(context, base_url, settings.signing_secret)
            store = get_store(settings.callback_store)
            if not self._claim(store, plan):
                return
            try:
                self._publish(store, plan)
                response = hook.make_call(plan.request)
            except Exception as err:
                self._release(store, plan, err)
                raise
            self._record(store, plan, response)
            self._log_fired(plan, response)
        finally:
            hook.close()

    async def async_notify(self, context: Mapping[str, Any]) -> None:  # type: ignore[override]
        """:meth:`notify` for the event loop (Deadline Alerts in the triggerer): store work runs in threads.

        :param context: The callback's context (rendered template fields already applied).
        """
        from vobiz_provider.callbacks.store import get_store
        from vobiz_provider.config import get_settings, resolve_callback_base_url

        hook = self._hook()
        try:
            settings = await asyncio.to_thread(get_settings)
            config = await hook.aget_config()
            base_url = resolve_callback_base_url(config.callback_base_url, settings)
            plan = self._plan(context, base_url, settings.signing_secret)
            store = await asyncio.to_thread(get_store, settings.callback_store)
            if not await asyncio.to_thread(self._claim, store, plan):
                return
            try:
                await asyncio.to_thread(self._publish, store, plan)
                response = await (await hook.aget_conn()).make_call(plan.request)
            except Exception as err:
                await asyncio.to_thread(self._release, store, plan, err)
                raise
            await asyncio.to_thread(self._record, store, plan, response)
            self._log_fired(plan, response)
        finally:
            await hook.aclose()


#: Alias in the style of Airflow's own notifiers (``send_slack_notification``, ...).
send_vobiz_call_notification = VobizNotifier
