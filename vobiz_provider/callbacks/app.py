"""The callback receiver: a FastAPI app that stores Vobiz's ring/answer/hangup/... callbacks durably.

The same app runs in two places:

* on the Airflow API server, mounted at ``/vobiz`` by :class:`~vobiz_provider.plugins.vobiz.VobizPlugin`;
* standalone, under ``/vobiz`` as well, with ``vobiz-callbacks serve`` (:mod:`vobiz_provider.callbacks.cli`),
  for deployments that expose only the receiver to the internet.

So ``callback_base_url`` is ``http(s)://host[:port]/vobiz`` in both cases. Routes, relative to the mount
point:

``POST|GET /callbacks/{kind}?t=<correlation token>``
    ``kind`` is one of ``ring``, ``answer``, ``hangup``, ``machine-detection``, ``gather``. The fields come
    form-encoded in the body (POST) or in the query string (GET, ``t`` excluded).
``GET /health``
    Liveness only: no secret, no store access.

How a callback is handled, in order (the first failing step answers):

1. unknown ``kind`` → 404;
2. body (or query string) larger than ``[vobiz] max_body_bytes``, by ``Content-Length`` or counted while
   streaming → 413;
3. missing, malformed, tampered correlation token, or one signed with another secret → 403;
4. body that is not ``application/x-www-form-urlencoded`` UTF-8 → 415 / 400;
5. Vobiz signature (``X-Vobiz-Signature-V2/V3`` and ``-MA-``): present but invalid → 403; absent while
   ``[vobiz] require_signatures`` is on → 403. It is verified against the *public* URL,
   ``callback_base_url + /callbacks/{kind}`` (from ``[vobiz]`` or from the call's connection; the Host header
   is never trusted), and only when no base URL is configured against the URL of the request;
6. fields that do not make a valid callback (``CallUUID`` missing...) → 422 naming the fields;
7. the event, its signature nonce and the call's new state are written to the store in one transaction;
   only once it is committed does the receiver answer 200 (``stored`` or ``duplicate``; for ``answer`` and
   ``gather``, the XML of :func:`answer_xml`). A nonce seen within ``[vobiz] nonce_window`` seconds → 403,
   unless the identical callback was stored under it (Vobiz resending a callback whose 200 it missed: 200
   ``duplicate``). A store that cannot be reached, or any
   unexpected error, gives 503 with ``Retry-After`` so that Vobiz retries.

Nothing is ever stored for a refused callback, and no step answers 500. The work that touches the secrets
backends or the store runs in a worker thread, under a deadline that keeps the answer inside Vobiz's 3-second
budget. Logs name the kind, ``CallUUID``, ``CallStatus`` and ``HangupCause`` and the reason of a refusal,
never a correlation token, an auth token or a signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import parse_qsl

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from vobiz_provider.correlation import CALLBACK_KINDS, TOKEN_PARAM

if TYPE_CHECKING:
    from vobiz_provider.callbacks.tokens import SigningKeyCache, SigningKeys
    from vobiz_provider.config import VobizSettings
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger import CallLedger, IngestResult, PreparedCallback
    from vobiz_provider.models.callbacks import VobizCallback

log = logging.getLogger(__name__)

#: Where the app is mounted, on the Airflow API server (plugin) and by ``vobiz-callbacks serve`` alike.
MOUNT_PATH: Final = "/vobiz"

#: Seconds the receiver allows itself to verify and store a callback before answering 503 (Vobiz waits 3 s).
RESPONSE_DEADLINE: Final = 2.5

#: ``Retry-After`` seconds sent with a 503.
RETRY_AFTER_SECONDS: Final = 5

#: Most fields a callback may carry (Vobiz sends about 30).
MAX_FIELDS: Final = 200

#: The kinds whose answer Vobiz reads as XML instructions for the call.
XML_KINDS: Final = frozenset({"answer", "gather"})

#: The XML that lets the call go on without new instructions.
EMPTY_XML_RESPONSE: Final = "<Response></Response>"

#: Seconds before a signing key's cache expiry when the receiver stops checking on the event loop.
KEY_CACHE_MARGIN: Final = 5.0

#: Seconds between two INFO summaries of the callbacks stored (each one is logged at DEBUG).
LOG_SUMMARY_INTERVAL: Final = 10.0

_FORM_TYPES: Final = ("", "application/x-www-form-urlencoded")
_STORED_BODY: Final = b'{"status":"stored"}'
_DUPLICATE_BODY: Final = b'{"status":"duplicate"}'

T = TypeVar("T")
_SIGNATURE_HEADER_PREFIX: Final = "x-vobiz-signature"


class _WouldBlock(Exception):
    """Checking the callback needs the signing connections read again: do it in a worker thread."""


class CallbackRejected(Exception):
    """A callback is refused; nothing was stored.

    :param status_code: The HTTP status to answer with (4xx, or 503 for retryable failures).
    :param reason: Short explanation, sent in the response and logged. Never contains a token.
    :param retry_after: Seconds for a ``Retry-After`` header (503 only).
    """

    def __init__(self, status_code: int, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, kw_only=True)
class StoredCallback:
    """A callback that has been committed to the store; what :func:`answer_xml` decides from.

    :param kind: The route kind (``answer`` or ``gather`` when XML is expected).
    :param fields: The form fields as Vobiz sent them.
    :param callback: The parsed model (:func:`vobiz_provider.models.callbacks.parse_callback`).
    :param correlation: The task instance the call belongs to.
    :param result: What the store did with it.
    :param store: The store it was written to (where answer specs are looked up).
    :param settings: The settings in force for the request.
    """

    kind: str
    fields: Mapping[str, str] = field(repr=False)
    callback: VobizCallback
    correlation: CorrelationToken
    result: IngestResult
    store: CallLedger = field(repr=False)
    settings: VobizSettings = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class CheckedCallback:
    """A callback whose signature and fields passed (:meth:`CallbackReceiver.check`).

    :param nonce: The verified signature's nonce (``None`` when unsigned).
    :param timezone: The account timezone its local times are in.
    :param callback: The parsed model.
    """

    nonce: str | None = field(repr=False)
    timezone: str
    callback: VobizCallback


#: Decides the XML answered to an ``answer`` or ``gather`` callback (after it is stored).
XmlResponder = Callable[[StoredCallback], str]


def answer_xml(stored: StoredCallback) -> str:
    """The XML instructions returned to Vobiz for an ``answer`` or ``gather`` callback (after it is stored).

    The spoken message or keypad prompt that the task stored for this call and try
    (:func:`vobiz_provider.callbacks.answers.xml_response_for`); an empty ``<Response>`` when it stored none,
    which lets the call go on. Pass another function as ``create_app(xml_responder=...)`` to change it.

    :param stored: The stored callback and the task instance it belongs to.
    """
    from vobiz_provider.callbacks.answers import xml_response_for

    xml = xml_response_for(stored.kind, stored.store, stored.correlation, stored.fields, stored.settings)
    return xml if xml is not None else EMPTY_XML_RESPONSE


def _loggable(value: str | None) -> str | None:
    """A callback field fit for a log line: printable characters only, at most 100 of them."""
    if value is None:
        return None
    return "".join(char if char.isprintable() else "?" for char in value[:100])


def _public_url(base_url: str, kind: str) -> str:
    return f"{base_url.rstrip('/')}/callbacks/{kind}"


def _parse_form(raw: bytes, *, what: str) -> dict[str, str]:
    try:
        # Empty segments ("a=1&", "&&") carry nothing: tolerate them, but not a field without "=".
        text = "&".join(part for part in raw.decode("utf-8").split("&") if part)
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=MAX_FIELDS
        )
    except UnicodeDecodeError:
        raise CallbackRejected(400, f"{what} is not valid UTF-8") from None
    except ValueError as err:
        message = str(err)
        if "max_num_fields" in message or "Max number of fields" in message:
            raise CallbackRejected(400, f"{what} has more than {MAX_FIELDS} fields") from None
        raise CallbackRejected(400, f"{what} is not a valid form encoding") from None
    return dict(pairs)


#: Seconds for which a receiver without fixed settings reuses the ``[vobiz]`` settings it read.
SETTINGS_TTL = 2.0


class CallbackReceiver:
    """The request handling behind :func:`create_app`, independent of the web framework.

    :param settings: Fixed settings; when ``None`` they are read with ``get_settings()`` for every request.
    :param store: Fixed store; when ``None`` the process-wide ``get_ledger(settings.callback_store)``.
    :param signing_keys: Cache of the connections' auth tokens; a new :class:`SigningKeyCache` when ``None``.
    :param xml_responder: Decides the XML answered to ``answer`` and ``gather`` callbacks.
    """

    def __init__(
        self,
        *,
        settings: VobizSettings | None = None,
        store: CallLedger | None = None,
        signing_keys: SigningKeyCache | None = None,
        xml_responder: XmlResponder = answer_xml,
    ) -> None:
        # When this receiver owns the key cache, it knows when each connection was last read, and so when a
        # callback can be checked on the event loop without waiting for a secrets backend.
        self._key_loads: dict[str, float] | None = None
        if signing_keys is None:
            from vobiz_provider.callbacks import tokens

            loads: dict[str, float] = {}

            def load(conn_id: str) -> SigningKeys:
                loads[conn_id] = time.monotonic()
                return tokens.load_signing_keys(conn_id)

            signing_keys = tokens.SigningKeyCache(loader=load)
            self._key_loads = loads
        self._settings = settings
        self._settings_cache: tuple[float, VobizSettings] | None = None
        self._store = store
        self.signing_keys = signing_keys
        self.xml_responder = xml_responder
        self.stored_log = StoredCallbackLog()

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
        from vobiz_provider.config import get_settings

        settings = get_settings()
        self._settings_cache = (now, settings)
        return settings

    def keys_cached(self, conn_ids: Iterable[str]) -> bool:
        """Whether the keys of ``conn_ids`` are cached for a while yet: reading them will not block."""
        from vobiz_provider.callbacks.tokens import DEFAULT_TTL

        loads = self._key_loads
        if loads is None:
            return False
        now = time.monotonic()
        return all(
            now - loads.get(conn_id, -DEFAULT_TTL) < DEFAULT_TTL - KEY_CACHE_MARGIN for conn_id in conn_ids
        )

    def store(self, settings: VobizSettings) -> CallLedger:
        """The store (its schema is created or upgraded by the store itself on first use)."""
        from vobiz_provider.ledger import get_ledger

        return self._store if self._store is not None else get_ledger(settings.callback_store)

    # -- steps ---------------------------------------------------------------------------------------------

    @staticmethod
    def decode_token(token: str | None, settings: VobizSettings) -> CorrelationToken:
        """Verify the correlation token of the callback URL (403 when missing or not ours)."""
        from vobiz_provider.config import MissingCallbackSecretError
        from vobiz_provider.correlation import CorrelationToken, InvalidCorrelationTokenError

        if not token:
            raise CallbackRejected(403, f"missing correlation token (query parameter {TOKEN_PARAM!r})")
        try:
            secrets = settings.verification_secrets
        except MissingCallbackSecretError:
            log.error("[vobiz] callback_secret is not set: every Vobiz callback is refused with 503")
            raise CallbackRejected(
                503, "the receiver is not configured (callback_secret)", retry_after=RETRY_AFTER_SECONDS
            ) from None
        try:
            return CorrelationToken.decode(token, secrets)
        except InvalidCorrelationTokenError as err:
            # The message names what is wrong, never the token itself.
            raise CallbackRejected(403, f"invalid correlation token: {err}") from None

    def verify_signature(
        self,
        *,
        kind: str,
        headers: Mapping[str, str],
        request_url: str,
        correlation: CorrelationToken,
        settings: VobizSettings,
        refresh: bool = True,
    ) -> tuple[str | None, SigningKeys | None]:
        """Check Vobiz's signature headers; returns the nonce (if signed) and the call's connection keys.

        The tokens are those of ``[vobiz] signature_conn_ids`` and of the correlation token's connection. When
        verification fails, the connections are re-read once (at most once per cache TTL), so that a rotated
        auth token applies at once; with ``refresh=False`` the check raises ``_WouldBlock`` instead (the
        event loop does not read connections).
        """
        from vobiz_provider.signatures import verify_signature

        conn_ids = [*settings.signature_conn_ids, correlation.conn_id]

        def attempt() -> tuple[Any, SigningKeys | None]:
            keys = self.signing_keys.get_many(conn_ids)
            own = next((item for item in keys if item.conn_id == correlation.conn_id), None)
            tokens = [k.auth_token.get_secret_value() for k in keys if k.auth_token is not None]
            main_tokens = [
                k.main_account_token.get_secret_value() for k in keys if k.main_account_token is not None
            ]
            bases = [settings.callback_base_url, own.callback_base_url if own else None]
            urls = [_public_url(base, kind) for base in dict.fromkeys(b for b in bases if b)] or [request_url]
            check = None
            for url in urls:
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
            return None, own
        return check.nonce, own

    @staticmethod
    def parse(kind: str, fields: Mapping[str, str], timezone: str) -> VobizCallback:
        """Validate the fields with the callback model of ``kind`` (422 naming the bad fields)."""
        from vobiz_provider.models.callbacks import parse_callback

        if not (fields.get("CallUUID") or "").strip():
            raise CallbackRejected(422, "invalid callback fields: CallUUID is missing or empty")
        try:
            return parse_callback(fields, timezone=timezone, kind=kind)
        except ValueError as err:  # VobizValidationError: its message names every bad field
            raise CallbackRejected(422, str(err)) from None

    def check(
        self,
        *,
        kind: str,
        fields: Mapping[str, str],
        headers: Mapping[str, str],
        request_url: str,
        correlation: CorrelationToken,
        settings: VobizSettings,
        refresh: bool = True,
    ) -> CheckedCallback:
        """Verify the signature and validate the fields (blocking: may read the signing connections).

        :raises CallbackRejected: When the callback is refused.
        """
        nonce, own_keys = self.verify_signature(
            kind=kind,
            headers=headers,
            request_url=request_url,
            correlation=correlation,
            settings=settings,
            refresh=refresh,
        )
        if own_keys is None and not nonce:
            # Unsigned: the timezone still comes from the call's connection when it can be read.
            own_keys = self.signing_keys.get(correlation.conn_id)
        timezone = (own_keys.timezone if own_keys else None) or "UTC"
        return CheckedCallback(nonce=nonce, timezone=timezone, callback=self.parse(kind, fields, timezone))

    def prepare(
        self,
        *,
        kind: str,
        fields: Mapping[str, str],
        correlation: CorrelationToken,
        settings: VobizSettings,
        checked: CheckedCallback,
    ) -> tuple[CallLedger, PreparedCallback]:
        """The store and what it will write for a checked callback (no database access).

        :raises CallbackRejected: 422 when a value is too long for the store, naming the field.
        """
        from vobiz_provider.exceptions import VobizValidationError

        store = self.store(settings)
        try:
            prepared = store.prepare_callback(
                kind,
                fields,
                correlation=correlation,
                nonce=checked.nonce,
                timezone=checked.timezone,
                nonce_window=settings.nonce_window,
                callback=checked.callback,
            )
        except VobizValidationError as err:  # a value the store cannot hold (too long), refused by name
            raise CallbackRejected(422, str(err)) from None
        return store, prepared

    def finish(
        self,
        *,
        kind: str,
        fields: Mapping[str, str],
        correlation: CorrelationToken,
        settings: VobizSettings,
        store: CallLedger,
        checked: CheckedCallback,
        result: IngestResult,
    ) -> tuple[StoredCallback, str | None]:
        """After the commit: refuse a replay, log, and build the XML of ``answer``/``gather`` callbacks.

        Blocking (reads the ledger) only for the XML kinds.
        """
        from vobiz_provider.exceptions import LedgerUnavailableError

        if result.replayed:
            raise CallbackRejected(403, "replayed signature nonce")
        stored = StoredCallback(
            kind=kind,
            fields=fields,
            callback=checked.callback,
            correlation=correlation,
            result=result,
            store=store,
            settings=settings,
        )
        self.stored_log.record(kind=kind, fields=fields, correlation=correlation, duplicate=result.duplicate)
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

    async def ahandle(
        self,
        *,
        kind: str,
        fields: Mapping[str, str],
        headers: Mapping[str, str],
        request_url: str,
        correlation: CorrelationToken,
        settings: VobizSettings,
    ) -> tuple[StoredCallback, str | None]:
        """:meth:`handle` for the event loop: the store's group-commit writer stores the callback.

        Signature and field checks run on the event loop while the signing keys are cached, in a worker
        thread when they may have to be read (or re-read after a failed verification). The callback then
        waits, without holding a thread, for the shared transaction that stores it to commit. Only
        ``answer``/``gather`` callbacks and replays go back to a thread to read the store.
        """
        from vobiz_provider.exceptions import LedgerUnavailableError

        request = {"kind": kind, "fields": fields, "correlation": correlation, "settings": settings}

        def check_and_prepare(
            refresh: bool = True,
        ) -> tuple[CheckedCallback, CallLedger, PreparedCallback]:
            checked = self.check(headers=headers, request_url=request_url, refresh=refresh, **request)
            return checked, *self.prepare(checked=checked, **request)

        prepared_inline = None
        if self.keys_cached([*settings.signature_conn_ids, correlation.conn_id]):
            # Every key is cached: checking is CPU work only, cheaper here than a round trip to a thread.
            with contextlib.suppress(_WouldBlock):
                prepared_inline = check_and_prepare(refresh=False)
        checked, store, prepared = prepared_inline or await _in_thread(check_and_prepare)
        try:
            result = await asyncio.wrap_future(store.submit_callback(prepared))
        except LedgerUnavailableError as err:
            raise _store_unavailable(kind, err) from None

        def finish() -> tuple[StoredCallback, str | None]:
            return self.finish(store=store, checked=checked, result=result, **request)

        if kind in XML_KINDS:
            return await _in_thread(finish)
        return finish()


class StoredCallbackLog:
    """Logs the callbacks stored: each at DEBUG, and at most one INFO line every ``interval`` seconds.

    At a few callbacks a minute the INFO line is the callback's own (kind, ``CallUUID``, ``CallStatus``,
    ``HangupCause``, task and try), as if every callback were logged at INFO. Under load it is a summary of
    the callbacks stored since the last INFO line, by kind: formatting a log record through Airflow's
    logging costs a receiver several times what storing the callback in a shared transaction does.

    :param interval: Seconds between two INFO lines.
    """

    def __init__(self, *, interval: float = LOG_SUMMARY_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, bool]] = Counter()
        self._since: float | None = None

    def record(
        self, *, kind: str, fields: Mapping[str, str], correlation: CorrelationToken, duplicate: bool
    ) -> None:
        """Count (and maybe log) one callback the store answered for.

        :param kind: The callback kind.
        :param fields: Its fields.
        :param correlation: The task instance it belongs to.
        :param duplicate: Whether it had been stored before.
        """
        now = time.monotonic()
        with self._lock:
            self._counts[(kind, duplicate)] += 1
            due = self._since is None or now - self._since >= self.interval
            if due:
                counts, self._counts = self._counts, Counter()
                since, self._since = self._since, now
        if not due and not log.isEnabledFor(logging.DEBUG):
            return
        if not due or sum(counts.values()) == 1:
            log.log(
                logging.INFO if due else logging.DEBUG,
                "Vobiz %s callback %s: CallUUID=%s CallStatus=%s HangupCause=%s (task %s, try %s)",
                kind,
                "duplicate" if duplicate else "stored",
                _loggable(fields.get("CallUUID")),
                _loggable(fields.get("CallStatus")),
                _loggable(fields.get("HangupCause") or fields.get("HangupCauseName")),
                correlation.ti_key,
                correlation.try_number,
            )
            return
        by_kind = Counter[str]()
        for (each, _), count in counts.items():
            by_kind[each] += count
        log.info(
            "Vobiz callbacks in the last %.0f s: %d stored, %d duplicate (%s)",
            now - since if since is not None else 0.0,
            sum(count for (_, dup), count in counts.items() if not dup),
            sum(count for (_, dup), count in counts.items() if dup),
            ", ".join(f"{each} {count}" for each, count in sorted(by_kind.items())),
        )


async def _in_thread(function: Callable[[], T]) -> T:
    """Run blocking ``function`` in the loop's executor; on cancellation it is abandoned, not stopped."""
    return await asyncio.get_running_loop().run_in_executor(None, function)


