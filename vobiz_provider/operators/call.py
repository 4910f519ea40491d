"""``VobizCallOperator``: place an outbound call through Vobiz, then (by default) wait until it hangs up.

The request is validated twice, always before anything is sent: static arguments when the DAG is parsed
(so a typo breaks the DAG import, not a run), templated ones once they are rendered at execute time.

Waiting follows the dbt Cloud pattern: the call is placed in ``execute`` on the worker (never from a
trigger, so a triggerer restart cannot dial twice), recorded in the callback store at once, and only the
wait is deferred to :class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger` - or run in the worker
when ``deferrable=False``. Airflow 3 clears XCom before a retry, so a retry finds the earlier try's call in
the callback store instead: still up, it waits for it; ended successfully, it returns it; otherwise it
dials again.

Spoken messages: with ``message=`` (and/or ``gather=``) instead of ``answer_url``, the operator stores what
to say in the callback store, under this try's signed correlation token, before it dials, and points
``answer_url`` at the callback receiver, which serves the VobizXML itself
(:mod:`vobiz_provider.callbacks.answers`). The digits the callee presses land on the call record.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException

from vobiz_provider.exceptions import VobizCallFailedError, VobizValidationError
from vobiz_provider.models.call import MakeCallRequest

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.hooks.vobiz import VobizHook
    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.models.answer import AnswerSpec, GatherSpec
    from vobiz_provider.models.record import CallRecord
    from vobiz_provider.models.responses import CallFiredResponse
    from vobiz_provider.triggers.hangup import VobizCallHangupTrigger

__all__ = ["VobizCallOperator"]

#: The Make-Call fields the operator passes through, by their Python names (``from`` is ``from_number``).
MAKE_CALL_FIELDS: tuple[str, ...] = (
    "to",
    "from_number",
    "answer_url",
    "answer_method",
    "ring_url",
    "ring_method",
    "hangup_url",
    "hangup_method",
    "fallback_url",
    "fallback_method",
    "machine_detection",
    "machine_detection_time",
    "machine_detection_url",
    "machine_detection_method",
    "machine_detection_maximum_speech_length",
    "machine_detection_initial_silence",
    "machine_detection_maximum_words",
    "machine_detection_initial_greeting",
    "caller_name",
    "send_digits",
    "send_on_preanswer",
    "time_limit",
    "hangup_on_ring",
    "ring_timeout",
)

_JINJA_MARKERS = ("{{", "{%", "{#")

#: Stands in for the receiver's answer URL while a message-mode request is validated; never sent (the real
#: URL, which carries the correlation token, replaces it just before dialling).
_RECEIVER_ANSWER_PLACEHOLDER = "https://receiver.invalid/vobiz/callbacks/answer"
#: Stands in for a templated message while the other spoken-message arguments are checked at parse time.
_MESSAGE_PLACEHOLDER = "message"
#: The keys a callee can press (what ``expected_digits`` may contain).
_KEYPAD = frozenset("0123456789*#")

#: Seconds Vobiz rings before giving up when ``ring_timeout`` is not set (hangup cause 6010).
DEFAULT_RING_TIMEOUT = 120
#: Vobiz's default ``time_limit``: the longest a call may last after it is answered, in seconds.
DEFAULT_TIME_LIMIT = 14400
#: Seconds added to ring timeout + time limit to make the default wait timeout.
TIMEOUT_MARGIN = 300
#: Seconds after the latest expected hangup at which the trigger asks the Vobiz API instead of waiting on.
RECONCILE_MARGIN = 60.0
#: Seconds the deferral timeout exceeds the trigger's own deadline (which ends the wait with a clear event).
DEFER_TIMEOUT_GRACE = 60.0


def _needs_rendering(value: Any) -> bool:
    """Whether a template-field value can only be checked once rendered (Jinja, XComArg, ...)."""
    if isinstance(value, str):
        return any(marker in value for marker in _JINJA_MARKERS)
    if isinstance(value, (list, tuple)):
        return any(_needs_rendering(item) or not isinstance(item, str) for item in value)
    if isinstance(value, dict):
        return any(
            _needs_rendering(item)
            for item in value.values()
            if not isinstance(item, (bool, int, float, type(None)))
        )
    # XComArg, MappedArgument and other lazily resolved values.
    return True


def _is_spec(value: Any) -> bool:
    from vobiz_provider.models.answer import GatherSpec

    return isinstance(value, GatherSpec)


def _expected_digits(task_id: str, value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``expected_digits`` as a tuple of key strings, checked."""
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)) or not values:
        raise VobizValidationError(
            f'Task {task_id!r}: expected_digits must be a string of keys (e.g. "1") or a non-empty list '
            f"of them, got {value!r}"
        )
    checked: list[str] = []
    for item in values:
        if not isinstance(item, str) or not item or not set(item) <= _KEYPAD:
            raise VobizValidationError(
                f"Task {task_id!r}: expected_digits must contain only the keys 0-9, * and #, got {item!r}"
            )
        checked.append(item)
    return tuple(dict.fromkeys(checked))


