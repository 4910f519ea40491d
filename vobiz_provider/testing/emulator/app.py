"""The emulator's ASGI app: the Vobiz REST API under ``/api/v1`` and the control API under ``/_emulator``.

Routing of ``/api/v1`` is strict on purpose, as Vobiz is: paths are case-sensitive, and a wrongly cased
path (``/account/...``, ``/call/``) answers **401**, as the Plivo-migration "gotchas" page documents.
``POST .../Call`` without the trailing slash answers **404** (make-call page). Order of checks:

1. ``X-Auth-ID``/``X-Auth-Token`` missing or wrong → 401 (for every ``/api/v1`` path);
2. no route matches, but one matches case-insensitively → 401; nothing matches → 404;
3. the ``{auth_id}`` in the path differs from the header → 404 (the docs' "unknown auth_id").

Both readings of the docs are served where they disagree: ``GET /Call?status=`` and ``/Call/?status=``,
``/Call/{uuid}`` with or without the trailing slash for GET and DELETE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vobiz_provider.testing.emulator.script import CallScript
from vobiz_provider.testing.emulator.state import ReceivedRequest

if TYPE_CHECKING:
    from vobiz_provider.testing.emulator.core import VobizEmulator
    from vobiz_provider.testing.emulator.state import EmulatedCall

__all__ = ["create_app"]

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]

_ERROR_CODES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_CREDENTIALS",
    402: "INSUFFICIENT_BALANCE",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def _api_id() -> str:
    return str(uuid.uuid4())


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Api:
    """The REST API handlers of one emulator."""

    def __init__(self, emulator: VobizEmulator) -> None:
        self.emulator = emulator
        segment = r"(?P<auth_id>[^/]+)"
        call = r"(?P<call_uuid>[^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(rf"^/Account/{segment}/Call/$"), self.make_call),
            ("GET", re.compile(rf"^/Account/{segment}/Call/?$"), self.list_calls),
            ("GET", re.compile(rf"^/Account/{segment}/Call/{call}/?$"), self.get_call),
            ("DELETE", re.compile(rf"^/Account/{segment}/Call/{call}/?$"), self.hangup_call),
            ("POST", re.compile(rf"^/Account/{segment}/Call/{call}/$"), self.transfer_call),
            ("POST", re.compile(rf"^/Account/{segment}/Call/{call}/Record/$"), self.record),
            ("DELETE", re.compile(rf"^/Account/{segment}/Call/{call}/Record/$"), self.record),
            (
                "POST",
                re.compile(rf"^/Account/{segment}/Call/{call}/(?P<action>Play|Speak|DTMF)/$"),
                self.action,
            ),
            ("DELETE", re.compile(rf"^/Account/{segment}/Call/{call}/(?P<action>Play|Speak)/$"), self.action),
            ("GET", re.compile(rf"^/Account/{segment}/cdr/?$"), self.list_cdrs),
            ("GET", re.compile(rf"^/Account/{segment}/cdr/{call}/?$"), self.get_cdr),
            ("GET", re.compile(rf"^/Account/{segment}/concurrency/?$"), self.concurrency),
            ("GET", re.compile(r"^/auth/me/?$"), self.auth_me),
        ]
        self.insensitive = [re.compile(p.pattern, re.IGNORECASE) for _, p, _ in self.routes]

    # ------------------------------------------------------------------ errors

    def error(
        self,
        status: int,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        flat_extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        """An error response in the configured shape."""
        if self.emulator.settings.error_shape == "envelope":
            body: dict[str, Any] = {
                "status": "error",
                "error": {
                    "code": _ERROR_CODES.get(status, "ERROR"),
                    "message": message,
                    "details": details or {},
                },
                "timestamp": _iso(datetime.now(timezone.utc)),
                "requestId": f"req_{uuid.uuid4().hex[:12]}",
            }
        else:
            body = {"api_id": _api_id(), "error": message, **(flat_extra or {})}
        return JSONResponse(body, status_code=status, headers=headers)

    def rate_limited(
        self, limit_type: str, limit: int, current: int, *, retry_after: float | None = None
    ) -> JSONResponse:
        """429 for the CPS or the concurrency limit (``Retry-After`` only when one is configured)."""
        if retry_after is None:
            retry_after = self.emulator.settings.retry_after
        headers = {} if retry_after is None else {"Retry-After": _header_seconds(retry_after)}
        what = "calls per second" if limit_type == "cps" else "concurrent calls"
        return self.error(
            429,
            f"rate limit exceeded: {what} limit of {limit} reached ({limit_type})",
            details={
                "limitType": limit_type,
                "limit": limit,
                "current": current,
                "retryAfter": retry_after if retry_after is not None else 1,
            },
            headers=headers,
        )

    # ------------------------------------------------------------------ entry

    async def handle(self, request: Request) -> Response:
        """Entry point of every ``/api/v1`` request: log it, apply faults, dispatch."""
        emulator = self.emulator
        raw = await request.body()
        received = ReceivedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=_decode_body(raw),
        )
        emulator.log_request(received)
        fault = emulator.take_fault(request.method, request.url.path)
        if fault is not None and not fault.accept:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            response = (
                self.fault_response(fault) if fault.status is not None else await self.dispatch(request)
            )
        else:
            response = await self.dispatch(request)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    response = self.fault_response(fault)
        received.status = response.status_code
        return response

    def fault_response(self, fault: Any) -> Response:
        headers = {} if fault.retry_after is None else {"Retry-After": _header_seconds(fault.retry_after)}
        if fault.body is not None:
            return JSONResponse(fault.body, status_code=fault.status, headers=headers)
        if fault.status == 429:
            settings = self.emulator.settings
            return self.rate_limited("cps", settings.cps, settings.cps, retry_after=fault.retry_after)
        if fault.status < 400:
            return JSONResponse({"api_id": _api_id()}, status_code=fault.status, headers=headers)
        return self.error(fault.status, f"injected fault: HTTP {fault.status}", headers=headers)

    async def dispatch(self, request: Request) -> Response:
        settings = self.emulator.settings
        given_id = request.headers.get("x-auth-id")
        given_token = request.headers.get("x-auth-token")
        if not given_id or not given_token:
            return self.error(401, "authentication required: send the X-Auth-ID and X-Auth-Token headers")
        if given_id != settings.auth_id or given_token != settings.auth_token:
            return self.error(401, "invalid credentials")
        path = request.url.path.removeprefix("/api/v1")
        allowed = False
        for method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            if method != request.method:
                allowed = True
                continue
            params = match.groupdict()
            if "auth_id" in params and params["auth_id"] != settings.auth_id:
                return self.error(404, f"account {params['auth_id']} not found")
            return await handler(request, params)
        if allowed:
            if request.method == "POST" and re.match(r"^/Account/[^/]+/Call$", path):
                return self.error(404, "not found (POST /Call/ needs the trailing slash)")
            return self.error(405, f"method {request.method} not allowed on {request.url.path}")
        if request.method == "POST" and re.match(r"^/Account/[^/]+/Call$", path):
            return self.error(404, "not found (POST /Call/ needs the trailing slash)")
        if any(loose.match(path) for loose in self.insensitive):
            return self.error(401, "unauthorized: the path is case-sensitive (use /Account/.../Call/)")
        return self.error(404, f"not found: {request.url.path}")

    # ------------------------------------------------------------------ calls

    async def make_call(self, request: Request, params: dict[str, str]) -> Response:
        from vobiz_provider.models.call import MakeCallRequest, format_validation_errors

        emulator, settings = self.emulator, self.emulator.settings
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return self.error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return self.error(400, "the request body must be a JSON object")
        problems: list[tuple[str, str]] = []
        for missing in ("from", "to", "answer_url", "answer_method"):
            if missing not in body:
                problems.append((missing, "required"))
        if "from_number" in body:
            problems.append(("from_number", "not a Make-Call field (did you mean 'from'?)"))
        fields = {k: v for k, v in body.items() if k != "from_number"}
        try:
            call_request = MakeCallRequest.model_validate(fields)
        except Exception as exc:
            from pydantic import ValidationError

            if not isinstance(exc, ValidationError):
                raise
            for part in format_validation_errors(exc, MakeCallRequest).split("; "):
                field, _, problem = part.partition(": ")
                if not any(field == known for known, _ in problems):
                    problems.append((field, problem))
            call_request = None
        if problems:
            message = "invalid request: " + "; ".join(f"{f}: {p}" for f, p in problems)
            return self.error(
                400,
                message,
                details={"errors": [{"field": f, "message": p, "code": "invalid"} for f, p in problems]},
            )
        assert call_request is not None
        destinations = len(call_request.to)
        needed = settings.call_cost * destinations
        if settings.balance < needed:
            return self.error(
                402,
                f"insufficient balance: {settings.balance:.2f} {settings.currency} available, "
                f"{needed:.2f} needed",
                details={"balance": settings.balance, "required": needed, "currency": settings.currency},
            )
        fits, current = emulator.check_cps()
        if not fits:
            return self.rate_limited("cps", settings.cps, current)
        active = len(emulator.active_calls())
        if active + destinations > settings.concurrency:
            return self.rate_limited("concurrency", settings.concurrency, active)
        request_uuid, _calls = emulator.place_calls(call_request)
        return JSONResponse(
            {"api_id": _api_id(), "message": settings.message, "request_uuid": request_uuid},
            status_code=settings.success_status,
        )

    def _find(self, call_uuid: str) -> EmulatedCall | None:
        try:
            return self.emulator.call(call_uuid)
        except KeyError:
            return None

    def _not_found(self, call_uuid: str) -> JSONResponse:
        return self.error(
            404, "call not found", flat_extra={"call_uuid": call_uuid}, details={"call_uuid": call_uuid}
        )

    async def list_calls(self, request: Request, params: dict[str, str]) -> Response:
        status = request.query_params.get("status")
        calls = list(self.emulator.calls.values())
        if status == "live":
            uuids = [c.call_uuid for c in calls if c.status == "in-progress"]
            return JSONResponse({"api_id": _api_id(), "calls": uuids})
        if status == "queued":
            uuids = [c.call_uuid for c in calls if c.status in ("queued", "ringing")]
            return JSONResponse(
                {"api_id": _api_id(), "calls": uuids[: self.emulator.settings.queued_list_limit]}
            )
        # The older Plivo-style listing (limit/offset), kept for completeness.
        try:
            limit = min(int(request.query_params.get("limit", "20")), 100)
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return self.error(400, "limit and offset must be integers")
        if status:
            calls = [c for c in calls if c.status == status]
        calls.reverse()
        page = calls[offset : offset + limit]
        base = f"/api/v1/Account/{params['auth_id']}/Call/"
        return JSONResponse(
            {
                "api_id": _api_id(),
                "meta": {
                    "limit": limit,
                    "offset": offset,
                    "total_count": len(calls),
                    "previous": None
                    if offset == 0
                    else f"{base}?limit={limit}&offset={max(0, offset - limit)}",
                    "next": f"{base}?limit={limit}&offset={offset + limit}"
                    if offset + limit < len(calls)
                    else None,
                },
                "objects": [
                    {
                        "call_uuid": c.call_uuid,
                        "from": c.from_number,
                        "to": c.to,
                        "status": c.status,
                        "duration": c.talk_seconds,
                        "created_at": _iso(c.created_at),
                    }
                    for c in page
                ],
            }
        )

    async def get_call(self, request: Request, params: dict[str, str]) -> Response:
        call_uuid = params["call_uuid"]
        call = self._find(call_uuid)
        status = request.query_params.get("status")
        if status == "live":
            if call is None or call.status != "in-progress":
                return self._not_found(call_uuid)
            return JSONResponse(
                {
                    "api_id": _api_id(),
                    "call_status": call.status,
                    "call_uuid": call.call_uuid,
                    "caller_name": call.request.caller_name or "",
                    "direction": "outbound",
                    "from": call.from_number,
                    "request_uuid": call.request_uuid,
                    "session_start": (call.ring_at or call.created_at).strftime("%Y-%m-%d %H:%M:%S.%f"),
                    "stir_attestation": "Not Applicable",
                    "stir_verification": "Not Applicable",
                    "to": call.to,
                }
            )
        if status == "queued":
            if call is None or call.status not in ("queued", "ringing"):
                return self._not_found(call_uuid)
            return JSONResponse(
                {
                    "api_id": _api_id(),
                    "call_status": "queued",
                    "call_uuid": call.call_uuid,
                    "request_uuid": call.request_uuid,
                    "caller_name": call.request.caller_name or "",
                    "direction": "outbound",
                    "from": call.from_number,
                    "to": call.to,
                }
            )
        if status:
            return self.error(400, f"status: must be 'live' or 'queued', got {status!r}")
        if call is None or not call.finished:
            return self._not_found(call_uuid)
        return JSONResponse(self.finished_call(call))

    def finished_call(self, call: EmulatedCall) -> dict[str, Any]:
        """The finalised call: the Call object of the current docs plus the old docs' fields."""
        settings = self.emulator.settings
        local = _local_formatter(settings.timezone)
        billsec = self.emulator.billed_seconds(call)
        return {
            "api_id": _api_id(),
            "answer_time": local(call.answer_at),
            "bill_duration": billsec,
            "billed_duration": billsec,
            "call_direction": "outbound",
            "call_duration": call.talk_seconds,
            "call_uuid": call.call_uuid,
            "end_time": local(call.end_at),
            "from_number": call.from_number,
            "hangup_cause_code": call.hangup_cause_code,
            "hangup_cause_name": call.hangup_cause_name,
            "hangup_source": call.hangup_source,
            "initiation_time": local(call.created_at),
            "parent_call_uuid": None,
            "resource_uri": f"/api/v1/Account/{settings.auth_id}/Call/{call.call_uuid}/",
            "source_ip": None,
            "stir_verification": "Not Applicable",
            "to_number": call.to,
            "total_amount": f"{call.total_cost:.5f}",
            "total_rate": f"{settings.rate_per_minute:.5f}",
            # the older docs' shape
            "request_uuid": call.request_uuid,
            "from": call.from_number,
            "to": call.to,
            "status": call.status,
            "direction": "outbound",
            "duration": call.talk_seconds,
            "billed_duration_seconds": billsec,
            "call_rate": f"{settings.rate_per_minute:.5f}",
            "total_cost": f"{call.total_cost:.5f}",
            "created_at": _iso(call.created_at),
            "answered_at": _iso(call.answer_at),
        }

    async def hangup_call(self, request: Request, params: dict[str, str]) -> Response:
        from vobiz_provider.testing.emulator.lifecycle import API_CANCEL, API_HANGUP_ANSWERED

        call_uuid = params["call_uuid"]
        call = self._find(call_uuid)
        lifecycle = self.emulator.lifecycle(call_uuid)
        if call is None or call.finished or lifecycle is None:
            return self._not_found(call_uuid)
        lifecycle.end(API_HANGUP_ANSWERED if call.answer_at is not None else API_CANCEL)
        return Response(status_code=204)

    async def transfer_call(self, request: Request, params: dict[str, str]) -> Response:
        """``POST /Call/{uuid}/``: transfer a call in progress to new XML (202)."""
        from pydantic import TypeAdapter, ValidationError

        from vobiz_provider.models.call import HttpMethod, HttpUrlStr

        call_uuid = params["call_uuid"]
        call = self._find(call_uuid)
        lifecycle = self.emulator.lifecycle(call_uuid)
        if call is None or call.status != "in-progress" or lifecycle is None:
            return self._not_found(call_uuid)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return self.error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return self.error(400, "the request body must be a JSON object")
        problems: list[tuple[str, str]] = []
        unknown = sorted(set(body) - {"legs", "aleg_url", "aleg_method", "bleg_url", "bleg_method"})
        problems += [(name, "not a transfer field") for name in unknown]
        legs = body.get("legs", "aleg")
        if legs not in ("aleg", "bleg", "both"):
            problems.append(("legs", f"must be aleg, bleg or both, got {legs!r}"))
        for leg in ("aleg", "bleg"):
            url, method = body.get(f"{leg}_url"), body.get(f"{leg}_method")
            if url is None and legs in (leg, "both"):
                problems.append((f"{leg}_url", f"required when legs is {legs!r}"))
            for name, value, kind in ((f"{leg}_url", url, HttpUrlStr), (f"{leg}_method", method, HttpMethod)):
                if value is not None:
                    try:
                        TypeAdapter(kind).validate_python(value)
                    except ValidationError as exc:
                        problems.append((name, exc.errors(include_url=False)[0]["msg"]))
        if problems:
            return self.error(
                400,
                "invalid request: " + "; ".join(f"{f}: {p}" for f, p in problems),
                details={"errors": [{"field": f, "message": p, "code": "invalid"} for f, p in problems]},
            )
        if legs in ("aleg", "both"):
            lifecycle.transfer(body["aleg_url"], (body.get("aleg_method") or "POST").upper())
        if legs in ("bleg", "both"):
            call.xml_log.append("B leg transfer ignored: the emulator has no B legs")
        return JSONResponse(
            {"api_id": _api_id(), "message": "call transferred", "call_uuid": call_uuid}, status_code=202
        )

    async def record(self, request: Request, params: dict[str, str]) -> Response:
        """``POST|DELETE /Call/{uuid}/Record/``: start (200) or stop (204) a recording of a live call."""
        call_uuid = params["call_uuid"]
        call = self._find(call_uuid)
        if call is None or call.status != "in-progress":
            return self._not_found(call_uuid)
        if request.method == "DELETE":
            call.xml_log.append("API Record stopped")
            return Response(status_code=204)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return self.error(400, "the request body is not valid JSON")
        file_format = body.get("file_format", "mp3") if isinstance(body, dict) else None
        if file_format not in ("mp3", "wav"):
            return self.error(400, f"file_format: must be mp3 or wav, got {file_format!r}")
        recording_id = str(uuid.uuid4())
        call.xml_log.append(f"API Record started: {recording_id}")
        return JSONResponse(
            {
                "api_id": _api_id(),
                "message": "recording started",
                "recording_id": recording_id,
                "url": f"https://media.example.invalid/{self.emulator.settings.auth_id}/{recording_id}.{file_format}",
            }
        )

    async def action(self, request: Request, params: dict[str, str]) -> Response:
        call_uuid, action = params["call_uuid"], params["action"]
        call = self._find(call_uuid)
        if call is None or call.status != "in-progress":
            return self._not_found(call_uuid)
        if request.method == "DELETE":
            return Response(status_code=204)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return self.error(400, "the request body is not valid JSON")
        required = {"Play": "urls", "Speak": "text", "DTMF": "digits"}[action]
        if not isinstance(body, dict) or not body.get(required):
            return self.error(
                400, f"{required}: required", details={"errors": [{"field": required, "message": "required"}]}
            )
        if action == "DTMF" and not re.fullmatch(r"[0-9*#wW]+", str(body["digits"])):
            return self.error(400, "digits: only 0-9, *, #, w and W are allowed")
        message = {"Play": "play started", "Speak": "speak started", "DTMF": "digits sent"}[action]
        call.xml_log.append(f"API {action}: {body[required]}")
        return JSONResponse({"api_id": _api_id(), "message": message}, status_code=202)

    # ------------------------------------------------------------------ CDRs and account

    def cdr(self, call: EmulatedCall) -> dict[str, Any]:
        """The CDR of an ended call (``uuid`` = CallUUID)."""
        settings = self.emulator.settings
        billsec = self.emulator.billed_seconds(call)
        ring_time = call.ring_seconds
        return {
            "account_id": settings.auth_id,
            "answer_time": _iso(call.answer_at),
            "billsec": billsec,
            "bridge_uuid": None,
            "call_direction": "outbound",
            "caller_id_name": call.request.caller_name or "",
            "caller_id_number": call.from_number,
            "campaign_id": None,
            "carrier_ip": "127.0.0.1",
            "codec": "PCMU",
            "context": "api",
            "cost": f"{call.total_cost:.5f}",
            "created_at": _iso(call.created_at),
            "currency": settings.currency,
            "customer_endpoint": None,
            "destination_number": call.to,
            "duration": ring_time + billsec,
            "end_time": _iso(call.end_at),
            "failure_code": None if call.answer_at else call.hangup_cause_code,
            "failure_reason": None if call.answer_at else call.hangup_cause_name,
            "hangup_cause": call.hangup_cause,
            "hangup_cause_code": call.hangup_cause_code,
            "hangup_cause_name": call.hangup_cause_name,
            "hangup_disposition": "send_bye"
            if call.hangup_source in ("Vobiz", "API Request", "Error")
            else "recv_bye",
            "hangup_source": call.hangup_source,
            "id": call.cdr_id,
            "jitter": 0.0,
            "mos": 4.4 if call.answer_at else None,
            "network_addr": "127.0.0.1",
            "origination_region": "mumbai",
            "packet_loss": 0.0,
            "progress_time": _iso(call.ring_at),
            "region": settings.region,
            "ring_time": ring_time,
            "sip_call_id": f"{call.call_uuid}@emulator",
            "sip_user_agent": "vobiz-emulator",
            "start_time": _iso(call.created_at),
            "streaming_cost": "0.00000",
            "terminated_to": call.to,
            "total_cost": f"{call.total_cost:.5f}",
            "trunk_id": None,
            "updated_at": _iso(call.end_at),
            "uuid": call.call_uuid,
            "status": call.status,
        }

    async def list_cdrs(self, request: Request, params: dict[str, str]) -> Response:
        query = request.query_params
        try:
            page = int(query.get("page", "1"))
            per_page = int(query.get("per_page", "20"))
            min_duration = int(query["min_duration"]) if "min_duration" in query else None
        except ValueError:
            return self.error(400, "page, per_page and min_duration must be integers")
        if page < 1 or not 1 <= per_page <= 100:
            return self.error(400, "page must be >= 1 and per_page between 1 and 100")
        if ("start_date" in query) != ("end_date" in query):
            return self.error(400, "start_date and end_date must be sent together")
        records = [self.cdr(c) for c in self.emulator.calls.values() if c.finished]
        records.sort(key=lambda r: (r["end_time"] or "", r["id"] or 0), reverse=True)
        for name in ("to_number", "from_number"):
            wanted = query.get(name)
            if wanted:
                key = "destination_number" if name == "to_number" else "caller_id_number"
                records = [r for r in records if wanted.lstrip("+") in str(r[key])]
        for name in ("call_direction", "hangup_cause", "hangup_disposition", "sip_call_id", "context"):
            if query.get(name):
                records = [r for r in records if str(r.get(name)) == query[name]]
        if min_duration is not None:
            records = [r for r in records if r["duration"] >= min_duration]
        if "start_date" in query:
            start, end = query["start_date"], query["end_date"]
            records = [r for r in records if start <= (r["start_time"] or "")[:10] <= end]
        total = len(records)
        pages = max(1, math.ceil(total / per_page)) if total else 0
        chunk = records[(page - 1) * per_page : page * per_page]
        answered = [r for r in records if r["answer_time"]]
        total_duration = sum(r["duration"] for r in records)
        return JSONResponse(
            {
                "account_id": self.emulator.settings.auth_id,
                "count": len(chunk),
                "data": chunk,
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "total": total,
                    "pages": pages,
                    "has_next": page < pages,
                    "has_prev": page > 1,
                },
                "summary": {
                    "totalCalls": total,
                    "answeredCalls": len(answered),
                    "answerRate": round(100 * len(answered) / total, 2) if total else 0,
                    "avgCallDuration": f"{round(total_duration / total) if total else 0}s",
                    "total_duration_seconds": total_duration,
                    "total_billable_seconds": sum(r["billsec"] for r in records),
                    "total_cost": f"{sum(float(r['total_cost']) for r in records):.5f}",
                    "last_call_at": records[0]["end_time"] if records else None,
                },
                "success": True,
            }
        )

    async def get_cdr(self, request: Request, params: dict[str, str]) -> Response:
        call = self._find(params["call_uuid"])
        if call is None or not call.finished:
            return self.error(404, "CDR not found", flat_extra={"success": False})
        return JSONResponse({"data": self.cdr(call), "success": True})

    async def concurrency(self, request: Request, params: dict[str, str]) -> Response:
        settings = self.emulator.settings
        current = len(self.emulator.active_calls())
        return JSONResponse(
            {
                "account_id": settings.auth_id,
                "concurrent_calls": current,
                "max_concurrent": settings.concurrency,
                "utilization_pct": round(100 * current / settings.concurrency, 2),
                "request_id": f"req_{uuid.uuid4().hex[:12]}",
            }
        )

    async def auth_me(self, request: Request, params: dict[str, str]) -> Response:
        settings = self.emulator.settings
        kind = "sub_account" if settings.auth_id.startswith("SA_") else "main_account"
        return JSONResponse(
            {
                "type": kind,
                "id": settings.auth_id,
                "api_id": _api_id(),
                "name": "Vobiz Emulator",
                "email": "emulator@example.invalid",
                "phone": "+14155550100",
                "description": "local Vobiz emulator account",
                "auth_id": settings.auth_id,
                "auth_secret": settings.auth_token,
                "auth_token_expire_time": None,
                "country": "IN",
                "timezone": settings.timezone,
                "city": "Mumbai",
                "state": "MH",
                "address": "",
                "zip_code": "",
                "company": "Emulator",
                "account_type": "standard",
                "postpaid": False,
                "auto_recharge": False,
                "auto_recharge_config": None,
                "enabled": True,
                "carrier_type": "retail",
                "customer_type": "business",
                "credit_limit": 0,
                "cps_limit": settings.cps,
                "concurrent_calls_limit": settings.concurrency,
                "base_cps_limit": settings.cps,
                "base_concurrent_calls_limit": settings.concurrency,
                "purchased_cps": 0,
                "purchased_concurrent_calls": 0,
                "risk_rating": "low",
                "risk_status": "clear",
                "features": {"call_queue": True},
                "ip_auth_enabled": False,
                "ip_whitelist_rules": [],
                "allow_aws_ips": True,
                "role": "owner",
                "is_active": True,
                "is_verified": True,
                "is_trial_account": False,
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
                "last_login": None,
                "pricing_tier_id": 1,
                "pricing_tier": {
                    "id": 1,
                    "name": "Standard",
                    "description": "emulator pricing",
                    "currency": settings.currency,
                    "rate_per_minute": settings.rate_per_minute,
                    "billing_increment_seconds": settings.billing_pulse,
                    "minimum_duration_seconds": settings.billing_pulse,
                    "is_active": True,
                    "is_default": True,
                },
            }
        )


