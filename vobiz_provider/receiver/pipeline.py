"""How the receiver handles one callback, independent of the web framework.

In order (the first failing step answers; nothing is ever stored for a refused callback):

1. the correlation token of the URL: missing, malformed, tampered, signed with another secret, expired, or
   issued for another route (a hangup URL's token on ``/callbacks/answer``) → 403;
2. Vobiz's signature (``X-Vobiz-Signature-V2/V3`` and ``-MA-``): present but invalid → 403; absent while
   ``[vobiz] require_signatures`` is on (the default) → 403. It is verified against the *public* URL as it
   was issued, ``callback_base_url + /callbacks/{kind}`` (from ``[vobiz]`` or from the call's connection; the
   Host header is never trusted; only when no base URL is configured, the URL of the request), with and
   without the ``user:password@`` the URL was issued with
   (:func:`~vobiz_provider.correlation.callback_credentials`, under each callback secret). An
   ``Authorization`` header is not checked: it would repeat credentials derived from the URL's own token;
3. fields that name no call (neither ``CallUUID`` nor ``RequestUUID``, ``null`` counting as none) → 422.
   Any other value that does not parse is no refusal (lenient ingest): its field is left empty, logged
   once, and the callback is stored with its raw form if step 4 binds it;
4. the event, its signature's replay keys and the call's new state are written to the ledger in one
   transaction, shared with the callbacks that arrived meanwhile (group commit); only once it is committed
   is the callback answered. In that transaction the ledger first binds the callback to the calls its
   token's try placed (:mod:`vobiz_provider.ledger.binding`): another task's call, a call the try did not
   place → 403; the try's budget spent → 429; the try still recording its calls → retried here for up to
   :data:`PENDING_WAIT` seconds, then 503. A replay key seen within ``[vobiz] nonce_window`` → 403, unless
   the identical callback was stored under it (Vobiz resending a callback whose 200 it missed:
   ``duplicate``). A ledger that cannot be reached gives 503 with ``Retry-After`` so that Vobiz retries;
5. for ``answer`` and ``gather``, the XML the task stored for its try, only while the call is up
   (:mod:`.answer_xml`).

Checks run on the event loop while the signing keys are cached, in a worker thread when connections may
have to be read. Logs name the kind, ``CallUUID``, ``CallStatus`` and ``HangupCause`` and the reason of a
refusal, never a correlation token, an auth token or a signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from vobiz_provider.config import get_settings
from vobiz_provider.correlation import TOKEN_PARAM, CorrelationToken, with_callback_credentials
from vobiz_provider.exceptions import (
    InvalidCorrelationTokenError,
    LedgerUnavailableError,
    MissingCallbackSecretError,
    VobizValidationError,
)
from vobiz_provider.ledger import get_ledger
from vobiz_provider.ledger.callback_columns import log_unreadable
from vobiz_provider.ledger.rows import uuid_text
from vobiz_provider.models.callbacks import read_callback
from vobiz_provider.receiver.answer_xml import EMPTY_XML_RESPONSE, xml_response_for
from vobiz_provider.receiver.incoming import (
    CallbackRejected,
    CheckedCallback,
    IncomingCallback,
    StoredCallback,
)
from vobiz_provider.receiver.signing_keys import DEFAULT_TTL, SigningKeyCache, load_signing_keys
from vobiz_provider.receiver.stored_log import LOG_SUMMARY_INTERVAL, StoredCallbackLog
from vobiz_provider.signatures import verify_signature
from vobiz_provider.untrusted import loggable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
    from contextlib import AbstractAsyncContextManager

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.ledger import CallbackSink, IngestResult, PreparedCallback
    from vobiz_provider.models.callbacks import VobizCallback
    from vobiz_provider.receiver.signing_keys import SigningKeys

__all__ = [
    "CallbackReceiver",
    "CallbackRejected",
    "CheckedCallback",
    "IncomingCallback",
    "StoredCallback",
    "answer_xml",
]

log = logging.getLogger(__name__)

#: ``Retry-After`` seconds sent with a 503.
RETRY_AFTER_SECONDS: Final = 5

#: The kinds whose answer Vobiz reads as XML instructions for the call.
XML_KINDS: Final = frozenset({"answer", "gather"})

#: Seconds before a signing key's cache expiry when the receiver stops checking on the event loop.
KEY_CACHE_MARGIN: Final = 5.0

#: Seconds for which a receiver without fixed settings reuses the ``[vobiz]`` settings it read.
SETTINGS_TTL: Final = 2.0

#: Pauses before storing again a callback whose try is still recording its calls (Vobiz may call back
#: before the task has written down what ``POST /Call/`` answered): about 0.75 s in all, then 503.
PENDING_RETRY_DELAYS: Final = (0.05, 0.1, 0.2, 0.4)
PENDING_WAIT: Final = sum(PENDING_RETRY_DELAYS)

T = TypeVar("T")
_SIGNATURE_HEADER_PREFIX: Final = "x-vobiz-signature"


class _WouldBlock(Exception):
    """Checking the callback needs the signing connections read again: do it in a worker thread."""


def answer_xml(stored: StoredCallback) -> str:
    """The XML instructions returned to Vobiz for an ``answer`` or ``gather`` callback (after it is stored).

    The spoken message or keypad prompt that the task stored for this call and try
    (:func:`~vobiz_provider.receiver.answer_xml.xml_response_for`); an empty ``<Response>`` when it stored
    none, which lets the call go on. Pass another function as ``create_app(xml_responder=...)`` to change it.

    :param stored: The stored callback and the task instance it belongs to.
    """
    xml = xml_response_for(
        stored.kind, stored.ledger, stored.correlation, stored.fields, stored.settings, token=stored.token
    )
    return xml if xml is not None else EMPTY_XML_RESPONSE


_INCOMING_FIELDS: Final = tuple(each.name for each in fields(IncomingCallback))


def _public_url(base_url: str, kind: str) -> str:
    return f"{base_url.rstrip('/')}/callbacks/{kind}"


def _issued_forms(urls: Iterable[str], token: str, settings: VobizSettings) -> list[str]:
    """The URLs a signature may have been made over: each public URL as issued, with the credentials
    derived from the token under each callback secret (a URL issued before a rotation keeps the old one's).

    :func:`~vobiz_provider.signatures.verify_signature` tries each with and without its ``user:password@``.
    """
    secrets = settings.verification_secrets
    return list(dict.fromkeys(with_callback_credentials(url, token, key) for url in urls for key in secrets))


class CallbackReceiver:
    """The request handling behind :func:`create_app`, independent of the web framework.

    :param settings: Fixed settings; when ``None`` they are read with ``get_settings()`` for every request.
    :param ledger: Fixed ledger; when ``None`` the process-wide ``get_ledger(settings.callback_store)``.
    :param signing_keys: Cache of the connections' auth tokens; a new :class:`SigningKeyCache` when ``None``.
    :param xml_responder: Decides the XML answered to ``answer`` and ``gather`` callbacks.
    """

    def __init__(
        self,
        *,
        settings: VobizSettings | None = None,
        ledger: CallbackSink | None = None,
        signing_keys: SigningKeyCache | None = None,
        xml_responder: Callable[[StoredCallback], str] = answer_xml,
    ) -> None:
        # When this receiver owns the key cache, it knows when each connection was last read, and so when a
        # callback can be checked on the event loop without waiting for a secrets backend.
        self._key_loads: dict[str, float] | None = None
        if signing_keys is None:
            loads: dict[str, float] = {}

            def load(conn_id: str) -> SigningKeys:
                loads[conn_id] = time.monotonic()
                return load_signing_keys(conn_id)

            signing_keys = SigningKeyCache(loader=load)
            self._key_loads = loads
        self._settings = settings
        self._settings_cache: tuple[float, VobizSettings] | None = None
        self._ledger = ledger
        self.signing_keys = signing_keys
        self.xml_responder = xml_responder
        self.stored_log = StoredCallbackLog()
        # When the store-outage warning was last logged: once per LOG_SUMMARY_INTERVAL, not once per 503
        # (every refusal is also counted, and summarised, by the app's refusal log).
        self._outage_logged_at: float | None = None

    # -- configuration -------------------------------------------------------------------------------------

    def settings(self) -> VobizSettings:
        """The settings in force for the current request.

        Without fixed settings they are re-read from Airflow's configuration at most every
        ``SETTINGS_TTL`` seconds: reading them costs ~0.3 ms, a fifth of what a callback costs otherwise.
        """
        if self._settings is not None:
            return self._settings
        now = time.monotonic()
        cached = self._settings_cache
        if cached is not None and now - cached[0] < SETTINGS_TTL:
            return cached[1]
        settings = get_settings()
        self._settings_cache = (now, settings)
        return settings

    def keys_cached(self, conn_ids: Iterable[str]) -> bool:
        """Whether the keys of ``conn_ids`` are cached for a while yet: reading them will not block."""
        loads = self._key_loads
        if loads is None:
            return False
        now = time.monotonic()
        return all(
            now - loads.get(conn_id, -DEFAULT_TTL) < DEFAULT_TTL - KEY_CACHE_MARGIN for conn_id in conn_ids
        )

    def ledger(self, settings: VobizSettings) -> CallbackSink:
        """The ledger (it creates or upgrades its schema itself on first use)."""
        return self._ledger if self._ledger is not None else get_ledger(settings.callback_store)

    # -- steps ---------------------------------------------------------------------------------------------

    @staticmethod
    def decode_token(token: str | None, settings: VobizSettings, *, kind: str) -> CorrelationToken:
        """Verify the correlation token of the callback URL for route ``kind`` (403 when missing, not ours,
        expired or issued for another route)."""
        if not token:
            raise CallbackRejected(403, f"missing correlation token (query parameter {TOKEN_PARAM!r})")
        try:
            secrets = settings.verification_secrets
        except MissingCallbackSecretError as err:  # or WeakCallbackSecretError: says how to make one
            log.error("Every Vobiz callback is refused with 503: %s", err)
            raise CallbackRejected(
                503, "the receiver is not configured (callback_secret)", retry_after=RETRY_AFTER_SECONDS
            ) from None
        try:
            return CorrelationToken.decode(token, secrets, kind=kind)
        except InvalidCorrelationTokenError as err:
            # The message names what is wrong, never the token itself.
            raise CallbackRejected(403, f"invalid correlation token: {err}") from None

    def verify_signature(
        self, incoming: IncomingCallback, *, refresh: bool = True
    ) -> tuple[tuple[str, ...], SigningKeys | None]:
        """Check Vobiz's signature headers; returns the replay keys (if signed) and the call's connection's
        keys.

        The tokens are those of ``[vobiz] signature_conn_ids`` and of the correlation token's connection. When
        verification fails, the connections are re-read once (at most once per cache TTL), so that a rotated
        auth token applies at once; with ``refresh=False`` the check raises ``_WouldBlock`` instead (the
        event loop does not read connections).
        """
        kind, headers, correlation, settings = (
            incoming.kind,
            incoming.headers,
            incoming.correlation,
            incoming.settings,
        )
        conn_ids = [*settings.signature_conn_ids, correlation.conn_id]

        def attempt() -> tuple[Any, SigningKeys | None]:
            keys = self.signing_keys.get_many(conn_ids)
            own = next((item for item in keys if item.conn_id == correlation.conn_id), None)
            tokens = [k.auth_token.get_secret_value() for k in keys if k.auth_token is not None]
            main_tokens = [
                k.main_account_token.get_secret_value() for k in keys if k.main_account_token is not None
            ]
            bases = [settings.callback_base_url, own.callback_base_url if own else None]
            public = [_public_url(base, kind) for base in dict.fromkeys(b for b in bases if b)] or [
                incoming.request_url
            ]
            check = None
            for url in public:
                check = verify_signature(headers, url, tokens, main_account_tokens=main_tokens)
                if check.status != "invalid":
                    return check, own
            # Signed over the URL with its user:password@: only now derive those (an HMAC per secret).
            for url in _issued_forms(public, incoming.token, settings):
                check = verify_signature(headers, url, tokens, main_account_tokens=main_tokens)
                if check.status != "invalid":
                    break
            return check, own

        check, own = attempt()
        if check.status == "invalid" and not refresh:
            raise _WouldBlock
        if check.status == "invalid" and self.signing_keys.refresh(conn_ids):
            check, own = attempt()
        if check.status == "invalid":
            raise CallbackRejected(403, "invalid Vobiz signature")
        if check.status == "unsigned":
            if any(name.lower().startswith(_SIGNATURE_HEADER_PREFIX) for name in headers):
                # verify_signature skips a header it has no key for: say so rather than "unsigned".
                log.warning(
                    "Vobiz %s callback is signed but no auth token is readable to verify it (connections %s)",
                    kind,
                    ", ".join(dict.fromkeys(conn_ids)),
                )
                if settings.require_signatures:
                    raise CallbackRejected(403, "signed callback, but no auth token to verify it with")
            elif settings.require_signatures:
                raise CallbackRejected(403, "unsigned callback refused ([vobiz] require_signatures is on)")
            return (), own
        return check.replay_keys, own

    @staticmethod
    def parse(kind: str, fields: Mapping[str, str], timezone: str) -> VobizCallback:
        """Read the fields with the callback model of ``kind``: 422 only when they name no call at all.

        Lenient ingest: a value that does not parse (an unknown time format, a name where a code is
        expected, an absurd number, an escaped control character) leaves its field empty and is logged
        once; the callback is still stored (with its raw form) once its binding is checked.
        """
        if uuid_text(fields.get("CallUUID")) is None and uuid_text(fields.get("RequestUUID")) is None:
            # Not a callback at all: it names no call (a machine detection may say RequestUUID=null).
            raise CallbackRejected(
                422, "invalid callback fields: CallUUID and RequestUUID are missing or empty"
            )
        try:
            callback = read_callback(fields, timezone=timezone, kind=kind)
        except ValueError as err:  # VobizValidationError: no field to blame
            raise CallbackRejected(422, loggable(str(err), limit=1_000)) from None
        if callback.unreadable_fields:
            log_unreadable(kind, fields, callback.unreadable_fields)
        return callback

    def check(self, incoming: IncomingCallback, *, refresh: bool = True) -> CheckedCallback:
        """Verify the signature and validate the fields (blocking: may read the signing connections).

        :raises CallbackRejected: When the callback is refused.
        """
        replay_keys, own_keys = self.verify_signature(incoming, refresh=refresh)
        if own_keys is None and not replay_keys:
            # Unsigned: the timezone still comes from the call's connection when it can be read.
            own_keys = self.signing_keys.get(incoming.correlation.conn_id)
        timezone = (own_keys.timezone if own_keys else None) or "UTC"
        callback = self.parse(incoming.kind, incoming.fields, timezone)
        return CheckedCallback(replay_keys=replay_keys, timezone=timezone, callback=callback)

    def prepare(
        self, incoming: IncomingCallback, checked: CheckedCallback
    ) -> tuple[CallbackSink, PreparedCallback]:
        """The ledger and what it will write for a checked callback (no database access).

        A value too long for its column is no refusal: the column is left empty (lenient ingest).

        :raises CallbackRejected: 422 if the ledger still cannot read the callback (no known case).
        """
        ledger = self.ledger(incoming.settings)
        try:
            prepared = ledger.prepare_callback(
                incoming.kind,
                incoming.fields,
                correlation=incoming.correlation,
                replay_keys=checked.replay_keys,
                timezone=checked.timezone,
                nonce_window=incoming.settings.nonce_window,
                max_callbacks_per_call=incoming.settings.max_callbacks_per_call,
                callback=checked.callback,
            )
        except VobizValidationError as err:  # no known case: values it cannot hold are left empty
            raise CallbackRejected(422, str(err)) from None
        return ledger, prepared

    def finish(
        self,
        incoming: IncomingCallback,
        *,
        ledger: CallbackSink,
        checked: CheckedCallback,
        result: IngestResult,
    ) -> tuple[StoredCallback, str | None]:
        """After the commit: refuse what the ledger refused, log, and build the XML of ``answer``/``gather``.

        Blocking (reads the ledger) only for the XML kinds.
        """
        if result.refusal is not None:
            retry_after = RETRY_AFTER_SECONDS if result.refusal.pending else None
            raise CallbackRejected(result.refusal.status_code, result.refusal.reason, retry_after=retry_after)
        if result.replayed:
            raise CallbackRejected(403, "replayed signature nonce")
        request = {name: getattr(incoming, name) for name in _INCOMING_FIELDS}
        stored = StoredCallback(**request, callback=checked.callback, result=result, ledger=ledger)
        kind = incoming.kind
        self.stored_log.count(
            kind=kind, fields=incoming.fields, correlation=incoming.correlation, duplicate=result.duplicate
        )
        xml = None
        if kind in XML_KINDS:
            try:
                xml = self.xml_responder(stored)
            except LedgerUnavailableError as err:
                log.warning("Vobiz %s callback stored, but its XML could not be read: %s", kind, err)
                raise CallbackRejected(
                    503, "callback store unavailable, retry later", retry_after=RETRY_AFTER_SECONDS
                ) from None
        return stored, xml

    # -- the whole request ---------------------------------------------------------------------------------

    def _store_unavailable(self, kind: str, err: Exception) -> CallbackRejected:
        """The 503 for a store that cannot take the callback; the cause is logged at most once per
        :data:`~vobiz_provider.receiver.stored_log.LOG_SUMMARY_INTERVAL` seconds, since during an outage
        every callback Vobiz sends or retries lands here (30 s of outage was ~4,600 identical lines)."""
        now = time.monotonic()
        last = self._outage_logged_at
        if last is None or now - last >= LOG_SUMMARY_INTERVAL:
            self._outage_logged_at = now
            log.warning(
                "Vobiz %s callback not stored, the callback store is unavailable (logged once every %.0f s "
                "while it lasts; each 503 is counted in the refusal summary): %s",
                kind,
                LOG_SUMMARY_INTERVAL,
                err,
            )
        else:
            log.debug("Vobiz %s callback not stored, the callback store is unavailable: %s", kind, err)
        return CallbackRejected(
            503, "callback store unavailable, retry later", retry_after=RETRY_AFTER_SECONDS
        )

    async def ahandle(self, incoming: IncomingCallback) -> tuple[StoredCallback, str | None]:
        """Verify, validate and store one callback; for ``answer``/``gather``, also the XML to answer with.

        Signature and field checks run on the event loop while the signing keys are cached, in a worker
        thread when they may have to be read (or re-read after a failed verification). The callback then
        waits, without holding a thread, for the shared transaction that stores it to commit. Only
        ``answer``/``gather`` callbacks go back to a thread to read the ledger.

        :param incoming: The request.
        :raises CallbackRejected: When the callback is refused (nothing stored) or the ledger failed.
        """

        def check_and_prepare(refresh: bool = True) -> tuple[CheckedCallback, CallbackSink, PreparedCallback]:
            checked = self.check(incoming, refresh=refresh)
            return checked, *self.prepare(incoming, checked)

        prepared_inline: tuple[CheckedCallback, CallbackSink, PreparedCallback] | None = None
        if self.keys_cached([*incoming.settings.signature_conn_ids, incoming.correlation.conn_id]):
            # Every key is cached: checking is CPU work only, cheaper here than a round trip to a thread.
            with contextlib.suppress(_WouldBlock):
                prepared_inline = check_and_prepare(refresh=False)
        if prepared_inline is None:
            prepared_inline = await _in_thread(check_and_prepare)
        checked, ledger, prepared = prepared_inline
        try:
            result = await ledger.asubmit_callback(prepared)
            for delay in PENDING_RETRY_DELAYS:
                if result.refusal is None or not result.refusal.pending:
                    break
                # Its task has not yet written down the calls Vobiz accepted: give it a moment.
                await asyncio.sleep(delay)
                result = await ledger.asubmit_callback(prepared)
        except LedgerUnavailableError as err:
            raise self._store_unavailable(incoming.kind, err) from None

        def finish() -> tuple[StoredCallback, str | None]:
            return self.finish(incoming, ledger=ledger, checked=checked, result=result)

        if incoming.kind in XML_KINDS:
            return await _in_thread(finish)
        return finish()


async def _in_thread(function: Callable[[], T]) -> T:
    """Run blocking ``function`` in the loop's executor; on cancellation it is abandoned, not stopped."""
    return await asyncio.get_running_loop().run_in_executor(None, function)


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` for at most ``seconds`` (:class:`TimeoutError` after that)."""
    async with until(asyncio.get_running_loop().time() + seconds):
        return await awaitable


def until(deadline: float) -> AbstractAsyncContextManager[object]:
    """A scope that ends with :class:`TimeoutError` at ``deadline`` (the running loop's ``time()``)."""
    if sys.version_info >= (3, 11):
        return asyncio.timeout_at(deadline)
    return _until_anyio(deadline)  # pragma: no cover - Python 3.10


@contextlib.asynccontextmanager
async def _until_anyio(deadline: float) -> AsyncIterator[None]:  # pragma: no cover - Python 3.10
    with anyio.fail_after(deadline - asyncio.get_running_loop().time()):
        yield