class VobizCallOperator(BaseOperator):
    """Place an outbound call with Vobiz.

    Every documented Make-Call field is an argument (see
    :class:`~vobiz_provider.models.call.MakeCallRequest` for the rules each one follows). Static values are
    validated when the DAG is parsed; templated values when the task runs, before any request is sent.

    By default the task then waits until the call hangs up and succeeds only if its final status is in
    ``success_statuses``; busy, no-answer or failed calls fail the task with
    :class:`VobizCallFailedError`, so ``retries`` dial again. The XCom return value is the final call
    record (a dict, see :class:`~vobiz_provider.models.record.CallRecord`; a list of them for several
    destinations). With ``wait_for_completion=False`` it is
    ``{"request_uuid", "request_uuids", "to", "from_number", "api_id"}`` as soon as Vobiz accepted the call.

    To learn about the hangup, the operator points ``hangup_url`` and ``ring_url`` (and
    ``machine_detection_url`` when machine detection is on) at the callback receiver
    (``callback_base_url`` from the connection extra or ``[vobiz]``), with a signed token naming this task
    instance. If you pass your own ``hangup_url``, or no receiver is configured, the wait polls the Vobiz API.

    Retries and clears: every placed call is recorded in the callback store before the wait starts. A later
    try of the same task instance looks there first: a call still up is waited for again (with a fresh
    ``timeout``) instead of ringing the callee twice; a call that ended in ``success_statuses`` is returned
    without dialling (unless ``redial="always"``); any other outcome is dialled again.

    What the callee hears comes either from your own ``answer_url`` (VobizXML you host) or from ``message``
    and/or ``gather``: the operator then stores them in the callback store before dialling (keyed by this
    try's signed correlation token, so the URL Vobiz fetches reveals nothing and cannot be forged) and the
    callback receiver serves the XML. That needs the receiver (``callback_base_url``). With
    ``expected_digits`` the task succeeds only if the callee pressed one of them; a wrong key or no key fails
    it like a busy line, so ``retries`` dial again.

    .. code-block:: python

        VobizCallOperator(
            task_id="confirm",
            to="{{ params.phone }}",
            from_number="+14155550100",
            message="Hello {{ params.name }}, your appointment is tomorrow at ten.",
            gather={"prompt": "Press 1 to confirm, 2 to cancel.", "num_digits": 1, "timeout": 10},
            expected_digits="1",
        )

    :param to: Destination(s): an E.164 number or ``sip:`` URI, a list of them, or a ``<``-joined string
        (at most 1000). Templated. Use ``.partial(...).expand(to=[...])`` for one task per person.
    :param from_number: Caller ID in E.164 (the API's ``from``). Templated.
    :param answer_url: URL Vobiz fetches VobizXML from when the call is answered. Required unless
        ``message`` or ``gather`` is given (and refused with them). Templated.
    :param answer_method: ``GET`` or ``POST`` (default ``POST``); with ``message``/``gather`` the receiver's
        answer URL is always fetched with ``POST``.
    :param message: Text spoken when the call is answered (instead of ``answer_url``). Templated.
    :param voice: ``WOMAN`` (default) or ``MAN``, for the message and the prompt.
    :param language: Language of the message and the prompt, e.g. ``en-US`` (default) or ``hi-IN``.
    :param loop: How many times the message is said (default 1).
    :param gather: A keypad prompt said after the message: a
        :class:`~vobiz_provider.models.answer.GatherSpec` or a dict of its fields (``prompt``,
        ``num_digits``, ``timeout`` in seconds (5-60), ``finish_on_key``, ``no_input_message``,
        ``reply_message``). Templated (dict values). The pressed keys are the call record's ``digits``
        (``None`` when the callee pressed nothing before the timeout).
    :param expected_digits: The answer(s) that make the task succeed, e.g. ``"1"`` or ``["1", "2"]``;
        needs ``gather``. Any other answer, or none, fails the task with :class:`VobizCallFailedError`.
    :param ring_url: Notified when the call starts ringing. Templated.
    :param ring_method: Method of ``ring_url``.
    :param hangup_url: Notified when the call ends. Templated.
    :param hangup_method: Method of ``hangup_url``.
    :param fallback_url: Fetched when ``answer_url`` fails. Templated.
    :param fallback_method: Method of ``fallback_url``.
    :param machine_detection: ``"true"`` or ``"hangup"`` (``True`` means ``"true"``).
    :param machine_detection_time: Detection time in ms (2000-10000).
    :param machine_detection_url: Asynchronous machine-detection callback URL. Templated.
    :param machine_detection_method: Method of ``machine_detection_url``.
    :param machine_detection_maximum_speech_length: ms (1000-6000).
    :param machine_detection_initial_silence: ms (2000-10000).
    :param machine_detection_maximum_words: 2-10.
    :param machine_detection_initial_greeting: ms (1000-5000).
    :param caller_name: Caller name, at most 50 characters. Templated.
    :param send_digits: DTMF sent once connected (``1w2W3`` or ``123@1000``). Templated.
    :param send_on_preanswer: Send ``send_digits`` during pre-answer.
    :param time_limit: Maximum call duration after answer, in seconds.
    :param hangup_on_ring: Seconds from ring start until Vobiz hangs up.
    :param ring_timeout: Seconds to ring before giving up.
    :param vobiz_conn_id: The Vobiz connection (type ``vobiz``).
    :param wait_for_completion: Wait until the call hangs up (default) or return once it is placed.
    :param deferrable: Wait in the triggerer rather than in the worker (default
        ``[operators] default_deferrable``).
    :param poll_interval: Seconds between two looks at the callback store (or the Vobiz API).
    :param timeout: Longest wait for the hangup, in seconds or as a ``timedelta``. Default: ring timeout
        (or 120 s) + time limit (or 14400 s) + 300 s.
    :param success_statuses: Final call statuses that make the task succeed (default ``("completed",)``).
    :param hangup_on_kill: Hang up the call when the task is killed (or its wait times out).
    :param redial: On a retry whose earlier try's call already ended successfully: ``"failed"`` (default)
        returns that call without dialling; ``"always"`` dials again. A call still up is always waited
        for, and a call that failed is always dialled again.
    """

    template_fields: Sequence[str] = (
        "to",
        "from_number",
        "answer_url",
        "message",
        "gather",
        "ring_url",
        "hangup_url",
        "fallback_url",
        "machine_detection_url",
        "caller_name",
        "send_digits",
    )
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        to: str | Sequence[str],
        from_number: str,
        answer_url: str | None = None,
        answer_method: str = "POST",
        message: str | None = None,
        voice: str = "WOMAN",
        language: str = "en-US",
        loop: int = 1,
        gather: Mapping[str, Any] | GatherSpec | None = None,
        expected_digits: str | Sequence[str] | None = None,
        ring_url: str | None = None,
        ring_method: str | None = None,
        hangup_url: str | None = None,
        hangup_method: str | None = None,
        fallback_url: str | None = None,
        fallback_method: str | None = None,
        machine_detection: bool | str | None = None,
        machine_detection_time: int | None = None,
        machine_detection_url: str | None = None,
        machine_detection_method: str | None = None,
        machine_detection_maximum_speech_length: int | None = None,
        machine_detection_initial_silence: int | None = None,
        machine_detection_maximum_words: int | None = None,
        machine_detection_initial_greeting: int | None = None,
        caller_name: str | None = None,
        send_digits: str | None = None,
        send_on_preanswer: bool | None = None,
        time_limit: int | None = None,
        hangup_on_ring: int | None = None,
        ring_timeout: int | None = None,
        vobiz_conn_id: str = "vobiz_default",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        timeout: float | timedelta | None = None,
        success_statuses: Sequence[str] = ("completed",),
        hangup_on_kill: bool = False,
        redial: Literal["failed", "always"] = "failed",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(success_statuses, str):
            success_statuses = (success_statuses,)
        if not success_statuses:
            raise ValueError(f"Task {self.task_id!r}: success_statuses must name at least one status")
        if redial not in ("failed", "always"):
            raise ValueError(f"Task {self.task_id!r}: redial must be 'failed' or 'always', got {redial!r}")
        if poll_interval <= 0:
            raise ValueError(f"Task {self.task_id!r}: poll_interval must be positive, got {poll_interval!r}")
        if timeout is not None:
            _seconds(timeout)  # refuse a non-positive timeout at parse time
        self.to = to
        self.from_number = from_number
        self.answer_url = answer_url
        self.answer_method = answer_method
        self.message = message
        self.voice = voice
        self.language = language
        self.loop = loop
        self.gather = dict(gather) if isinstance(gather, dict) else gather
        self.expected_digits = _expected_digits(self.task_id, expected_digits)
        self.ring_url = ring_url
        self.ring_method = ring_method
        self.hangup_url = hangup_url
        self.hangup_method = hangup_method
        self.fallback_url = fallback_url
        self.fallback_method = fallback_method
        self.machine_detection = machine_detection
        self.machine_detection_time = machine_detection_time
        self.machine_detection_url = machine_detection_url
        self.machine_detection_method = machine_detection_method
        self.machine_detection_maximum_speech_length = machine_detection_maximum_speech_length
        self.machine_detection_initial_silence = machine_detection_initial_silence
        self.machine_detection_maximum_words = machine_detection_maximum_words
        self.machine_detection_initial_greeting = machine_detection_initial_greeting
        self.caller_name = caller_name
        self.send_digits = send_digits
        self.send_on_preanswer = send_on_preanswer
        self.time_limit = time_limit
        self.hangup_on_ring = hangup_on_ring
        self.ring_timeout = ring_timeout
        self.vobiz_conn_id = vobiz_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout = timeout
        self.success_statuses = tuple(str(status).strip().lower() for status in success_statuses)
        self.hangup_on_kill = hangup_on_kill
        self.redial = redial
        self._waiting_for: list[str] = []
        self._validate_static_fields()

    @cached_property
    def hook(self) -> VobizHook:
        """The Vobiz hook of ``vobiz_conn_id`` (created on first use, never at DAG-parse time)."""
        from vobiz_provider.hooks.vobiz import VobizHook

        return VobizHook(vobiz_conn_id=self.vobiz_conn_id)

    # ------------------------------------------------------------------------------------- validation

    @property
    def speaks_message(self) -> bool:
        """Whether the receiver serves this call's answer XML (``message`` or ``gather`` given)."""
        return self.message is not None or self.gather is not None

    def _call_fields(self) -> dict[str, Any]:
        """The Make-Call fields that are set (``None`` means "not given")."""
        fields = {name: value for name in MAKE_CALL_FIELDS if (value := getattr(self, name)) is not None}
        if self.speaks_message:
            # Replaced by the receiver's answer URL (with this try's token) just before dialling.
            fields["answer_url"] = _RECEIVER_ANSWER_PLACEHOLDER
            fields["answer_method"] = "POST"
        return fields

    def _validate_answer_arguments(self) -> None:
        """Check at DAG-parse time how the call is answered: ``answer_url`` or ``message``/``gather``."""
        task = f"Task {self.task_id!r}"
        if self.speaks_message and self.answer_url is not None:
            given = " and ".join(n for n in ("message", "gather") if getattr(self, n) is not None)
            raise VobizValidationError(
                f"{task}: give either answer_url (your own VobizXML) or {given} (served by the callback "
                f"receiver), not both: Vobiz would only fetch answer_url, so the {given} would never be heard"
            )
        if not self.speaks_message and self.answer_url is None:
            raise VobizValidationError(
                f"{task}: answer_url is required (the URL Vobiz fetches VobizXML from when the call is "
                "answered) unless message or gather is given"
            )
        if self.expected_digits is not None:
            if self.gather is None:
                raise VobizValidationError(
                    f"{task}: expected_digits needs gather (the keypad prompt that collects the digits)"
                )
            if not self.wait_for_completion:
                raise VobizValidationError(
                    f"{task}: expected_digits needs wait_for_completion=True (the digits are known only "
                    "once the call has ended)"
                )
        if not self.speaks_message:
            return
        message = self.message
        if message is not None and _needs_rendering(message):
            message = _MESSAGE_PLACEHOLDER
        gather = self.gather
        if gather is not None and not _is_spec(gather) and _needs_rendering(gather):
            if message is None:
                return  # nothing left to check before rendering
            gather = None
        spec = self._build_answer_spec(message, gather)
        if self.expected_digits is not None and spec.gather is not None:
            self._check_expected_digits(spec.gather)

    def _build_answer_spec(self, message: str | None, gather: Any) -> AnswerSpec:
        from vobiz_provider.models.answer import AnswerSpec

        try:
            return AnswerSpec.build(
                message=message, voice=self.voice, language=self.language, loop=self.loop, gather=gather
            )
        except VobizValidationError as err:
            raise VobizValidationError(f"Task {self.task_id!r}: {err}") from None

    def _check_expected_digits(self, gather: GatherSpec) -> None:
        """Refuse expected answers the prompt can never collect."""
        assert self.expected_digits is not None
        for digits in self.expected_digits:
            if gather.num_digits is not None and len(digits) > gather.num_digits:
                raise VobizValidationError(
                    f"Task {self.task_id!r}: expected_digits {digits!r} can never be pressed: gather "
                    f"collects at most num_digits={gather.num_digits} key(s)"
                )
            if gather.finish_on_key not in (None, "", "none") and gather.finish_on_key in digits:
                raise VobizValidationError(
                    f"Task {self.task_id!r}: expected_digits {digits!r} can never be pressed: "
                    f"{gather.finish_on_key!r} is gather's finish_on_key (it ends the input)"
                )

    def answer_spec(self) -> AnswerSpec | None:
        """The validated spoken message and keypad prompt from the (rendered) arguments, or ``None`` when
        the call uses ``answer_url``.

        :raises VobizValidationError: naming the invalid field; nothing has been sent.
        """
        if not self.speaks_message:
            return None
        spec = self._build_answer_spec(self.message, self.gather)
        if self.expected_digits is not None and spec.gather is not None:
            self._check_expected_digits(spec.gather)
        return spec

    def _validate_static_fields(self) -> None:
        """Check, at DAG-parse time, every field whose value is already known."""
        self._validate_answer_arguments()
        static = {
            name: value
            for name, value in self._call_fields().items()
            if name not in self.template_fields or not _needs_rendering(value)
        }
        try:
            MakeCallRequest.validate_fields(**static)
        except VobizValidationError as err:
            raise VobizValidationError(f"Task {self.task_id!r}: {err}") from None

    def build_request(self) -> MakeCallRequest:
        """The validated Make-Call request from the (rendered) arguments.

        :raises VobizValidationError: naming every invalid field; nothing has been sent.
        """
        try:
            return MakeCallRequest.build(**self._call_fields())
        except VobizValidationError as err:
            raise VobizValidationError(f"Task {self.task_id!r}: {err}") from None

    # ------------------------------------------------------------------------------------- execution

    def execute(self, context: Context) -> Any:
        request = self.build_request()
        spec = self.answer_spec()
        # Checked first: without the receiver nobody would serve the message.
        base_url = self._require_receiver() if spec is not None else None
        if not self.wait_for_completion:
            if spec is not None and base_url is not None:
                correlation = self._correlation(context)
                request = self._publish_answer(request, spec, correlation, self._store(), base_url)
            response = self._fire(request)
            return self._fired_result(request, response)

        correlation = self._correlation(context)
        store = self._store()
        previous = self._previous_attempt(store, correlation)
        if previous:
            outcome = self._resume_previous_attempt(context, previous, correlation)
            if outcome is not _DIAL:
                return outcome

        if spec is not None and base_url is not None:
            request = self._publish_answer(request, spec, correlation, store, base_url)
        request, use_store = self._with_callback_urls(request, correlation)
        response = self._fire(request)
        destinations = list(request.destinations)
        try:
            store.register_fired_calls(
                request_uuids=list(response.request_uuids),
                destinations=destinations,
                from_number=request.from_number,
                correlation=correlation,
            )
        except Exception as exc:
            # The call is placed: failing now would only make a retry dial again. Waiting still works
            # (the trigger falls back on the Vobiz API when the store stays silent).
            self.log.warning(
                "Could not record the fired call in the Vobiz callback store (%s: %s); a retry of this "
                "task will not know about it",
                type(exc).__name__,
                exc,
            )
        return self._wait(
            context,
            request_uuids=list(response.request_uuids),
            destinations=destinations,
            use_store=use_store,
        )

    # -- firing

    def _fire(self, request: MakeCallRequest) -> CallFiredResponse:
        destinations = ", ".join(request.destinations)
        self.log.info("Placing a Vobiz call from %s to %s", request.from_number, destinations)
        try:
            response = self.hook.make_call(request)
        finally:
            self.hook.close()
        self.log.info(
            "Vobiz accepted the call to %s: request_uuid %s (api_id %s, message %r)",
            destinations,
            ", ".join(response.request_uuids),
            response.api_id,
            response.message,
        )
        return response

    @staticmethod
    def _fired_result(request: MakeCallRequest, response: CallFiredResponse) -> dict[str, Any]:
        destinations = list(request.destinations)
        request_uuid = response.request_uuid
        return {
            "request_uuid": list(request_uuid) if isinstance(request_uuid, (list, tuple)) else request_uuid,
            "request_uuids": list(response.request_uuids),
            "to": destinations[0] if len(destinations) == 1 else destinations,
            "from_number": request.from_number,
            "api_id": response.api_id,
        }

    def _correlation(self, context: Context) -> CorrelationToken:
        from vobiz_provider.correlation import CorrelationToken

        return CorrelationToken.from_task_instance(context["ti"], conn_id=self.vobiz_conn_id)

    def _callback_base_url(self) -> str | None:
        """Where Vobiz should send this call's callbacks: the connection's extra, else ``[vobiz]``."""
        from vobiz_provider.config import resolve_callback_base_url

        return resolve_callback_base_url(self.hook.get_config().callback_base_url)

    def _require_receiver(self) -> str:
        """The callback base URL a spoken message needs (the receiver serves its XML), else a clear error."""
        base_url = self._callback_base_url()
        if base_url is None:
            raise VobizValidationError(
                f"Task {self.task_id!r}: message and gather are served to Vobiz by the callback receiver, "
                f"but no callback_base_url is configured: set the {self.vobiz_conn_id!r} connection's "
                "callback_base_url extra or [vobiz] callback_base_url (or pass your own answer_url); no call "
                "was placed"
            )
        return base_url

    def _publish_answer(
        self,
        request: MakeCallRequest,
        spec: AnswerSpec,
        correlation: CorrelationToken,
        store: CallLedger,
        base_url: str,
    ) -> MakeCallRequest:
        """Store what the call says for this try, then point ``answer_url`` at the receiver.

        Done before dialling: Vobiz fetches the answer URL as soon as the callee picks up.
        """
        from vobiz_provider.callbacks.answers import publish_answer
        from vobiz_provider.config import get_settings

        token = correlation.encode(get_settings().signing_secret)
        try:
            answer_url = publish_answer(store, correlation, spec, callback_base_url=base_url, token=token)
        except Exception as exc:
            raise AirflowException(
                f"Task {self.task_id!r}: could not store the spoken message in the Vobiz callback store "
                f"({type(exc).__name__}); no call was placed"
            ) from exc
        self.log.info(
            "The callback receiver at %s will speak the message%s when the call is answered",
            base_url,
            " and collect the keys pressed" if spec.gather is not None else "",
        )
        # model_copy: the URL carries the token, which must stay out of any validation message.
        return request.model_copy(update={"answer_url": answer_url, "answer_method": "POST"})

    def _uses_store(self, base_url: str | None) -> bool:
        """Whether this task's hangup callback reaches the receiver (else the wait asks the API)."""
        return base_url is not None and self.hangup_url is None

    def _with_callback_urls(
        self, request: MakeCallRequest, correlation: CorrelationToken
    ) -> tuple[MakeCallRequest, bool]:
        """Point the callback URLs the user left empty at the receiver; say whether the wait can use it."""
        base_url = self._callback_base_url()
        if base_url is None:
            self.log.warning(
                "No callback_base_url is configured (connection %r extra or [vobiz] callback_base_url): "
                "Vobiz cannot report the hangup, so the end of the call is learnt by polling the Vobiz API "
                "every %s s",
                self.vobiz_conn_id,
                self.poll_interval,
            )
            return request, False
        from vobiz_provider.config import get_settings
        from vobiz_provider.correlation import callback_url

        token = correlation.encode(get_settings().signing_secret)
        updates: dict[str, str] = {}
        if request.hangup_url is None:
            updates["hangup_url"] = callback_url(base_url, "hangup", token)
        if request.ring_url is None:
            updates["ring_url"] = callback_url(base_url, "ring", token)
        if request.machine_detection is not None and request.machine_detection_url is None:
            updates["machine_detection_url"] = callback_url(base_url, "machine-detection", token)
        use_store = self._uses_store(base_url)
        self.log.info(
            "Vobiz will report %s to the callback receiver at %s",
            ", ".join(sorted(name.removesuffix("_url") for name in updates)) or "nothing",
            base_url,
        )
        if not use_store:
            self.log.info(
                "hangup_url is your own, so the receiver never hears the hangup: the end of the call is "
                "learnt by polling the Vobiz API every %s s",
                self.poll_interval,
            )
        # The URLs were checked when built (and the request before); model_copy keeps the token out of
        # any validation message.
        return request.model_copy(update=updates), use_store

    # -- retries

    @staticmethod
    def _store() -> CallLedger:
        from vobiz_provider.ledger import get_ledger

        return get_ledger()

    @staticmethod
    def _previous_attempt(store: CallLedger, correlation: CorrelationToken) -> list[CallRecord]:
        """The calls of the newest earlier try of this task instance that placed a call (may be empty)."""
        records = store.find_attempts(
            dag_id=correlation.dag_id,
            run_id=correlation.run_id,
            task_id=correlation.task_id,
            map_index=correlation.map_index,
            before_try=correlation.try_number,
        )
        if not records:
            return []
        newest = records[0].try_number
        return [record for record in records if record.try_number == newest]

    def _resume_previous_attempt(
        self, context: Context, previous: list[CallRecord], correlation: CorrelationToken
    ) -> Any:
        """Re-attach to a live call, return a successful one, or return :data:`_DIAL` to dial again."""
        earlier = previous[0].try_number
        described = "; ".join(
            f"{record.to or '?'} ({record.call_uuid or record.request_uuid}): {record.status}"
            for record in previous
        )
        if not all(record.terminal for record in previous):
            self.log.info(
                "Try %s: the call placed by try %s is still up (%s); waiting for it instead of dialling "
                "again",
                correlation.try_number,
                earlier,
                described,
            )
            request_uuids = list(dict.fromkeys(r.request_uuid for r in previous if r.request_uuid))
            call_uuids = [r.call_uuid for r in previous if r.call_uuid]
            return self._wait(
                context,
                request_uuids=request_uuids or call_uuids,
                destinations=[r.to for r in previous if r.to],
                use_store=self._uses_store(self._callback_base_url()),
            )
        if all(self._succeeded(record.to_event()) for record in previous):
            if self.redial != "always":
                self.log.info(
                    "Try %s: the call placed by try %s already ended successfully (%s); returning its "
                    "outcome without dialling again (redial=%r)",
                    correlation.try_number,
                    earlier,
                    described,
                    self.redial,
                )
                return _result([record.to_event() for record in previous])
            self.log.info(
                "Try %s: the call placed by try %s ended successfully (%s), but redial='always': dialling "
                "again",
                correlation.try_number,
                earlier,
                described,
            )
            return _DIAL
        self.log.info(
            "Try %s: the call placed by try %s did not succeed (%s); dialling again",
            correlation.try_number,
            earlier,
            described,
        )
        return _DIAL

    # -- waiting

    def _timeout_seconds(self) -> float:
        if self.timeout is not None:
            return _seconds(self.timeout)
        ring = _as_int(self.ring_timeout) or DEFAULT_RING_TIMEOUT
        limit = _as_int(self.time_limit) or DEFAULT_TIME_LIMIT
        return float(ring + limit + TIMEOUT_MARGIN)

    def _wait(
        self,
        context: Context,
        *,
        request_uuids: list[str],
        destinations: list[str],
        use_store: bool,
    ) -> Any:
        from vobiz_provider.triggers.hangup import VobizCallHangupTrigger

        timeout = self._timeout_seconds()
        now = time.time()
        deadline = now + timeout
        ring = _as_int(self.ring_timeout) or DEFAULT_RING_TIMEOUT
        limit = _as_int(self.time_limit) or DEFAULT_TIME_LIMIT
        # Ask the API once the hangup is overdue, but early enough to settle before the deadline.
        reconcile_after = min(now + ring + limit + RECONCILE_MARGIN, deadline - min(60.0, timeout / 5))
        trigger = VobizCallHangupTrigger(
            request_uuids=request_uuids,
            destinations=destinations,
            vobiz_conn_id=self.vobiz_conn_id,
            deadline=deadline,
            poll_interval=self.poll_interval,
            reconcile_after=reconcile_after,
            use_store=use_store,
            hangup_on_kill=self.hangup_on_kill,
        )
        if self.deferrable:
            self.log.info(
                "Deferring until the call to %s hangs up (at most %.0f s)", ", ".join(destinations), timeout
            )
            # The trigger ends the wait itself at the deadline; the grace only covers a lost trigger.
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=timedelta(seconds=timeout + max(self.poll_interval, 1.0) + DEFER_TIMEOUT_GRACE),
            )
        self.log.info(
            "Waiting in the worker until the call to %s hangs up (at most %.0f s)",
            ", ".join(destinations),
            timeout,
        )
        # Kept when the wait is interrupted: on_kill (called after the timeout/kill exception) needs it.
        self._waiting_for = list(request_uuids)
        event = asyncio.run(_first_event(trigger))
        self._waiting_for = []
        return self.execute_complete(context, event)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Turn the trigger's event into the task's outcome (resumes after deferral; also used in-process).

        :param context: The task context.
        :param event: ``{"status": "hangup"|"timeout"|"error", "request_uuids", "calls", "message"}``.
        :raises VobizCallFailedError: when a call ended with a status not in ``success_statuses``.
        :raises AirflowException: when the event is missing or malformed, the wait failed or timed out.
        """
        if not isinstance(event, dict) or event.get("status") not in _EVENT_STATUSES:
            raise AirflowException(
                f"Task {self.task_id!r}: the wait for the Vobiz call ended with an unexpected event: "
                f"{event!r}"
            )
        status = event["status"]
        calls = [call for call in event.get("calls") or () if isinstance(call, dict)]
        request_uuids = ", ".join(event.get("request_uuids") or ()) or "?"
        message = event.get("message") or ""
        if status == "error":
            raise AirflowException(f"Waiting for the Vobiz call (request {request_uuids}) failed: {message}")
        if status == "timeout":
            if self.hangup_on_kill:
                self._hang_up_live(list(event.get("request_uuids") or ()), calls)
            raise AirflowException(
                f"The Vobiz call (request {request_uuids}) did not hang up in time: {message}"
            )
        if not calls:
            raise AirflowException(
                f"The Vobiz call (request {request_uuids}) hung up but no call record came with the event"
            )
        calls = self._with_stored_digits(calls)
        self._remember_outcome(calls)
        failed = [call for call in calls if not self._succeeded(call)]
        if failed:
            raise VobizCallFailedError(
                "; ".join(self._describe_failure(call) for call in failed), calls=calls
            )
        for call in calls:
            self.log.info("%s", _describe_outcome(call))
        return _result(calls)

    def _with_stored_digits(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fill in the digits a final record learnt from the Vobiz API lacks (a CDR has none) from the
        store, where the receiver put the Gather post: a lost hangup callback must not lose the answer."""
        if self.gather is None:
            return calls
        missing = [call["call_uuid"] for call in calls if not call.get("digits") and call.get("call_uuid")]
        if not missing:
            return calls
        try:
            stored = {r.call_uuid: r.digits for r in self._store().lookup(call_uuids=missing) if r.digits}
        except Exception as exc:
            self.log.warning("Could not read the digits pressed from the Vobiz callback store: %s", exc)
            return calls
        return [
            {**call, "digits": stored[call["call_uuid"]]}
            if not call.get("digits") and call.get("call_uuid") in stored
            else call
            for call in calls
        ]

    def _succeeded(self, call: Mapping[str, Any]) -> bool:
        """Whether a final call record settles the task: a success status (and an expected answer)."""
        if call.get("status") not in self.success_statuses:
            return False
        return self.expected_digits is None or call.get("digits") in self.expected_digits

    def _describe_failure(self, call: Mapping[str, Any]) -> str:
        if call.get("status") not in self.success_statuses:
            return f"{_describe_failure(call)} (success statuses: {', '.join(self.success_statuses)})"
        expected = " or ".join(repr(digits) for digits in self.expected_digits or ())
        pressed = call.get("digits")
        answer = (
            f"the callee pressed {pressed!r}"
            if pressed
            else "no digits: the callee did not answer the prompt"
        )
        return (
            f"Vobiz call to {call.get('to') or '?'} ({call.get('call_uuid') or call.get('request_uuid')}) "
            f"ended with status {call.get('status')!r}, but {answer} (expected {expected})"
        )

    def _remember_outcome(self, calls: list[dict[str, Any]]) -> None:
        """Write outcomes learnt from the API to the store, so that a retry sees the call has ended.

        Only needed when callbacks did not reach the receiver (the trigger then did not use the store).
        """
        from vobiz_provider.models.record import CallRecord

        api_records = [call for call in calls if call.get("source") == "api" and call.get("terminal")]
        if not api_records:
            return
        try:
            store = self._store()
            for call in api_records:
                store.cache_api_result(CallRecord.from_event(call))
        except Exception as exc:
            self.log.warning("Could not record the call's outcome in the Vobiz callback store: %s", exc)

    # -- killing

    def on_kill(self) -> None:
        """Hang up the call being waited for in the worker, if ``hangup_on_kill``.

        (While deferred, the trigger's ``on_kill`` does the same.)
        """
        if self.hangup_on_kill and self._waiting_for:
            self._hang_up_live(self._waiting_for)

    def _hang_up_live(self, request_uuids: Sequence[str], calls: Sequence[dict[str, Any]] = ()) -> None:
        """Hang up every leg of these requests that has not ended (best effort, never raises)."""
        records = [dict(call) for call in calls]
        try:
            records += [record.to_event() for record in self._store().lookup(request_uuids=request_uuids)]
        except Exception as exc:
            self.log.warning("Could not read the Vobiz callback store to find the live calls: %s", exc)
        ended = {r["call_uuid"] for r in records if r.get("terminal") and r.get("call_uuid")}
        live = [r["call_uuid"] for r in records if not r.get("terminal") and r.get("call_uuid")]
        known_requests = {r.get("request_uuid") for r in records if r.get("call_uuid")}
        # A request nothing is known about: for one destination its request UUID is the call UUID.
        live += [uuid for uuid in request_uuids if uuid not in known_requests]
        for uuid in dict.fromkeys(uuid for uuid in live if uuid not in ended):
            try:
                hung_up = self.hook.hangup_call(uuid)
            except Exception as exc:
                self.log.warning("Could not hang up Vobiz call %s: %s", uuid, exc)
                continue
            self.log.info("Vobiz call %s %s", uuid, "hung up" if hung_up else "had already ended")
        self.hook.close()