async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` for at most ``seconds`` (:class:`TimeoutError` after that)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    with anyio.fail_after(seconds):  # pragma: no cover - Python 3.10
        return await awaitable


def _store_unavailable(kind: str, err: Exception) -> CallbackRejected:
    log.warning("Vobiz %s callback not stored, the callback store is unavailable: %s", kind, err)
    return CallbackRejected(503, "callback store unavailable, retry later", retry_after=RETRY_AFTER_SECONDS)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise CallbackRejected(400, "invalid Content-Length header") from None
        if size > limit:
            raise CallbackRejected(413, f"callback body larger than {limit} bytes")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise CallbackRejected(413, f"callback body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _request_fields(request: Request, body: bytes) -> dict[str, str]:
    if request.method == "GET":
        query = request.scope.get("query_string", b"")
        fields = _parse_form(query, what="query string")
        fields.pop(TOKEN_PARAM, None)
        return fields
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in _FORM_TYPES:
        raise CallbackRejected(
            415, f"unsupported content type {content_type!r}; expected application/x-www-form-urlencoded"
        )
    return _parse_form(body, what="form body")


def create_app(
    *,
    settings: VobizSettings | None = None,
    store: CallLedger | None = None,
    signing_keys: SigningKeyCache | None = None,
    xml_responder: XmlResponder = answer_xml,
    response_deadline: float = RESPONSE_DEADLINE,
) -> FastAPI:
    """Build the receiver app (no settings read, no store opened, until a callback arrives).

    :param settings: Fixed settings; by default ``[vobiz]`` is read for every request.
    :param store: Fixed store; by default the process-wide store of ``[vobiz] callback_store``.
    :param signing_keys: Cache of the connections' auth tokens (a fresh one by default).
    :param xml_responder: Decides the XML answered to ``answer``/``gather`` callbacks (:func:`answer_xml`).
    :param response_deadline: Seconds allowed for verifying and storing before answering 503.
    """
    receiver = CallbackReceiver(
        settings=settings, store=store, signing_keys=signing_keys, xml_responder=xml_responder
    )
    # Airflow mounts plugin apps without authentication: publish no docs or schema.
    app = FastAPI(title="Vobiz callback receiver", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.receiver = receiver

    def refuse(kind: str, err: CallbackRejected) -> Response:
        # ``kind`` comes from the URL: log it only once it is known to be one of ours.
        shown = kind if kind in CALLBACK_KINDS else "(unknown kind)"
        log.warning("Vobiz %s callback refused with %s: %s", shown, err.status_code, err.reason)
        headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
        return JSONResponse({"detail": err.reason}, status_code=err.status_code, headers=headers)

    async def receive(kind: str, request: Request) -> Response:
        try:
            if kind not in CALLBACK_KINDS:
                raise CallbackRejected(
                    404, f"unknown callback kind {kind!r}; expected one of {', '.join(CALLBACK_KINDS)}"
                )
            current = receiver.settings()
            if request.method == "GET":
                if len(request.scope.get("query_string", b"")) > current.max_body_bytes:
                    raise CallbackRejected(414, f"query string longer than {current.max_body_bytes} bytes")
                body = b""
            else:
                body = await _read_body(request, current.max_body_bytes)
            correlation = receiver.decode_token(request.query_params.get(TOKEN_PARAM), current)
            fields = _request_fields(request, body)
            request_url = str(request.url.replace(query="", fragment=""))
            headers = dict(request.headers)

            try:
                stored, xml = await _within(
                    response_deadline,
                    receiver.ahandle(
                        kind=kind,
                        fields=fields,
                        headers=headers,
                        request_url=request_url,
                        correlation=correlation,
                        settings=current,
                    ),
                )
            except TimeoutError:
                # A callback already taken by the store's writer is still committed: Vobiz's retry is then
                # answered "duplicate". One still queued is withdrawn.
                raise CallbackRejected(
                    503,
                    f"callback not stored within {response_deadline:g} s, retry later",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from None
        except CallbackRejected as err:
            return refuse(kind, err)
        except Exception:
            log.exception("Unexpected error while handling a Vobiz %s callback", kind)
            return refuse(
                kind,
                CallbackRejected(503, "internal error, retry later", retry_after=RETRY_AFTER_SECONDS),
            )
        if xml is not None:
            return Response(content=xml, media_type="application/xml")
        return Response(
            content=_DUPLICATE_BODY if stored.result.duplicate else _STORED_BODY,
            media_type="application/json",
        )

    async def endpoint(request: Request) -> Response:
        return await receive(request.path_params["kind"], request)

    # A plain Starlette route: the request is all it needs, FastAPI's dependency solving is per-request cost.
    app.router.routes.append(
        Route(
            "/callbacks/{kind}",
            endpoint,
            methods=["POST", "GET"],
            name="vobiz_callback",
            include_in_schema=False,
        )
    )

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
