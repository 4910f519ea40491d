"""Inbound calls: the receiver as the answer URL of a Vobiz application (``[vobiz] inbound_applications``).

Routes, relative to the mount point (``/vobiz``):

``POST|GET /inbound/{application}?t=<application token>``
    Vobiz fetches the application's answer URL when someone calls its number: the call is stored, and the
    answer is the application's VobizXML (its message, then its keypad prompt, whose action is the next
    route).
``POST|GET /inbound/{application}/digits?t=...``
    The keys the caller pressed (the Gather action): stored, answered with the prompt's reply.
``POST|GET /inbound/{application}/hangup?t=...``
    The application's hangup URL: the end of the call (status, hangup cause, duration), stored.

The same guarantees as the outbound callbacks (:mod:`.pipeline`), in the same order: the application token
(HMAC of the name under ``callback_secret`` or a fallback: 403), the application configured (404), Vobiz's
signature over the public URL as issued, with and without its ``user:password@``, under the auth token of the
application's ``conn_id`` and of ``[vobiz] signature_conn_ids`` (403; unsigned refused while ``[vobiz]
require_signatures`` is on), ``CallUUID`` present (422), then the call, key press or hangup stored together
with its signature's replay keys in one transaction before anything is answered (a replay key reused on
another body: 403; the same request again: answered as the first time; the store unreachable: 503 with
``Retry-After``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Final

from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from vobiz_provider.correlation import TOKEN_PARAM, with_callback_credentials
from vobiz_provider.exceptions import LedgerUnavailableError, VobizValidationError
from vobiz_provider.ledger.rows import uuid_text
from vobiz_provider.models.answer import render_answer, render_gather_reply
from vobiz_provider.models.callbacks import read_callback
from vobiz_provider.models.inbound import (
    INBOUND_KINDS,
    InboundApplication,
    inbound_path,
    inbound_url,
    parse_applications,
    token_matches,
)
from vobiz_provider.receiver.pipeline import RETRY_AFTER_SECONDS, CallbackRejected, within
from vobiz_provider.signatures import verify_signature

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from fastapi import FastAPI, Request

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.ledger import InboundStored
    from vobiz_provider.receiver.pipeline import CallbackReceiver
    from vobiz_provider.receiver.rate_limit import TokenRateLimiter

__all__ = ["INBOUND_REFUSAL_KINDS", "InboundApplications", "add_inbound_routes"]

log = logging.getLogger(__name__)

#: The callback model each inbound route's fields are read with.
_MODEL_KIND: Final = {"call": "answer", "digits": "gather", "hangup": "hangup"}

#: How the inbound routes' refusals are counted and logged.
INBOUND_REFUSAL_KINDS: Final = frozenset({"inbound", *(f"inbound-{kind}" for kind in INBOUND_KINDS)})

#: Seconds for which the parsed ``[vobiz] inbound_applications`` is reused.
APPLICATIONS_TTL: Final = 2.0


class InboundApplications:
    """The configured applications, re-read from ``[vobiz] inbound_applications`` at most every
    :data:`APPLICATIONS_TTL` seconds (or fixed, for tests).

    :param fixed: Fixed applications; by default the option is read.
    """

    def __init__(self, fixed: Mapping[str, InboundApplication] | None = None) -> None:
        self._fixed = dict(fixed) if fixed is not None else None
        self._cache: tuple[float, str | None, dict[str, InboundApplication]] | None = None

    def get(self, name: str) -> InboundApplication | None:
        """The application ``name``, or ``None`` when it is not configured.

        :raises VobizValidationError: When the option is invalid (the receiver answers 503 and logs why).
        """
        if self._fixed is not None:
            return self._fixed.get(name)
        now = time.monotonic()
        cached = self._cache
        if cached is None or now - cached[0] >= APPLICATIONS_TTL:
            from airflow.configuration import conf  # the receiver runs where Airflow is configured

            raw = conf.get("vobiz", "inbound_applications", fallback=None)
            apps = cached[2] if cached is not None and cached[1] == raw else parse_applications(raw)
            cached = self._cache = (now, raw, apps)
        return cached[2].get(name)


def _public_url(base_url: str | None, request_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}{path}" if base_url else request_url


def _values(kind: str, fields: Mapping[str, str], timezone: str) -> dict[str, Any]:
    callback: Any = read_callback(fields, timezone=timezone, kind=_MODEL_KIND[kind])
    return {
        "from_number": callback.from_number,
        "to_number": callback.to,
        "digits": getattr(callback, "digits", None) if kind == "digits" else None,
        "call_status": callback.call_status,
        "hangup_cause_code": getattr(callback, "hangup_cause_code", None),
        "hangup_cause_name": getattr(callback, "hangup_cause_name", None),
        "duration": getattr(callback, "duration", None),
    }


def _check_and_store(
    receiver: CallbackReceiver,
    settings: VobizSettings,
    application: InboundApplication,
    *,
    kind: str,
    token: str,
    fields: Mapping[str, str],
    headers: Mapping[str, str],
    request_url: str,
) -> tuple[InboundStored, str | None]:
    """Signature, fields, then the one transaction (blocking: run in a worker thread).

    Returns what the ledger did and the receiver root the URLs were issued under.
    """
    conn_ids = [*settings.signature_conn_ids, application.conn_id]
    path = inbound_path(application.name, kind)

    def attempt() -> tuple[Any, Any]:
        keys = receiver.signing_keys.get_many(conn_ids)
        own = next((item for item in keys if item.conn_id == application.conn_id), None)
        tokens = [k.auth_token.get_secret_value() for k in keys if k.auth_token is not None]
        mains = [k.main_account_token.get_secret_value() for k in keys if k.main_account_token is not None]
        bases = dict.fromkeys(
            b for b in (settings.callback_base_url, own.callback_base_url if own else None) if b
        )
        public = [_public_url(base, request_url, path) for base in bases] or [request_url]
        check = None
        for url in public:
            for secret in settings.verification_secrets:
                check = verify_signature(
                    headers, with_callback_credentials(url, token, secret), tokens, main_account_tokens=mains
                )
                if check.status != "invalid":
                    return check, own
        return check, own

    check, own = attempt()
    if check.status == "invalid" and receiver.signing_keys.refresh(conn_ids):
        check, own = attempt()
    if check.status == "invalid":
        raise CallbackRejected(403, "invalid Vobiz signature")
    if check.status == "unsigned" and settings.require_signatures:
        raise CallbackRejected(403, "unsigned callback refused ([vobiz] require_signatures is on)")
    call_uuid = uuid_text(fields.get("CallUUID"))
    if call_uuid is None:
        raise CallbackRejected(422, "invalid callback fields: CallUUID is missing or empty")
    timezone = (own.timezone if own else None) or "UTC"
    try:
        values = _values(kind, fields, timezone)
    except ValueError as err:
        raise CallbackRejected(422, f"invalid callback fields: {err}") from None
    ledger = receiver.ledger(settings)
    try:
        stored = ledger.store_inbound(
            application=application.name,
            kind=kind,
            call_uuid=call_uuid,
            values=values,
            fields=fields,
            replay_keys=check.replay_keys if check.status == "valid" else (),
            nonce_window=settings.nonce_window,
        )
    except LedgerUnavailableError as err:
        log.warning("Vobiz inbound %s not stored, the callback store is unavailable: %s", kind, err)
        raise CallbackRejected(
            503, "callback store unavailable, retry later", retry_after=RETRY_AFTER_SECONDS
        ) from None
    if stored.replayed:
        raise CallbackRejected(403, "replayed signature nonce")
    log.info(
        "Vobiz inbound %s stored for application %s: CallUUID=%s%s",
        kind,
        application.name,
        call_uuid,
        " (duplicate)" if stored.duplicate else "",
    )
    base = settings.callback_base_url or (own.callback_base_url if own else None)
    return stored, base


def add_inbound_routes(
    app: FastAPI,
    *,
    receiver: CallbackReceiver,
    read_fields: Callable[[Request, VobizSettings, float], Awaitable[dict[str, str]]],
    refuse: Callable[[str, CallbackRejected], Response],
    response_deadline: float,
    rate_limiter: TokenRateLimiter,
    applications: InboundApplications | None = None,
) -> None:
    """Add the ``/inbound/...`` routes to the receiver app.

    :param app: The receiver app.
    :param receiver: Its request handling (settings, signing keys, ledger).
    :param read_fields: Reads a request's form fields within the deadline (the outbound routes' rules).
    :param refuse: Builds a refusal response (counted and logged like the outbound ones).
    :param response_deadline: Seconds allowed for reading, verifying and storing.
    :param rate_limiter: The buckets of each application's ``rate_limit`` (429 beyond it).
    :param applications: The configured applications (``[vobiz] inbound_applications`` by default).
    """
    apps = applications or InboundApplications()
    app.state.inbound_applications = apps

    async def receive(request: Request) -> Response:
        name = request.path_params["application"]
        kind = request.path_params.get("kind", "call")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + response_deadline
        try:
            if kind not in INBOUND_KINDS or (kind == "call" and "kind" in request.path_params):
                raise CallbackRejected(404, f"unknown inbound route {kind!r}")
            settings = receiver.settings()
            token = request.query_params.get(TOKEN_PARAM, "")
            if not token:
                raise CallbackRejected(403, f"missing application token (query parameter {TOKEN_PARAM!r})")
            if not token_matches(name, token, settings.verification_secrets):
                raise CallbackRejected(403, "invalid application token")
            try:
                application = apps.get(name)
            except VobizValidationError as err:
                log.error("Every Vobiz inbound call is refused with 503: %s", err)
                raise CallbackRejected(
                    503,
                    "the receiver is not configured (inbound_applications)",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from None
            if application is None:
                raise CallbackRejected(404, "no such inbound application")
            if application.rate_limit > 0:
                wait = rate_limiter.acquire(
                    ("inbound", name), rate=application.rate_limit, burst=application.rate_burst
                )
                if wait is not None:
                    raise CallbackRejected(
                        429,
                        "too many requests for this inbound application, retry later",
                        retry_after=max(1, math.ceil(wait)),
                    )
            fields = await read_fields(request, settings, deadline - loop.time())
            request_url = str(request.url.replace(query="", fragment=""))
            headers = dict(request.headers)

            def work() -> tuple[InboundStored, str | None]:
                return _check_and_store(
                    receiver,
                    settings,
                    application,
                    kind=kind,
                    token=token,
                    fields=fields,
                    headers=headers,
                    request_url=request_url,
                )

            try:
                stored, base = await within(deadline - loop.time(), asyncio.to_thread(work))
            except TimeoutError:
                raise CallbackRejected(
                    503,
                    f"inbound call not stored within {response_deadline:g} s, retry later",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from None
        except CallbackRejected as err:
            return refuse(f"inbound-{kind}" if kind in INBOUND_KINDS else "inbound", err)
        except Exception:
            log.exception("Unexpected error while handling a Vobiz inbound %s", kind)
            return refuse(
                "inbound",
                CallbackRejected(503, "internal error, retry later", retry_after=RETRY_AFTER_SECONDS),
            )
        spec = application.answer
        if kind == "call":
            action = None
            if spec.gather is not None:
                root = base or request_url[: -len(inbound_path(name, "call"))]
                action = inbound_url(root, name, settings.signing_secret, kind="digits")
            return Response(
                content=render_answer(spec, gather_action_url=action), media_type="application/xml"
            )
        if kind == "digits":
            return Response(
                content=render_gather_reply(spec, digits=fields.get("Digits")), media_type="application/xml"
            )
        return JSONResponse({"status": "duplicate" if stored.duplicate else "stored"})

    for path in ("/inbound/{application}", "/inbound/{application}/{kind}"):
        app.router.routes.append(
            Route(
                path,
                receive,
                methods=["POST", "GET"],
                name=f"vobiz_inbound{path.count('{')}",
                include_in_schema=False,
            )
        )
