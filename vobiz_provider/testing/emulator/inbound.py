"""An inbound call, as Vobiz places it when someone dials a number whose application points at your URL.

:func:`place_inbound_call` plays the caller and Vobiz together, over real HTTP: it fetches the application's
answer URL (``POST``, the answer callback's fields with ``Direction=inbound``), executes the ``<Gather>`` of
the XML it gets with the given digits (posting them to the Gather's ``action``, or an empty ``Digits`` when
the caller presses nothing), then posts the hangup to the application's hangup URL. Each request is signed as
the emulator signs callbacks (``X-Vobiz-Signature-V2/V3`` over the URL without its ``user:password@``, only
when the URL carries credentials, by default). The XML verbs other than ``<Gather>`` (``<Speak>``, ...) are
only read, not timed.

Typical use, with the ``vobiz_emulator`` fixture::

    result = place_inbound_call(answer_url, auth_token=vobiz_emulator.auth_token, from_number="+14155550100",
                                to_number="+918000000001", digits="1", hangup_url=hangup_url)
    assert result.answer.status == 200
"""

from __future__ import annotations

import datetime as dt
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import httpx

from vobiz_provider.signatures import signature_headers
from vobiz_provider.testing.emulator.delivery import USER_AGENT

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["InboundCallResult", "InboundStep", "place_inbound_call"]


@dataclass(frozen=True, kw_only=True)
class InboundStep:
    """One request of an inbound call and what the application answered.

    :param kind: ``answer``, ``gather`` or ``hangup``.
    :param url: The URL requested (with its query string and credentials).
    :param fields: The form fields posted.
    :param status: The HTTP status of the answer.
    :param body: The answer's body.
    :param content_type: Its content type, without parameters.
    """

    kind: str
    url: str = field(repr=False)
    fields: dict[str, str] = field(repr=False)
    status: int
    body: str = field(repr=False)
    content_type: str

    @property
    def ok(self) -> bool:
        """Whether the application answered 2xx."""
        return 200 <= self.status < 300


@dataclass(frozen=True, kw_only=True)
class InboundCallResult:
    """What happened on one inbound call.

    :param call_uuid: The call's ``CallUUID``.
    :param steps: Every request, in order (``answer``, then ``gather`` and ``hangup`` when they happened).
    :param spoken: The texts of the ``<Speak>`` verbs heard, in order (answer XML, then the Gather reply).
    """

    call_uuid: str
    steps: list[InboundStep]
    spoken: list[str]

    def step(self, kind: str) -> InboundStep | None:
        """The request of ``kind``, if it was made."""
        return next((each for each in self.steps if each.kind == kind), None)

    @property
    def answer(self) -> InboundStep:
        """The answer-URL request (always made)."""
        return self.steps[0]


def _vobiz_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _spoken(xml: str) -> tuple[list[str], ET.Element | None]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return [], None
    return [each.text or "" for each in root.iter("Speak")], next(root.iter("Gather"), None)


def place_inbound_call(
    answer_url: str,
    *,
    auth_token: str,
    from_number: str,
    to_number: str,
    digits: str | None = None,
    hangup_url: str | None = None,
    duration: int = 12,
    call_uuid: str | None = None,
    sign: Literal["credentials", "always", "never"] = "credentials",
    main_account_token: str | None = None,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> InboundCallResult:
    """Place an inbound call to an application's ``answer_url`` (see the module docstring).

    :param answer_url: The application's answer URL (e.g. ``vobiz-callbacks inbound-url``'s).
    :param auth_token: The account's auth token, which signs the requests (``vobiz_emulator.auth_token``).
    :param from_number: The caller (``From``).
    :param to_number: The number dialled (``To``).
    :param digits: The keys the caller presses at the ``<Gather>``; ``None``: none (the Gather times out).
    :param hangup_url: The application's hangup URL; ``None``: no hangup is posted.
    :param duration: The call's ``Duration`` in the hangup, in seconds.
    :param call_uuid: The ``CallUUID`` (a new UUID by default).
    :param sign: ``credentials`` (sign URLs that carry ``user:password@``, as Vobiz), ``always`` or ``never``.
    :param main_account_token: Also send the ``-MA-`` signatures under this token.
    :param timeout: Seconds per request.
    :param transport: An httpx transport (tests of the emulator itself).
    """
    call_uuid = call_uuid or str(uuid.uuid4())
    start = dt.datetime.now(dt.timezone.utc)
    common = {
        "CallUUID": call_uuid,
        "RequestUUID": call_uuid,
        "From": from_number,
        "To": to_number,
        "Direction": "inbound",
        "CallerName": from_number,
    }
    steps: list[InboundStep] = []
    spoken: list[str] = []

    def post(client: httpx.Client, kind: str, url: str, fields: Mapping[str, str]) -> InboundStep:
        headers = {"User-Agent": USER_AGENT}
        if sign == "always" or (sign == "credentials" and "@" in urlsplit(url).netloc):
            headers.update(signature_headers(url, auth_token, main_account_token=main_account_token))
        response = client.post(url, data=dict(fields), headers=headers)
        step = InboundStep(
            kind=kind,
            url=url,
            fields=dict(fields),
            status=response.status_code,
            body=response.text,
            content_type=response.headers.get("content-type", "").split(";", 1)[0].strip().lower(),
        )
        steps.append(step)
        return step

    with httpx.Client(timeout=timeout, transport=transport) as client:
        answer = post(
            client, "answer", answer_url, {**common, "Event": "StartApp", "CallStatus": "in-progress"}
        )
        gather = None
        if answer.ok:
            texts, gather = _spoken(answer.body)
            spoken.extend(texts)
        if gather is not None and gather.get("action"):
            pressed = digits or ""
            reply = post(
                client,
                "gather",
                gather.get("action", ""),
                {**common, "CallStatus": "in-progress", "InputType": "dtmf", "Digits": pressed},
            )
            if reply.ok:
                spoken.extend(_spoken(reply.body)[0])
        if hangup_url is not None:
            end = start + dt.timedelta(seconds=duration)
            post(
                client,
                "hangup",
                hangup_url,
                {
                    **common,
                    "Event": "Hangup",
                    "CallStatus": "completed",
                    "HangupCause": "NORMAL_CLEARING",
                    "HangupCauseCode": "4000",
                    "HangupCauseName": "Normal Hangup",
                    "HangupSource": "Caller",
                    "Duration": str(duration),
                    "BillDuration": str(duration),
                    "StartTime": _vobiz_time(start),
                    "AnswerTime": _vobiz_time(start),
                    "EndTime": _vobiz_time(end),
                },
            )
    return InboundCallResult(call_uuid=call_uuid, steps=steps, spoken=spoken)
