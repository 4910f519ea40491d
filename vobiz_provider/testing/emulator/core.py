"""The emulator object: one Vobiz account (the switchboard) with its ASGI app, call lifecycles and sender.

:class:`VobizEmulator` is what tests hold. Its state - scripts, faults, settings, the log of requests,
callbacks and calls, and the ``wait_for_*`` methods - is the :class:`~.switchboard.Switchboard`'s; this
module adds the moving parts: the app serving the REST and control APIs, the lifecycle that runs each
call, and the HTTP client that delivers callbacks. The app and the lifecycles run on one event loop (the
server's); the test thread reads and waits through the thread-safe switchboard.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from vobiz_provider.testing.emulator.api import VobizApi
from vobiz_provider.testing.emulator.control import control_routes
from vobiz_provider.testing.emulator.delivery import CallbackSender
from vobiz_provider.testing.emulator.lifecycle import CallLifecycle
from vobiz_provider.testing.emulator.switchboard import Switchboard

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.testing.emulator.state import EmulatedCall

__all__ = ["VobizEmulator"]

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class VobizEmulator(Switchboard):
    """A strict local Vobiz account: API, call lifecycle and callbacks.

    :param settings: The settings (default :class:`EmulatorSettings`).
    :param default_script: Script for destinations without their own (default: answered after 50 ms,
        callee hangs up after 100 ms).
    :param setting_overrides: Individual settings, e.g. ``cps=1`` (applied on top of ``settings``).
    """

    # Created on first use (the sender once per event loop); the constructor is the switchboard's.
    _http: httpx.AsyncClient | None = None
    _http_loop: asyncio.AbstractEventLoop | None = None
    _sender: CallbackSender | None = None
    _app: Starlette | None = None

    @property
    def app(self) -> Starlette:
        """The ASGI app: ``/api/v1/...`` (Vobiz) and ``/_emulator/...`` (control); created on first use."""
        if self._app is None:

            @contextlib.asynccontextmanager
            async def lifespan(app: Starlette) -> AsyncIterator[None]:
                yield
                await self.aclose()

            api = VobizApi(switchboard=self, place_calls=self.place_calls)
            routes = [Route("/api/v1/{path:path}", api.handle, methods=_METHODS), *control_routes(self)]
            self._app = Starlette(routes=routes, lifespan=lifespan)
            self._app.state.emulator = self
        return self._app

    @property
    def sender(self) -> CallbackSender:
        """The callback sender bound to the running loop (created on first use on each loop)."""
        loop = asyncio.get_running_loop()
        if self._sender is None or self._http_loop is not loop:
            # Vobiz does not queue its own webhooks behind a connection pool: no connection limit, and
            # the 3 s budget (settings.callback_timeout, passed per request) covers only the exchange.
            self._http = httpx.AsyncClient(
                follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            )
            self._http_loop = loop
            self._sender = CallbackSender(client=self._http, settings=self.settings, log=self.log_callback)
        return self._sender

    def _current_sender(self) -> CallbackSender:
        return self.sender

    async def aclose(self) -> None:
        """Cancel running calls and close the HTTP client (called when the server stops)."""
        await self.cancel_tasks()
        if self._http is not None and self._http_loop is asyncio.get_running_loop():
            await self._http.aclose()
            self._http = None
            self._sender = None
            self._http_loop = None

    def place_calls(self, request: MakeCallRequest) -> tuple[str | list[str], list[EmulatedCall]]:
        """Create one call per destination and start their lifecycles (on the running loop).

        :return: The ``request_uuid`` value of the response and the calls.
        """
        response_value, calls = self.create_calls(request)
        for call in calls:
            lifecycle = CallLifecycle(switchboard=self, sender=self._current_sender, call=call)
            self.attach(call.call_uuid, lifecycle)
            lifecycle.start()
        return response_value, calls
