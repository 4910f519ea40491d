"""The emulator's control API under ``/_emulator``: script and inspect a separately started emulator.

Used over HTTP by :class:`~vobiz_provider.testing.RemoteEmulator`, the demo and the benchmarks; no
authentication. The JSON shapes are part of that contract.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vobiz_provider.testing.emulator.script import CallScript

if TYPE_CHECKING:
    from starlette.requests import Request

    from vobiz_provider.testing.emulator.switchboard import Switchboard

__all__ = ["control_routes"]


class _Control:
    """``/_emulator/...``: script and inspect a separately started emulator over HTTP (no auth)."""

    def __init__(self, switchboard: Switchboard) -> None:
        self.switchboard = switchboard

    @staticmethod
    async def _json(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw) if raw.strip() else {}

    @staticmethod
    def _bad(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=400)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "auth_id": self.switchboard.settings.auth_id})

    async def settings(self, request: Request) -> Response:
        if request.method in ("PATCH", "POST", "PUT"):
            try:
                changes = await self._json(request)
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object of settings")
                self.switchboard.configure(**changes)
            except (ValueError, TypeError) as exc:
                return self._bad(str(exc))
        return JSONResponse(self.switchboard.settings.public_dict())

    async def scripts(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.switchboard.clear_scripts()
        elif request.method in ("POST", "PUT"):
            try:
                body = await self._json(request)
                if "default" in body:
                    self.switchboard.default_script = CallScript.from_dict(body["default"])
                if "destination" in body:
                    self.switchboard.script(
                        str(body["destination"]), CallScript.from_dict(body.get("script", {}))
                    )
                for destination, script in (body.get("scripts") or {}).items():
                    self.switchboard.script(destination, CallScript.from_dict(script))
            except (ValueError, TypeError, AttributeError) as exc:
                return self._bad(str(exc))
        return JSONResponse(
            {
                "default": self.switchboard.default_script.to_dict(),
                "scripts": {k: v.to_dict() for k, v in self.switchboard.scripts.items()},
            }
        )

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.switchboard.clear_faults()
            return JSONResponse({"faults": []})
        try:
            fault = self.switchboard.inject_fault(**(await self._json(request)))
        except (ValueError, TypeError) as exc:
            return self._bad(str(exc))
        return JSONResponse(fault.to_dict(), status_code=201)

    async def requests(self, request: Request) -> Response:
        return JSONResponse({"requests": [r.to_dict() for r in self.switchboard.requests]})

    async def callbacks(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        call_uuid = request.query_params.get("call_uuid")
        attempts = self.switchboard.callbacks_of(kind, call_uuid=call_uuid)
        return JSONResponse({"callbacks": [a.to_dict() for a in attempts]})

    async def calls(self, request: Request) -> Response:
        return JSONResponse({"calls": [c.to_dict() for c in self.switchboard.calls.values()]})

    async def hold(self, request: Request) -> Response:
        if request.method == "POST":
            self.switchboard.hold_calls()
        elif request.method == "DELETE":
            rate = request.query_params.get("per_second")
            try:
                per_second = float(rate) if rate else None
                self.switchboard.release_calls(per_second=per_second)
            except ValueError as exc:
                return JSONResponse({"error": f"per_second: {exc}"}, status_code=400)
        return JSONResponse({"holding": self.switchboard.holding})

    async def reset(self, request: Request) -> Response:
        self.switchboard.reset()
        return JSONResponse({"ok": True})

    async def wait_callbacks(self, request: Request) -> Response:
        query = request.query_params
        try:
            count = int(query.get("count", "1"))
            timeout = float(query.get("timeout", "10"))
        except ValueError:
            return self._bad("count and timeout must be numbers")
        try:
            attempts = await self.switchboard.await_callbacks(
                query.get("kind"), count, timeout, call_uuid=query.get("call_uuid")
            )
        except TimeoutError as exc:
            return JSONResponse({"error": str(exc)}, status_code=408)
        return JSONResponse({"callbacks": [a.to_dict() for a in attempts]})

    async def wait_idle(self, request: Request) -> Response:
        try:
            await self.switchboard.await_idle(float(request.query_params.get("timeout", "10")))
        except TimeoutError as exc:
            return JSONResponse({"error": str(exc)}, status_code=408)
        except ValueError:
            return self._bad("timeout must be a number")
        return JSONResponse({"ok": True})


def control_routes(switchboard: Switchboard) -> list[Route]:
    """The ``/_emulator/...`` routes controlling ``switchboard``."""
    control = _Control(switchboard)
    return [
        Route("/_emulator/health", control.health, methods=["GET"]),
        Route("/_emulator/settings", control.settings, methods=["GET", "PATCH", "POST", "PUT"]),
        Route("/_emulator/scripts", control.scripts, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/_emulator/faults", control.faults, methods=["POST", "DELETE"]),
        Route("/_emulator/requests", control.requests, methods=["GET"]),
        Route("/_emulator/callbacks", control.callbacks, methods=["GET"]),
        Route("/_emulator/calls", control.calls, methods=["GET"]),
        Route("/_emulator/hold", control.hold, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/reset", control.reset, methods=["POST"]),
        Route("/_emulator/wait/callbacks", control.wait_callbacks, methods=["GET"]),
        Route("/_emulator/wait/idle", control.wait_idle, methods=["GET"]),
    ]
