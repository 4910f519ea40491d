"""``VobizCallOperator``: place an outbound call through Vobiz (``POST /Account/{auth_id}/Call/``).

The request is validated twice, always before anything is sent: static arguments when the DAG is parsed
(so a typo breaks the DAG import, not a run), templated ones once they are rendered at execute time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models.call import MakeCallRequest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from vobiz_provider.models.responses import CallFiredResponse

__all__ = ["VobizCallFailedError", "VobizCallOperator"]

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


class VobizCallFailedError(AirflowException):
    """The call ended, but not with one of the operator's ``success_statuses`` (busy, no answer, ...).

    Raised so that the task's ``retries`` (or a clear in the UI) dial again.

    :param message: What happened: destination, final status and hangup cause.
    :param calls: The final call records (``CallRecord.to_event()`` dicts) of the attempt.
    """

    def __init__(self, message: str, *, calls: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.calls = list(calls)


def _needs_rendering(value: Any) -> bool:
    """Whether a template-field value can only be checked once rendered (Jinja, XComArg, ...)."""
    if isinstance(value, str):
        return any(marker in value for marker in _JINJA_MARKERS)
    if isinstance(value, (list, tuple)):
        return any(_needs_rendering(item) or not isinstance(item, str) for item in value)
    # XComArg, MappedArgument and other lazily resolved values.
    return True


class VobizCallOperator(BaseOperator):
    """Place an outbound call with Vobiz.

    Every documented Make-Call field is an argument (see
    :class:`~vobiz_provider.models.call.MakeCallRequest` for the rules each one follows). Static values are
    validated when the DAG is parsed; templated values when the task runs, before any request is sent.
    The XCom return value is ``{"request_uuid", "request_uuids", "to", "from_number", "api_id"}``.

    :param to: Destination(s): an E.164 number or ``sip:`` URI, a list of them, or a ``<``-joined string
        (at most 1000). Templated. Use ``.partial(...).expand(to=[...])`` for one task per person.
    :param from_number: Caller ID in E.164 (the API's ``from``). Templated.
    :param answer_url: URL Vobiz fetches VobizXML from when the call is answered. Required. Templated.
    :param answer_method: ``GET`` or ``POST`` (default ``POST``).
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
    """

    template_fields: Sequence[str] = (
        "to",
        "from_number",
        "answer_url",
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = to
        self.from_number = from_number
        self.answer_url = answer_url
        self.answer_method = answer_method
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
        self._validate_static_fields()

    # ------------------------------------------------------------------------------------- validation

    def _call_fields(self) -> dict[str, Any]:
        """The Make-Call fields that are set (``None`` means "not given")."""
        return {name: value for name in MAKE_CALL_FIELDS if (value := getattr(self, name)) is not None}

    def _validate_static_fields(self) -> None:
        """Check, at DAG-parse time, every field whose value is already known."""
        if self.answer_url is None:
            raise VobizValidationError(
                f"Task {self.task_id!r}: answer_url is required (the URL Vobiz fetches VobizXML from "
                "when the call is answered)"
            )
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

    def execute(self, context: Context) -> dict[str, Any]:
        request = self.build_request()
        response = self._fire(request)
        return self._fired_result(request, response)

    def _fire(self, request: MakeCallRequest) -> CallFiredResponse:
        from vobiz_provider.hooks.vobiz import VobizHook

        destinations = list(request.destinations)
        self.log.info(
            "Placing a Vobiz call from %s to %s (%d destination%s)",
            request.from_number,
            ", ".join(destinations),
            len(destinations),
            "" if len(destinations) == 1 else "s",
        )
        response = VobizHook(vobiz_conn_id=self.vobiz_conn_id).make_call(request)
        self.log.info(
            "Vobiz accepted the call to %s: request_uuid %s (api_id %s, message %r)",
            ", ".join(destinations),
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