def _header_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _local_formatter(zone_name: str) -> Callable[[datetime | None], str | None]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(zone_name)

    def render(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    return render


def _decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


# ====================================================================== control API


class _Control:
    """``/_emulator/...``: script and inspect a separately started emulator over HTTP (no auth)."""

    def __init__(self, emulator: VobizEmulator) -> None:
        self.emulator = emulator

    @staticmethod
    async def _json(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw) if raw.strip() else {}

    @staticmethod
    def _bad(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=400)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "auth_id": self.emulator.settings.auth_id})

    async def settings(self, request: Request) -> Response:
        if request.method in ("PATCH", "POST", "PUT"):
            try:
                changes = await self._json(request)
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object of settings")
                self.emulator.configure(**changes)
            except (ValueError, TypeError) as exc:
                return self._bad(str(exc))
        return JSONResponse(self.emulator.settings.public_dict())

    async def scripts(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.emulator.clear_scripts()
        elif request.method in ("POST", "PUT"):
            try:
                body = await self._json(request)
                if "default" in body:
                    self.emulator.default_script = CallScript.from_dict(body["default"])
                if "destination" in body:
                    self.emulator.script(
                        str(body["destination"]), CallScript.from_dict(body.get("script", {}))
                    )
                for destination, script in (body.get("scripts") or {}).items():
                    self.emulator.script(destination, CallScript.from_dict(script))
            except (ValueError, TypeError, AttributeError) as exc:
                return self._bad(str(exc))
        return JSONResponse(
            {
                "default": self.emulator.default_script.to_dict(),
                "scripts": {k: v.to_dict() for k, v in self.emulator.scripts.items()},
            }
        )

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.emulator.clear_faults()
            return JSONResponse({"faults": []})
        try:
            fault = self.emulator.inject_fault(**(await self._json(request)))
        except (ValueError, TypeError) as exc:
            return self._bad(str(exc))
        return JSONResponse(fault.to_dict(), status_code=201)

    async def requests(self, request: Request) -> Response:
        return JSONResponse({"requests": [r.to_dict() for r in self.emulator.requests]})

    async def callbacks(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        call_uuid = request.query_params.get("call_uuid")
        attempts = self.emulator.callbacks_of(kind, call_uuid=call_uuid)
        return JSONResponse({"callbacks": [a.to_dict() for a in attempts]})

    async def calls(self, request: Request) -> Response:
        return JSONResponse({"calls": [c.to_dict() for c in self.emulator.calls.values()]})

    async def reset(self, request: Request) -> Response:
        self.emulator.reset()
        return JSONResponse({"ok": True})

    async def wait_callbacks(self, request: Request) -> Response:
        query = request.query_params
        try:
            count = int(query.get("count", "1"))
            timeout = float(query.get("timeout", "10"))
        except ValueError:
            return self._bad("count and timeout must be numbers")
        try:
            attempts = await self.emulator.await_callbacks(
                query.get("kind"), count, timeout, call_uuid=query.get("call_uuid")
            )
        except TimeoutError as exc:
            return JSONResponse({"error": str(exc)}, status_code=408)
        return JSONResponse({"callbacks": [a.to_dict() for a in attempts]})

    async def wait_idle(self, request: Request) -> Response:
        try:
            await self.emulator.await_idle(float(request.query_params.get("timeout", "10")))
        except TimeoutError as exc:
            return JSONResponse({"error": str(exc)}, status_code=408)
        except ValueError:
            return self._bad("timeout must be a number")
        return JSONResponse({"ok": True})


def create_app(emulator: VobizEmulator) -> Starlette:
    """The ASGI app serving ``emulator``: ``/api/v1/...`` (Vobiz) and ``/_emulator/...`` (control)."""
    api = _Api(emulator)
    control = _Control(emulator)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await emulator.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes = [
        Route("/api/v1/{path:path}", api.handle, methods=methods),
        Route("/_emulator/health", control.health, methods=["GET"]),
        Route("/_emulator/settings", control.settings, methods=["GET", "PATCH", "POST", "PUT"]),
        Route("/_emulator/scripts", control.scripts, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/_emulator/faults", control.faults, methods=["POST", "DELETE"]),
        Route("/_emulator/requests", control.requests, methods=["GET"]),
        Route("/_emulator/callbacks", control.callbacks, methods=["GET"]),
        Route("/_emulator/calls", control.calls, methods=["GET"]),
        Route("/_emulator/reset", control.reset, methods=["POST"]),
        Route("/_emulator/wait/callbacks", control.wait_callbacks, methods=["GET"]),
        Route("/_emulator/wait/idle", control.wait_idle, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.emulator = emulator
    return app
