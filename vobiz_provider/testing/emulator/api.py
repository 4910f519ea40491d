"""The emulator's Vobiz REST API under ``/api/v1``: logging, injected faults, authentication and routing.

Routing is strict on purpose, as Vobiz is: paths are case-sensitive, and a wrongly cased path
(``/account/...``, ``/call/``) answers **401**, as the Plivo-migration "gotchas" page documents.
``POST .../Call`` without the trailing slash answers **404** (make-call page). Order of checks:

1. ``X-Auth-ID``/``X-Auth-Token`` missing or wrong → 401 (for every ``/api/v1`` path);
2. no route matches, but one matches case-insensitively → 401; nothing matches → 404;
3. the ``{auth_id}`` in the path differs from the header → 404 (the docs' "unknown auth_id").

The endpoints themselves are in :mod:`~vobiz_provider.testing.emulator.api_calls` and
:mod:`~vobiz_provider.testing.emulator.api_account`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from vobiz_provider.testing.emulator.api_account import AccountEndpoints
from vobiz_provider.testing.emulator.api_calls import CallEndpoints, PlaceCalls
from vobiz_provider.testing.emulator.api_common import Endpoints
from vobiz_provider.testing.emulator.state import ReceivedRequest

if TYPE_CHECKING:
    from vobiz_provider.testing.emulator.switchboard import Switchboard

__all__ = ["VobizApi"]

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


def _decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class VobizApi(Endpoints):
    """The REST API of one emulated account; :meth:`handle` serves every ``/api/v1`` request.

    :param switchboard: The account the API serves.
    :param place_calls: Places the calls of an accepted Make-Call request.
    """

    def __init__(self, *, switchboard: Switchboard, place_calls: PlaceCalls) -> None:
        super().__init__(switchboard=switchboard)
        calls = CallEndpoints(switchboard=switchboard, place_calls=place_calls)
        account = AccountEndpoints(switchboard=switchboard)
        segment = r"(?P<auth_id>[^/]+)"
        call = r"(?P<call_uuid>[^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(rf"^/Account/{segment}/Call/$"), calls.make_call),
            ("GET", re.compile(rf"^/Account/{segment}/Call/?$"), calls.list_calls),
            ("GET", re.compile(rf"^/Account/{segment}/Call/{call}/?$"), calls.get_call),
            ("DELETE", re.compile(rf"^/Account/{segment}/Call/{call}/?$"), calls.hangup_call),
            ("POST", re.compile(rf"^/Account/{segment}/Call/{call}/$"), calls.transfer_call),
            ("POST", re.compile(rf"^/Account/{segment}/Call/{call}/Record/$"), calls.record),
            ("DELETE", re.compile(rf"^/Account/{segment}/Call/{call}/Record/$"), calls.record),
            (
                "POST",
                re.compile(rf"^/Account/{segment}/Call/{call}/(?P<action>Play|Speak|DTMF)/$"),
                calls.action,
            ),
            (
                "DELETE",
                re.compile(rf"^/Account/{segment}/Call/{call}/(?P<action>Play|Speak)/$"),
                calls.action,
            ),
            ("GET", re.compile(rf"^/Account/{segment}/cdr/?$"), account.list_cdrs),
            ("GET", re.compile(rf"^/Account/{segment}/cdr/{call}/?$"), account.get_cdr),
            ("GET", re.compile(rf"^/Account/{segment}/concurrency/?$"), account.concurrency),
            ("GET", re.compile(r"^/auth/me/?$"), account.auth_me),
        ]
        self.insensitive = [re.compile(p.pattern, re.IGNORECASE) for _, p, _ in self.routes]

    async def handle(self, request: Request) -> Response:
        """Entry point of every ``/api/v1`` request: log it, apply faults, dispatch."""
        switchboard = self.switchboard
        raw = await request.body()
        received = ReceivedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=_decode_body(raw),
        )
        switchboard.log_request(received)
        fault = switchboard.take_fault(request.method, request.url.path)
        if fault is not None and not fault.accept:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            response = (
                self.fault_response(fault, fault.status)
                if fault.status is not None
                else await self.dispatch(request)
            )
        else:
            response = await self.dispatch(request)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    response = self.fault_response(fault, fault.status)
        received.status = response.status_code
        return response

    async def dispatch(self, request: Request) -> Response:
        """Authenticate and route one request (see the module docstring for the order of checks)."""
        settings = self.switchboard.settings
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