# ---------------------------------------------------------------------------------------------- helpers

_EVENT_STATUSES = frozenset({"hangup", "timeout", "error"})


class _Dial:
    """Marker: the previous attempt does not settle the task, place a new call."""


_DIAL = _Dial()


async def _first_event(trigger: VobizCallHangupTrigger) -> dict[str, Any] | None:
    """Run the trigger (in the worker's own event loop) to its first event."""
    events = trigger.run()
    try:
        event = await anext(events, None)
    finally:
        await events.aclose()
    return None if event is None else event.payload


def _result(calls: list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
    """The XCom value: the call record, or the list of them for several destinations."""
    return calls[0] if len(calls) == 1 else calls


def _seconds(value: float | timedelta) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ValueError(f"timeout must be positive, got {value!r}")
    return seconds


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _cause(call: dict[str, Any]) -> str:
    parts = [
        str(call["hangup_cause_code"]) if call.get("hangup_cause_code") is not None else None,
        call.get("hangup_cause_name") or call.get("hangup_cause"),
    ]
    text = " ".join(part for part in parts if part) or "unknown cause"
    if call.get("hangup_source"):
        text += f", hung up by {call['hangup_source']}"
    return text


def _describe_failure(call: dict[str, Any]) -> str:
    return (
        f"Vobiz call to {call.get('to') or '?'} ({call.get('call_uuid') or call.get('request_uuid')}) "
        f"ended with status {call.get('status')!r} (hangup cause {_cause(call)})"
    )


def _describe_outcome(call: dict[str, Any]) -> str:
    duration = f", {call['duration']} s" if call.get("duration") is not None else ""
    pressed = f"; the callee pressed {call['digits']!r}" if call.get("digits") else ""
    return (
        f"Vobiz call to {call.get('to') or '?'} ({call.get('call_uuid') or call.get('request_uuid')}) "
        f"ended with status {call.get('status')!r} (hangup cause {_cause(call)}{duration}){pressed}"
    )
