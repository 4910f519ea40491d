"""What the receiver's steps hand each other about one callback (:mod:`vobiz_provider.receiver.pipeline`):
the request once its token is verified, the checked callback, the stored one, and the refusal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger import CallbackSink, IngestResult
    from vobiz_provider.models.callbacks import VobizCallback

__all__ = ["CallbackRejected", "CheckedCallback", "IncomingCallback", "StoredCallback"]


class CallbackRejected(Exception):
    """A callback is refused; nothing was stored.

    :param status_code: The HTTP status to answer with (4xx, or 503 for retryable failures).
    :param reason: Short explanation, sent in the response and logged. Never contains a token.
    :param retry_after: Seconds for a ``Retry-After`` header (with 503 and 429).
    """

    def __init__(self, status_code: int, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, kw_only=True)
class IncomingCallback:
    """One callback request whose correlation token was verified: what every step reads.

    :param kind: The route kind (``ring``, ``answer``, ``hangup``, ``machine-detection``, ``gather``).
    :param fields: The form (or query) fields as Vobiz sent them.
    :param headers: The request headers (Vobiz's signatures among them).
    :param request_url: The URL of the request, without its query string.
    :param correlation: The task instance the call belongs to.
    :param token: The correlation token as received (the Gather action URL carries it unchanged).
    :param settings: The settings in force for the request.
    """

    kind: str
    fields: Mapping[str, str] = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    request_url: str
    correlation: CorrelationToken
    token: str = field(repr=False)
    settings: VobizSettings = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class StoredCallback(IncomingCallback):
    """A callback that has been committed to the ledger; what :func:`answer_xml` decides from.

    The fields of :class:`IncomingCallback`, and:

    :param callback: The parsed model (:func:`vobiz_provider.models.callbacks.parse_callback`).
    :param result: What the ledger did with it.
    :param ledger: The ledger it was written to (where answer specs are looked up).
    """

    callback: VobizCallback
    result: IngestResult
    ledger: CallbackSink = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class CheckedCallback:
    """A callback whose signature and fields passed (:meth:`CallbackReceiver.check`).

    :param replay_keys: The verified signature's replay keys (empty when unsigned).
    :param timezone: The account timezone its local times are in.
    :param callback: The parsed model.
    """

    replay_keys: tuple[str, ...] = field(repr=False)
    timezone: str
    callback: VobizCallback
