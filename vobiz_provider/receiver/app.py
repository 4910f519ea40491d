"""The callback receiver's web app: Vobiz's ring/answer/hangup/... callbacks in, durably stored.

The same app runs in two places:

* on the Airflow API server, mounted at ``/vobiz`` by :class:`~vobiz_provider.plugins.vobiz.VobizPlugin`;
* standalone, under ``/vobiz`` as well, with ``vobiz-callbacks serve`` (:mod:`vobiz_provider.receiver.cli`),
  for deployments that expose only the receiver to the internet.

So ``callback_base_url`` is ``http(s)://host[:port]/vobiz`` in both cases. Routes, relative to the mount
point:

``POST|GET /callbacks/{kind}?t=<correlation token>``
    ``kind`` is one of ``ring``, ``answer``, ``hangup``, ``machine-detection``, ``gather``, ``dial``,
    ``record`` (the ``<Dial>``/``<Record>`` callbacks of a keypad prompt's ``connect``). The fields come
    form-encoded in the body (POST) or in the query string (GET, ``t`` excluded).
``GET /health``
    Liveness only: no secret, no ledger access.

This module reads the request (unknown ``kind`` → 404; body or query string larger than ``[vobiz]
max_body_bytes`` → 413/414; not ``application/x-www-form-urlencoded`` UTF-8 → 415/400; more callbacks under
one correlation token than ``[vobiz] callback_rate_limit`` allows → 429) and answers;
:class:`~vobiz_provider.receiver.pipeline.CallbackReceiver` decides (token, signature, fields, storing, XML).
One deadline covers the whole request, body included, and keeps the answer inside Vobiz's 3-second budget:
a body not received by then → 408 (and the connection is closed), a callback not stored by then → 503. No
step answers 500: an unexpected error gives 503 with ``Retry-After`` so that Vobiz retries. Refusals are
counted and logged by :class:`~vobiz_provider.receiver.refusal_log.RefusalLog` (``app.state.refusals``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, unquote_plus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from vobiz_provider.correlation import CALLBACK_KINDS, TOKEN_PARAM
from vobiz_provider.models.callbacks import carries_free_text
from vobiz_provider.receiver.inbound import INBOUND_REFUSAL_KINDS, InboundApplications, add_inbound_routes
from vobiz_provider.receiver.pipeline import (
    RETRY_AFTER_SECONDS,
    CallbackReceiver,
    CallbackRejected,
    IncomingCallback,
    StoredCallback,
    answer_xml,
    until,
    within,
)
from vobiz_provider.receiver.rate_limit import TokenRateLimiter
from vobiz_provider.receiver.refusal_log import RefusalLog
from vobiz_provider.untrusted import control_character, escape_controls, loggable

if TYPE_CHECKING:
    from collections.abc import Callable

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.ledger import CallbackSink
    from vobiz_provider.receiver.signing_keys import SigningKeyCache

__all__ = ["MOUNT_PATH", "RESPONSE_DEADLINE", "create_app"]

log = logging.getLogger(__name__)

#: Where the app is mounted, on the Airflow API server (plugin) and by ``vobiz-callbacks serve`` alike.
MOUNT_PATH: Final = "/vobiz"

#: Seconds the receiver allows itself to read, verify and store a callback (Vobiz waits 3 s): a body still
#: incomplete then is answered 408, a callback not yet stored 503.
RESPONSE_DEADLINE: Final = 2.5

#: Most fields a callback may carry (Vobiz sends about 30).
MAX_FIELDS: Final = 200

_FORM_TYPES: Final = ("", "application/x-www-form-urlencoded")
_STORED_BODY: Final = b'{"status":"stored"}'
_DUPLICATE_BODY: Final = b'{"status":"duplicate"}'


#: What a form's raw bytes hold if a field may decode to a C0 control character: the byte itself, or its
#: percent-encoding (``%00`` to ``%1F``); ``+`` decodes to a space.
_MAY_DECODE_TO_C0: Final = re.compile(rb"[\x00-\x1f]|%[01]")


def _query_param(query: bytes, name: str) -> str:
    """The value of ``name`` in a query string, as ``request.query_params`` reads it (the last one wins),
    without parsing the other parameters; ``""`` when absent."""
    prefix = f"{name}=".encode()
    value = ""
    for part in query.split(b"&"):
        if part.startswith(prefix):
            value = unquote_plus(part[len(prefix) :].decode("latin-1"))
        elif part == prefix[:-1]:
            value = ""
    return value


def _unquote_form(text: str) -> str:
    """A form name or value decoded as ``parse_qsl(..., errors="strict")`` decodes it (``+`` is a space;
    percent-encoded bytes that are not UTF-8 raise :class:`UnicodeDecodeError`), at a third of its cost."""
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="strict") if "%" in text else text


def _parse_form(raw: bytes, *, what: str) -> dict[str, str]:
    """The fields of a form-encoded body or query string; 400 when it is not UTF-8 or not a form.

    A C0 control character in a field (tab, CR and LF are allowed where free text may be:
    ``carries_free_text``) is no refusal: it is escaped (``\\x00``), and the field logged once.
    """
    try:
        # Empty segments ("a=1&", "&&") carry nothing: tolerate them, but not a field without "=".
        parts = [part for part in raw.decode("utf-8").split("&") if part]
        if len(parts) > MAX_FIELDS:
            raise CallbackRejected(400, f"{what} has more than {MAX_FIELDS} fields")
        pairs: list[tuple[str, str]] = []
        for part in parts:
            name, equals, value = part.partition("=")
            if not equals:
                raise CallbackRejected(400, f"{what} is not a valid form encoding")
            pairs.append((_unquote_form(name), _unquote_form(value)))
    except UnicodeDecodeError:
        raise CallbackRejected(400, f"{what} is not valid UTF-8") from None
    if _MAY_DECODE_TO_C0.search(raw) is None:  # no C0 byte, raw or percent-encoded: nothing to escape
        return dict(pairs)
    # NUL (refused by PostgreSQL, failing the whole shared transaction), ESC, CR/LF...: escaped, so that they
    # reach no column, log line or event row; a value escaped so no longer parses and its field stays empty.
    fields: dict[str, str] = {}
    escaped: list[str] = []
    for name, value in pairs:
        free_text = carries_free_text(name)
        if control_character(name) or control_character(value, line_breaks=free_text):
            name, value = escape_controls(name), escape_controls(value, line_breaks=free_text)
            escaped.append(name)
        fields[name] = value
    if escaped:
        log.warning(
            "Vobiz callback %s fields %s carried control characters: stored escaped",
            what,
            loggable(", ".join(escaped)),
        )
    return fields


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
    ledger: CallbackSink | None = None,
    signing_keys: SigningKeyCache | None = None,
    xml_responder: Callable[[StoredCallback], str] = answer_xml,
    response_deadline: float = RESPONSE_DEADLINE,
    inbound: InboundApplications | None = None,
) -> FastAPI:
    """Build the receiver app (no settings read, no store opened, until a callback arrives).

    :param settings: Fixed settings; by default ``[vobiz]`` is read for every request.
    :param ledger: Fixed ledger; by default the process-wide ledger of ``[vobiz] callback_store``.
    :param signing_keys: Cache of the connections' auth tokens (a fresh one by default).
    :param xml_responder: Decides the XML answered to ``answer``/``gather`` callbacks (:func:`answer_xml`).
    :param response_deadline: Seconds allowed for reading, verifying and storing a callback (then 408/503).
    :param inbound: The inbound applications served under ``/inbound`` (:mod:`.inbound`); by default
        ``[vobiz] inbound_applications``.
    """
    receiver = CallbackReceiver(
        settings=settings, ledger=ledger, signing_keys=signing_keys, xml_responder=xml_responder
    )
    # Airflow mounts plugin apps without authentication: publish no docs or schema.
    app = FastAPI(title="Vobiz callback receiver", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.receiver = receiver
    refusals = app.state.refusals = RefusalLog()
    rate_limiter = app.state.rate_limiter = TokenRateLimiter()

    def refuse(kind: str, err: CallbackRejected) -> Response:
        # ``kind`` comes from the URL: log it only once it is known to be one of ours.
        shown = kind if kind in CALLBACK_KINDS or kind in INBOUND_REFUSAL_KINDS else "(unknown kind)"
        refusals.refused(kind=shown, status=err.status_code, reason=err.reason)
        headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else {}
        if err.status_code == 408:
            # The rest of the body may still come: the connection cannot carry another request.
            headers["Connection"] = "close"
        return JSONResponse({"detail": err.reason}, status_code=err.status_code, headers=headers or None)

    async def receive(kind: str, request: Request) -> Response:
        # One deadline for the whole request (one timer): reading the body, then checking and storing.
        storing = False
        try:
            if kind not in CALLBACK_KINDS:
                raise CallbackRejected(
                    404, f"unknown callback kind {kind!r}; expected one of {', '.join(CALLBACK_KINDS)}"
                )
            current = receiver.settings()
            try:
                async with until(asyncio.get_running_loop().time() + response_deadline):
                    if request.method == "GET":
                        if len(request.scope.get("query_string", b"")) > current.max_body_bytes:
                            raise CallbackRejected(
                                414, f"query string longer than {current.max_body_bytes} bytes"
                            )
                        body = b""
                    else:
                        body = await _read_body(request, current.max_body_bytes)
                    token = _query_param(request.scope.get("query_string", b""), TOKEN_PARAM)
                    correlation = receiver.decode_token(token, current, kind=kind)
                    if current.callback_rate_limit > 0:
                        wait = rate_limiter.acquire(
                            (correlation.ti_key, correlation.try_number),
                            rate=current.callback_rate_limit,
                            burst=current.callback_rate_burst,
                        )
                        if wait is not None:
                            raise CallbackRejected(
                                429,
                                "too many callbacks for this task try, retry later",
                                retry_after=max(1, math.ceil(wait)),
                            )
                    incoming = IncomingCallback(
                        kind=kind,
                        fields=_request_fields(request, body),
                        headers=dict(request.headers),
                        request_url=str(request.url.replace(query="", fragment="")),
                        correlation=correlation,
                        token=token,
                        settings=current,
                    )
                    storing = True
                    stored, xml = await receiver.ahandle(incoming)
            except TimeoutError:
                if not storing:
                    raise CallbackRejected(
                        408, f"callback body not received within {response_deadline:g} s"
                    ) from None
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
    # The standalone server routes callbacks to it directly (build_server_app): it answers every error.
    app.state.callback_endpoint = endpoint
    app.state.handle_callback = receive
    app.router.routes.append(
        Route(
            "/callbacks/{kind}",
            endpoint,
            methods=["POST", "GET"],
            name="vobiz_callback",
            include_in_schema=False,
        )
    )

    async def read_fields(request: Request, current: VobizSettings, seconds: float) -> dict[str, str]:
        if request.method == "GET":
            if len(request.scope.get("query_string", b"")) > current.max_body_bytes:
                raise CallbackRejected(414, f"query string longer than {current.max_body_bytes} bytes")
            return _request_fields(request, b"")
        try:
            body = await within(seconds, _read_body(request, current.max_body_bytes))
        except TimeoutError:
            raise CallbackRejected(
                408, f"callback body not received within {response_deadline:g} s"
            ) from None
        return _request_fields(request, body)

    add_inbound_routes(
        app,
        receiver=receiver,
        read_fields=read_fields,
        refuse=refuse,
        response_deadline=response_deadline,
        rate_limiter=rate_limiter,
        applications=inbound,
    )

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
