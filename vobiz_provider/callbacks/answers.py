"""Storing and serving the answer specs of calls (moving to ``calls.placement`` and ``receiver``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models.answer import render_answer, render_gather_reply

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.models.answer import AnswerSpec


def publish_answer(
    store: CallLedger,
    correlation: CorrelationToken,
    spec: AnswerSpec,
    *,
    callback_base_url: str,
    token: str,
) -> str:
    """Store ``spec`` for this call and return the answer URL to give Vobiz.

    Call it before ``POST /Call/``: Vobiz may fetch the answer URL as soon as the callee picks up.

    :param store: The callback store the receiver reads.
    :param correlation: The correlation token of the call (its try is part of the key).
    :param spec: What the call says.
    :param callback_base_url: The receiver root the call's callbacks go to (the Gather action goes there too).
    :param token: ``correlation`` encoded with ``[vobiz] callback_secret``.
    """
    from vobiz_provider.correlation import callback_url

    url = callback_url(callback_base_url, "answer", token)  # checks the base URL before anything is stored
    store.save_answer(correlation, spec, callback_base_url=callback_base_url)
    return url


def answer_response_for(
    store: CallLedger,
    correlation: CorrelationToken,
    settings: VobizSettings,
    *,
    base_url: str | None = None,
) -> str | None:
    """The XML to serve when Vobiz fetches this call's answer URL, or ``None`` if no spec is stored.

    The Gather action is the receiver's ``gather`` route under the base URL the call was placed with (else
    ``base_url``, else ``[vobiz] callback_base_url``), carrying the same correlation token.

    :param store: The callback store.
    :param correlation: The verified correlation token of the request.
    :param settings: The ``[vobiz]`` settings (the secret re-signs the token for the action URL).
    :param base_url: Receiver root to use when the stored spec has none.
    """
    entry = store.load_answer_entry(correlation)
    if entry is None:
        return None
    action = None
    if entry.spec.gather is not None:
        from vobiz_provider.correlation import callback_url

        base = entry.callback_base_url or base_url or settings.callback_base_url
        if base is None:
            raise VobizValidationError(
                "cannot point the keypad prompt at the receiver: no callback_base_url was stored with the "
                "spoken message and [vobiz] callback_base_url is not set"
            )
        action = callback_url(base, "gather", correlation.encode(settings.signing_secret))
    return render_answer(entry.spec, gather_action_url=action)


def gather_response_for(
    store: CallLedger,
    correlation: CorrelationToken,
    fields: Mapping[str, str],
    settings: VobizSettings,
) -> str | None:
    """The XML to answer a ``<Gather>`` action post with, or ``None`` if no spec is stored for the call.

    The digits themselves are stored on the call record by the receiver (``record_callback("gather")``).

    :param store: The callback store.
    :param correlation: The verified correlation token of the request.
    :param fields: The posted form fields (``Digits`` is read).
    :param settings: The ``[vobiz]`` settings (unused today; kept so both responders look alike).
    """
    del settings
    entry = store.load_answer_entry(correlation)
    if entry is None:
        return None
    return render_gather_reply(entry.spec, digits=fields.get("Digits"))


def xml_response_for(
    kind: str,
    store: CallLedger,
    correlation: CorrelationToken,
    fields: Mapping[str, str],
    settings: VobizSettings,
) -> str | None:
    """The receiver's one entry point: the XML for an ``answer`` or ``gather`` request, else ``None``.

    ``None`` also when no spec is stored for the call (the caller then answers its default, an empty
    ``<Response>``).

    :param kind: The callback route (``answer``, ``gather``, ...).
    :param store: The callback store.
    :param correlation: The verified correlation token of the request.
    :param fields: The posted form fields.
    :param settings: The ``[vobiz]`` settings.
    """
    if kind == "answer":
        return answer_response_for(store, correlation, settings)
    if kind == "gather":
        return gather_response_for(store, correlation, fields, settings)
    return None
