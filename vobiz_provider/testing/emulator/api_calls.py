"""The Call endpoints of the emulator's REST API: make, list, get, hang up, transfer, record, play/speak/DTMF.

Both readings of the docs are served where they disagree: ``GET /Call?status=`` and ``/Call/?status=``,
``/Call/{uuid}`` with or without the trailing slash for GET and DELETE.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from starlette.responses import JSONResponse, Response

from vobiz_provider.models.call import HttpMethod, HttpUrlStr, MakeCallRequest, format_validation_errors
from vobiz_provider.testing.emulator.api_common import Endpoints
from vobiz_provider.testing.emulator.payloads import (
    api_id,
    finished_call,
    listed_call,
    live_call,
    queued_call,
)
from vobiz_provider.testing.emulator.state import EmulatedCall

if TYPE_CHECKING:
    from starlette.requests import Request

    from vobiz_provider.testing.emulator.switchboard import Switchboard

__all__ = ["CallEndpoints", "PlaceCalls"]

#: Creates and starts the calls of a valid Make-Call request; returns the response's ``request_uuid`` value
#: and the calls.
PlaceCalls = Callable[[MakeCallRequest], tuple[str | list[str], list[EmulatedCall]]]


class CallEndpoints(Endpoints):
    """The ``/Account/{auth_id}/Call/...`` handlers.

    :param switchboard: The account the API serves.
    :param place_calls: Places the calls of an accepted Make-Call request.
    """

    def __init__(self, *, switchboard: Switchboard, place_calls: PlaceCalls) -> None:
        super().__init__(switchboard=switchboard)
        self.place_calls = place_calls

    async def make_call(self, request: Request, params: dict[str, str]) -> Response:
        """``POST /Call/``: validate, check balance and limits, place one call per destination."""
        switchboard, settings = self.switchboard, self.switchboard.settings
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return self.error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return self.error(400, "the request body must be a JSON object")
        problems: list[tuple[str, str]] = []
        required = ("from", "to", "answer_url", "answer_method")
        for missing in required if settings.require_answer_method else required[:3]:
            if missing not in body:
                problems.append((missing, "required"))
        if "from_number" in body:
            problems.append(("from_number", "not a Make-Call field (did you mean 'from'?)"))
        fields = {k: v for k, v in body.items() if k != "from_number"}
        try:
            call_request = MakeCallRequest.model_validate(fields)
        except ValidationError as exc:
            for part in format_validation_errors(exc, MakeCallRequest).split("; "):
                field, _, problem = part.partition(": ")
                if not any(field == known for known, _ in problems):
                    problems.append((field, problem))
            call_request = None
        if problems:
            return self.invalid_request(problems)
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
        fits, current = switchboard.check_cps()
        if not fits:
            return self.rate_limited("cps", settings.cps, current)
        active = len(switchboard.active_calls())
        if active + destinations > settings.concurrency:
            return self.rate_limited("concurrency", settings.concurrency, active)
        request_uuid, _calls = self.place_calls(call_request)
        return JSONResponse(
            {"api_id": api_id(), "message": settings.message, "request_uuid": request_uuid},
            status_code=settings.success_status,
        )

    def _not_found(self, call_uuid: str) -> JSONResponse:
        return self.error(
            404, "call not found", flat_extra={"call_uuid": call_uuid}, details={"call_uuid": call_uuid}
        )

    async def list_calls(self, request: Request, params: dict[str, str]) -> Response:
        """``GET /Call/?status=live|queued`` (UUIDs), else the older Plivo-style listing."""
        status = request.query_params.get("status")
        calls = list(self.switchboard.calls.values())
        if status == "live":
            uuids = [c.call_uuid for c in calls if c.status == "in-progress"]
            return JSONResponse({"api_id": api_id(), "calls": uuids})
        if status == "queued":
            uuids = [c.call_uuid for c in calls if c.status in ("queued", "ringing")]
            return JSONResponse(
                {"api_id": api_id(), "calls": uuids[: self.switchboard.settings.queued_list_limit]}
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
                "api_id": api_id(),
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
                "objects": [listed_call(c) for c in page],
            }
        )

    async def get_call(self, request: Request, params: dict[str, str]) -> Response:
        """``GET /Call/{uuid}/``: a live or queued call (``?status=``), else the finished call."""
        call_uuid = params["call_uuid"]
        call = self._find(call_uuid)
        status = request.query_params.get("status")
        if status == "live":
            if call is None or call.status != "in-progress":
                return self._not_found(call_uuid)
            return JSONResponse(live_call(call))
        if status == "queued":
            if call is None or call.status not in ("queued", "ringing"):
                return self._not_found(call_uuid)
            return JSONResponse(queued_call(call))
        if status:
            return self.error(400, f"status: must be 'live' or 'queued', got {status!r}")
        if call is None or not call.finished:
            return self._not_found(call_uuid)
        return JSONResponse(finished_call(call, self.switchboard.settings))

    async def hangup_call(self, request: Request, params: dict[str, str]) -> Response:
        """``DELETE /Call/{uuid}/``: hang up (or cancel) a call not yet ended (204)."""
        call_uuid = params["call_uuid"]
        call = self._find(call_uuid)
        driver = self.switchboard.driver(call_uuid)
        if call is None or call.finished or driver is None:
            return self._not_found(call_uuid)
        driver.hang_up()
        return Response(status_code=204)

    async def transfer_call(self, request: Request, params: dict[str, str]) -> Response:
        """``POST /Call/{uuid}/``: transfer a call in progress to new XML (202)."""
        call_uuid = params["call_uuid"]
        call = self._find(call_uuid)
        driver = self.switchboard.driver(call_uuid)
        if call is None or call.status != "in-progress" or driver is None:
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
            checks: tuple[tuple[str, Any, Any], ...] = (
                (f"{leg}_url", url, HttpUrlStr),
                (f"{leg}_method", method, HttpMethod),
            )
            for name, value, kind in checks:
                if value is not None:
                    try:
                        TypeAdapter(kind).validate_python(value)
                    except ValidationError as exc:
                        problems.append((name, exc.errors(include_url=False)[0]["msg"]))
        if problems:
            return self.invalid_request(problems)
        if legs in ("aleg", "both"):
            driver.transfer(body["aleg_url"], (body.get("aleg_method") or "POST").upper())
        if legs in ("bleg", "both"):
            call.xml_log.append("B leg transfer ignored: the emulator has no B legs")
        return JSONResponse(
            {"api_id": api_id(), "message": "call transferred", "call_uuid": call_uuid}, status_code=202
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
        auth_id = self.switchboard.settings.auth_id
        return JSONResponse(
            {
                "api_id": api_id(),
                "message": "recording started",
                "recording_id": recording_id,
                "url": f"https://media.example.invalid/{auth_id}/{recording_id}.{file_format}",
            }
        )

    async def action(self, request: Request, params: dict[str, str]) -> Response:
        """``POST|DELETE /Call/{uuid}/Play|Speak|DTMF/``: accepted on a live call (202), stopped (204)."""
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
        return JSONResponse({"api_id": api_id(), "message": message}, status_code=202)
