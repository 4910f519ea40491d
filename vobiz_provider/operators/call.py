"""``VobizCallOperator``: place an outbound call through Vobiz, then (by default) wait until it hangs up.

The dbt Cloud pattern: the call is placed in ``execute`` on the worker (never from a trigger, so a triggerer
restart cannot dial twice) and recorded in the call ledger at once; only the wait is deferred to
:class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger`. At DAG-parse time only
:mod:`vobiz_provider.calls.templating` and the request model are loaded: the hook, the client, the ledger,
the trigger and the dataclass-heavy ``calls`` modules (each dataclass costs ~0.7 ms to define) are imported
where the task runs, which keeps benchmark B4 where it was.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Literal

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException

from vobiz_provider.calls.asset_extra import check_outlet_extra
from vobiz_provider.calls.templating import (
    RECEIVER_ANSWER_PLACEHOLDER,
    build_answer_spec,
    check_expected_digits,
    check_static_answer,
    check_static_request,
    parse_expected_digits,
    positive_seconds,
)
from vobiz_provider.exceptions import VobizCallFailedError, VobizValidationError
from vobiz_provider.links.call import VobizCallLink
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.phone_masking import masked_numbers

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import timedelta

    from airflow.sdk import Context

    from vobiz_provider.calls.outcome import SuccessRule
    from vobiz_provider.calls.placement import CallPlacer, PlacedCall, Placement
    from vobiz_provider.calls.resumption import TryHistory
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.hooks.vobiz import VobizHook
    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.models.answer import AnswerSpec, GatherSpec

__all__ = ["VobizCallOperator"]

#: The Make-Call fields the operator passes through, by their Python names (``from`` is ``from_number``).
MAKE_CALL_FIELDS: Final = tuple(MakeCallRequest.model_fields)

_EVENT_STATUSES: Final = frozenset({"hangup", "timeout", "error"})


class VobizCallOperator(BaseOperator):
    """Place an outbound call with Vobiz and, by default, wait until it hangs up.

    Every documented Make-Call field is an argument (the rules each follows are those of
    :class:`~vobiz_provider.models.call.MakeCallRequest`): static values are checked when the DAG is parsed,
    templated ones when the task runs, before anything is sent. The task then waits for the hangup (through
    the callback receiver at ``callback_base_url``, else by polling the Vobiz API) and succeeds only if the
    call ended in ``success_statuses`` (and, with ``expected_digits``, the callee pressed one of them); any
    other outcome raises :class:`~vobiz_provider.exceptions.VobizCallFailedError`, so ``retries`` dial
    again. A retry or a clear first looks at the earlier try's call in the call ledger: still up, it waits
    for it; ended successfully, it returns it (unless ``redial="always"``); otherwise it dials again.
    With ``wait_for_completion=False`` the task succeeds once Vobiz accepted the call; a retry returns the
    call of a try that died before returning it, without dialling. Every mode needs the call ledger
    (``[vobiz] callback_store``) before it dials: unreachable, the task fails without dialling.

    The XCom value is the final call record (``CallRecord.to_event()``; a list for several destinations),
    or, with ``wait_for_completion=False``, ``{"request_uuid", "request_uuids", "to", "from_number",
    "api_id"}`` once Vobiz accepted the call. What the callee hears is your ``answer_url``'s VobizXML, or
    ``message``/``gather``, which the receiver serves (stored under this try's signed token: the URL Vobiz
    fetches reveals nothing).

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
        needs ``gather``. Any other answer, or none, fails the task like a busy line.
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
    :param poll_interval: Seconds between two looks at the call ledger (or the Vobiz API).
    :param timeout: Longest wait for the hangup, in seconds or as a ``timedelta``. Default: ring timeout
        (or 120 s) + time limit (or 14400 s) + 300 s.
    :param success_statuses: Final call statuses that make the task succeed (default ``("completed",)``).
    :param hangup_on_kill: Hang up the call when the task is killed (or its wait times out).
    :param redial: On a retry whose earlier try's call already ended successfully: ``"failed"`` (default)
        returns that call without dialling; ``"always"`` dials again. A call still up is always waited
        for, and a call that failed is always dialled again. With ``wait_for_completion=False``, a call
        whose end the ledger does not know counts as still up but ``"always"`` dials again; the call of a
        try that died before returning it is returned whatever ``redial`` says.
    :param outlet_extra: Your own keys (e.g. ``{"patient_id": "{{ params.patient }}"}``) added to the extra
        of the asset events of ``outlets=[Asset(...)]``, next to the call's outcome (status, hangup cause,
        duration, digits, masked numbers, the task instance: :mod:`vobiz_provider.calls.asset_extra`).
        Templated.
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
        "outlet_extra",
    )
    ui_color = "#e8f4fd"
    operator_extra_links = (VobizCallLink(),)

    # Set in __init__ from MAKE_CALL_FIELDS (templated ones may hold a rendered value of another type).
    to: str | Sequence[str]
    from_number: str
    answer_url: str | None
    answer_method: str
    ring_url: str | None
    ring_method: str | None
    hangup_url: str | None
    hangup_method: str | None
    fallback_url: str | None
    fallback_method: str | None
    machine_detection: bool | str | None
    machine_detection_time: int | None
    machine_detection_url: str | None
    machine_detection_method: str | None
    machine_detection_maximum_speech_length: int | None
    machine_detection_initial_silence: int | None
    machine_detection_maximum_words: int | None
    machine_detection_initial_greeting: int | None
    caller_name: str | None
    send_digits: str | None
    send_on_preanswer: bool | None
    time_limit: int | None
    hangup_on_ring: int | None
    ring_timeout: int | None

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
        outlet_extra: Mapping[str, Any] | None = None,
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
            positive_seconds(timeout)  # refuse a non-positive timeout at parse time
        call_fields = locals()
        for name in MAKE_CALL_FIELDS:
            setattr(self, name, call_fields[name])
        self.message = message
        self.voice = voice
        self.language = language
        self.loop = loop
        self.gather = dict(gather) if isinstance(gather, dict) else gather
        self.expected_digits = parse_expected_digits(self.task_id, expected_digits)
        self.vobiz_conn_id = vobiz_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout = timeout
        self.success_statuses = tuple(str(status).strip().lower() for status in success_statuses)
        self.hangup_on_kill = hangup_on_kill
        self.redial = redial
        self.outlet_extra = check_outlet_extra(self.task_id, outlet_extra)
        self._waiting_for: list[str] = []
        self._execute_started_at: float | None = None
        self._validate_static_fields()

    @cached_property
    def hook(self) -> VobizHook:
        """The Vobiz hook of ``vobiz_conn_id`` (created on first use, never at DAG-parse time)."""
        from vobiz_provider.hooks.vobiz import VobizHook  # the client and httpx: not at DAG-parse time

        return VobizHook(vobiz_conn_id=self.vobiz_conn_id)

    @cached_property
    def ledger(self) -> CallLedger:
        """The call ledger (opened on first use, never at DAG-parse time)."""
        from vobiz_provider.ledger import get_ledger  # SQLAlchemy: not at DAG-parse time

        return get_ledger()

    @cached_property
    def placer(self) -> CallPlacer:
        """What places the call (created on first use, never at DAG-parse time)."""
        from vobiz_provider.calls.placement import CallPlacer  # the client and httpx: not at parse time

        return CallPlacer(hook=self.hook, log=self.log, ledger=self.ledger)

    @property
    def success_rule(self) -> SuccessRule:
        """When a final call record makes the task succeed."""
        from vobiz_provider.calls.outcome import SuccessRule  # execute time only: see the module docstring

        return SuccessRule(success_statuses=self.success_statuses, expected_digits=self.expected_digits)

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
            fields["answer_url"] = RECEIVER_ANSWER_PLACEHOLDER
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
        if self.speaks_message:
            self._checked(check_static_answer, message=self.message, gather=self.gather)

    def _checked(
        self, build: Callable[..., AnswerSpec | None], *, message: Any, gather: Any
    ) -> AnswerSpec | None:
        try:
            spec = build(
                message=message, gather=gather, voice=self.voice, language=self.language, loop=self.loop
            )
        except VobizValidationError as err:
            raise VobizValidationError(f"Task {self.task_id!r}: {err}") from None
        if spec is not None and self.expected_digits is not None and spec.gather is not None:
            check_expected_digits(self.task_id, self.expected_digits, spec.gather)
        return spec

    def answer_spec(self) -> AnswerSpec | None:
        """The validated spoken message and keypad prompt from the (rendered) arguments, or ``None`` when
        the call uses ``answer_url``.

        :raises VobizValidationError: naming the invalid field; nothing has been sent.
        """
        if not self.speaks_message:
            return None
        return self._checked(build_answer_spec, message=self.message, gather=self.gather)

    def _validate_static_fields(self) -> None:
        """Check, at DAG-parse time, every field whose value is already known."""
        self._validate_answer_arguments()
        try:
            check_static_request(self._call_fields(), template_fields=self.template_fields)
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
        # Airflow starts the execution_timeout's clock just before execute(): the in-worker wait's bound.
        self._execute_started_at = time.time()
        # Execute-time modules (see the module docstring): their dataclasses cost DAG-parse time (B4).
        from vobiz_provider.calls.outcome import xcom_result
        from vobiz_provider.calls.recovery import recover_unrecorded_calls
        from vobiz_provider.correlation import CorrelationToken

        request = self.build_request()
        spec = self.answer_spec()
        placer = self.placer
        base_url = placer.callback_base_url()
        if spec is not None:
            # Checked first: without the receiver nobody would serve the message.
            placer.require_receiver(
                base_url, what=f"Task {self.task_id!r}", instead="pass your own answer_url"
            )
        correlation = CorrelationToken.from_task_instance(context["ti"], conn_id=self.vobiz_conn_id)
        # A try that died between POST /Call/ and recording its calls: find them before dialling again. Also
        # without waiting: the ledger is needed before any dial (unreachable, the try fails undialled).
        recovered = recover_unrecorded_calls(
            hook=self.hook,
            ledger=self.ledger,
            reader=self.ledger,
            correlation=correlation,
            destinations=list(request.destinations),
            from_number=request.from_number,
            log=self.log,
        )
        history = self._history(correlation)
        if not self.wait_for_completion:
            return self._fire(request, spec=spec, base_url=base_url, history=history)

        resume = history.resume_waiting()  # raises for "report": the earlier call's outcome
        if resume is not None and resume.action == "wait":
            previous = resume.calls
            return self._wait(
                context,
                request_uuids=list(dict.fromkeys(r.request_uuid for r in previous if r.request_uuid))
                or [r.call_uuid for r in previous if r.call_uuid],
                destinations=[r.to for r in previous if r.to],
                # Recovered calls: the receiver refused their callbacks until now, so ask the API.
                use_store=base_url is not None and self.hangup_url is None and not recovered,
            )
        if resume is not None and resume.action == "return":
            returned = [record.to_event() for record in resume.calls]
            self._attach_outcome(context, returned)
            return xcom_result(returned)

        placement = placer.plan(request, correlation=correlation, callback_base_url=base_url, spec=spec)
        self._log_callback_routes(placement.callback_base_url, placement.routed)
        placed = self._place(placement)
        return self._wait(
            context,
            request_uuids=placed.request_uuids,
            destinations=placed.destinations,
            use_store=placement.receiver_hears_hangup,
        )

    def _history(self, correlation: CorrelationToken) -> TryHistory:
        """The earlier tries of this task instance, for the try ``correlation`` names."""
        from vobiz_provider.calls.resumption import TryHistory  # execute time only: see the module docstring

        return TryHistory(
            ledger=self.ledger,
            correlation=correlation,
            rule=self.success_rule,
            redial=self.redial,
            log=self.log,
        )

    def _fire(
        self,
        request: MakeCallRequest,
        *,
        spec: AnswerSpec | None,
        base_url: str | None,
        history: TryHistory,
    ) -> dict[str, Any]:
        """``wait_for_completion=False``: return the call an earlier try placed (see
        :meth:`~vobiz_provider.calls.resumption.TryHistory.resume_firing`), else place one, record it, and
        mark the try's placement settled once the call is recorded (it returns it next): a retry then knows
        whether this try got that far."""
        from vobiz_provider.calls.outcome import fired_result, fired_result_of

        resume = history.resume_firing()
        if resume is not None and resume.action == "return":
            return fired_result_of(resume.calls, list(request.destinations))
        placement = self.placer.plan(
            request, correlation=history.correlation, callback_base_url=base_url, spec=spec, route=()
        )
        placed = self._place(placement)
        history.settle([{"request_uuid": uuid} for uuid in placed.request_uuids])
        return fired_result(placed.placement.request, placed.response)

    def _place(self, placement: Placement) -> PlacedCall:
        try:
            return self.placer.place(placement)
        finally:
            self.hook.close()

    def _log_callback_routes(self, base_url: str | None, routed: Sequence[str]) -> None:
        if base_url is None:
            self.log.warning(
                "No callback_base_url is configured (connection %r extra or [vobiz] callback_base_url): "
                "Vobiz cannot report the hangup, so the end of the call is learnt by polling the Vobiz API "
                "every %s s",
                self.vobiz_conn_id,
                self.poll_interval,
            )
        elif "hangup" not in routed:
            self.log.info(
                "hangup_url is your own, so the receiver never hears the hangup: the end of the call is "
                "learnt by polling the Vobiz API every %s s",
                self.poll_interval,
            )

    # -- waiting

    def _wait(
        self,
        context: Context,
        *,
        request_uuids: list[str],
        destinations: list[str],
        use_store: bool,
    ) -> Any:
        # Airflow's trigger machinery and the ledger: only when the task waits.
        from vobiz_provider.calls.waiting import WaitWindow, wait_in_worker
        from vobiz_provider.triggers.hangup import VobizCallHangupTrigger

        window = WaitWindow.starting_now(
            timeout=self.timeout, ring_timeout=self.ring_timeout, time_limit=self.time_limit
        )
        trigger = VobizCallHangupTrigger(
            request_uuids=request_uuids,
            destinations=destinations,
            vobiz_conn_id=self.vobiz_conn_id,
            deadline=window.deadline,
            poll_interval=self.poll_interval,
            reconcile_after=window.reconcile_after,
            use_store=use_store,
            hangup_on_kill=self.hangup_on_kill,
        )
        where = masked_numbers(destinations)
        if self.deferrable:
            self.log.info("Deferring until the call to %s hangs up (at most %.0f s)", where, window.timeout)
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=window.defer_timeout(self.poll_interval),
            )
        self.log.info(
            "Waiting in the worker until the call to %s hangs up (at most %.0f s)", where, window.timeout
        )
        # Kept when the wait is interrupted: on_kill (called after the timeout/kill exception) needs it.
        self._waiting_for = list(request_uuids)
        event = wait_in_worker(
            trigger,
            task_id=self.task_id,
            execution_timeout=self.execution_timeout,
            started_at=self._execute_started_at if self._execute_started_at is not None else time.time(),
        )
        self._waiting_for = []
        return self.execute_complete(context, event)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Turn the trigger's event into the task's outcome (resumes after deferral; also used in-process).

        :param context: The task context.
        :param event: ``{"status": "hangup"|"timeout"|"error", "request_uuids", "calls", "message"}``.
        :raises VobizCallFailedError: when a call ended with a status not in ``success_statuses``.
        :raises AirflowException: when the event is missing or malformed, the wait failed or timed out.
        """
        from vobiz_provider.calls.outcome import (
            cache_api_outcomes,
            describe_outcome,
            fill_stored_digits,
            xcom_result,
        )
        from vobiz_provider.calls.resumption import settle_calls

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
        if self.gather is not None:
            calls = fill_stored_digits(self.ledger, calls, log=self.log)
        cache_api_outcomes(self.ledger, calls, log=self.log)
        rule = self.success_rule
        failed = [call for call in calls if not rule.succeeded(call)]
        if failed:
            settle_calls(self.ledger, calls, log=self.log)
            raise VobizCallFailedError("; ".join(rule.describe_failure(call) for call in failed), calls=calls)
        for call in calls:
            self.log.info("%s", describe_outcome(call))
        self._attach_outcome(context, calls)
        return xcom_result(calls)

    def _attach_outcome(self, context: Context, calls: Sequence[Mapping[str, Any]]) -> None:
        """The outcome as the extra of the task's asset events (``outlets``; see ``calls.asset_extra``)."""
        from vobiz_provider.calls.asset_extra import attach_outcome

        attach_outcome(context, self.outlets, calls, outlet_extra=self.outlet_extra)

    # -- killing

    def on_kill(self) -> None:
        """Hang up the call being waited for in the worker, if ``hangup_on_kill``.

        (While deferred, the trigger's ``on_kill`` does the same.)
        """
        if self.hangup_on_kill and self._waiting_for:
            self._hang_up_live(self._waiting_for)

    def _hang_up_live(self, request_uuids: Sequence[str], calls: Sequence[dict[str, Any]] = ()) -> None:
        """Hang up every leg of these requests that has not ended (best effort, never raises)."""
        from vobiz_provider.calls.api import hang_up_live  # builds the CallRecord model: not at parse time

        hang_up_live(
            hook=self.hook, ledger=self.ledger, request_uuids=request_uuids, calls=calls, log=self.log
        )
