"""The VobizXML the receiver answers when Vobiz fetches a call's answer URL or posts its keypad input.

A task that placed a call with ``message=``/``gather=`` stored an
:class:`~vobiz_provider.models.answer.AnswerSpec` for its try (see
:class:`~vobiz_provider.calls.placement.CallPlacer`). When Vobiz fetches ``{base}/callbacks/answer?t=<token>``
the receiver verifies the token, stores the callback (bound to a call of that try), and answers
:func:`answer_response_for`: a ``<Speak>``, then an optional ``<Gather>`` whose action is the receiver's
``gather`` route, carrying the token exactly as received (never signed again, so a token accepted under a
fallback secret does not come back signed with the current one). The spec is served only while the call
named by the request is one of the try's calls and is still up. The digits Vobiz posts there are stored on the
call record like any other callback, and :func:`gather_response_for` gives the XML to answer with: a short
confirmation and ``<Hangup/>``, or, when the caller pressed nothing (Vobiz posts an empty ``Digits`` on
timeout and carries on with the verbs after the ``<Gather>``), an empty ``<Response/>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from vobiz_provider.correlation import callback_url
from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models.answer import render_answer, render_gather_reply

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger import AnswerEntry, CallbackSink

__all__ = ["EMPTY_XML_RESPONSE", "answer_response_for", "gather_response_for", "xml_response_for"]

#: The XML that lets the call go on without new instructions.
EMPTY_XML_RESPONSE: Final = "<Response></Response>"


def _entry_for(
    ledger: CallbackSink, correlation: CorrelationToken, fields: Mapping[str, str]
) -> AnswerEntry | None:
    return ledger.load_answer_for_call(
        correlation, call_uuid=fields.get("CallUUID"), request_uuid=fields.get("RequestUUID")
    )


def answer_response_for(
    ledger: CallbackSink,
    correlation: CorrelationToken,
    settings: VobizSettings,
    *,
    fields: Mapping[str, str],
    token: str,
    base_url: str | None = None,
) -> str | None:
    """The XML to serve when Vobiz fetches this call's answer URL, or ``None`` if no spec is served.

    The Gather action is the receiver's ``gather`` route under the base URL the call was placed with (else
    ``base_url``, else ``[vobiz] callback_base_url``), carrying the same correlation token.

    :param ledger: The call ledger.
    :param correlation: The verified correlation token of the request.
    :param settings: The ``[vobiz]`` settings.
    :param fields: The request's fields (``CallUUID`` names the call, which must be up).
    :param token: The correlation token as received, for the action URL.
    :param base_url: Receiver root to use when the stored spec has none.
    """
    entry = _entry_for(ledger, correlation, fields)
    if entry is None:
        return None
    action = None
    if entry.spec.gather is not None:
        base = entry.callback_base_url or base_url or settings.callback_base_url
        if base is None:
            raise VobizValidationError(
                "cannot point the keypad prompt at the receiver: no callback_base_url was stored with the "
                "spoken message and [vobiz] callback_base_url is not set"
            )
        # With credentials, as the task's own URLs, so that Vobiz signs the action too.
        action = callback_url(base, "gather", token, secret=settings.signing_secret)
    return render_answer(entry.spec, gather_action_url=action)


def gather_response_for(
    ledger: CallbackSink,
    correlation: CorrelationToken,
    fields: Mapping[str, str],
    settings: VobizSettings | None = None,
    *,
    token: str | None = None,
) -> str | None:
    """The XML to answer a ``<Gather>`` action post with, or ``None`` if no spec is served for the call.

    The digits themselves are stored on the call record by the receiver, like any other callback. When
    they connect the caller to another number (``connect``), the ``<Dial>`` (and ``<Record>``) callbacks
    point at the receiver's ``dial`` and ``record`` routes with the same token, so the B leg's outcome and
    the recording's URL reach the call record.

    :param ledger: The call ledger.
    :param correlation: The verified correlation token of the request.
    :param fields: The posted form fields (``Digits`` is read; ``CallUUID`` names the call, which must be up).
    :param settings: The ``[vobiz]`` settings (needed to connect the caller).
    :param token: The correlation token as received (needed to connect the caller).
    """
    entry = _entry_for(ledger, correlation, fields)
    if entry is None:
        return None
    digits = fields.get("Digits")
    gather = entry.spec.gather
    urls: dict[str, str] = {}
    if gather is not None and (digits or "").strip() in gather.connect:
        base = entry.callback_base_url or (settings.callback_base_url if settings else None)
        if base is None or token is None or settings is None:
            raise VobizValidationError(
                "cannot point the <Dial> callbacks at the receiver: no callback_base_url"
            )
        for kind in ("dial", "record"):
            urls[kind] = callback_url(base, kind, token, secret=settings.signing_secret)
    return render_gather_reply(
        entry.spec, digits=digits, dial_callback_url=urls.get("dial"), record_callback_url=urls.get("record")
    )


def xml_response_for(
    kind: str,
    ledger: CallbackSink,
    correlation: CorrelationToken,
    fields: Mapping[str, str],
    settings: VobizSettings,
    *,
    token: str,
) -> str | None:
    """The XML for an ``answer`` or ``gather`` request, else ``None``.

    ``None`` also when no spec is served for the call (the caller then answers :data:`EMPTY_XML_RESPONSE`).

    :param kind: The callback route (``answer``, ``gather``, ...).
    :param ledger: The call ledger.
    :param correlation: The verified correlation token of the request.
    :param fields: The posted form fields.
    :param settings: The ``[vobiz]`` settings.
    :param token: The correlation token as received.
    """
    if kind == "answer":
        return answer_response_for(ledger, correlation, settings, fields=fields, token=token)
    if kind == "gather":
        return gather_response_for(ledger, correlation, fields, settings, token=token)
    return None
