"""The standalone server's ASGI app (``vobiz-callbacks serve``): the receiver mounted at ``/vobiz``, with
callbacks handed to it directly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount, Route

from vobiz_provider.receiver.app import MOUNT_PATH, create_app

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.ledger import CallLedger

__all__ = ["ServerApp", "build_server_app"]


class ServerApp:
    """The standalone server's ASGI app: callbacks go straight to the receiver, the rest to ``root``.

    A ``POST``/``GET`` to ``/vobiz/callbacks/{kind}`` is handed to the receiver's handler (it answers every
    error itself) without Starlette's middleware, router and endpoint wrapper: together a tenth of a
    callback's cost on the event loop. Anything else (another method, ``/vobiz/health``, ``/inbound``) is
    served by ``root``, which routes callbacks the same way.

    :param root: The Starlette app serving everything.
    :param handle_callback: The receiver's handler (``create_app(...).state.handle_callback``).
    """

    def __init__(
        self,
        *,
        root: Starlette,
        handle_callback: Callable[[str, Request], Awaitable[Response]],
    ) -> None:
        self.root = root
        self.state = root.state
        self._handle = handle_callback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _CALLBACK_METHODS:
            path: str = scope["path"]
            if path.startswith(_CALLBACK_PREFIX):
                kind = path[len(_CALLBACK_PREFIX) :]
                if kind and "/" not in kind:
                    response = await self._handle(kind, Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.root(scope, receive, send)


_CALLBACK_PREFIX: Final = f"{MOUNT_PATH}/callbacks/"
_CALLBACK_METHODS: Final = frozenset({"POST", "GET"})


def build_server_app(*, settings: VobizSettings, ledger: CallLedger) -> ServerApp:
    """The standalone server's root app: the receiver mounted at ``/vobiz``, nothing else.

    A plain Starlette router (the mounted receiver app brings its own error handling): no second layer of
    FastAPI middleware on every callback; in front of it, :class:`ServerApp` hands callbacks to the receiver
    directly.

    :param settings: The ``[vobiz]`` settings.
    :param ledger: The (upgraded) call ledger.
    """
    receiver_app = create_app(settings=settings, ledger=ledger)
    callbacks = Route(
        f"{MOUNT_PATH}/callbacks/{{kind}}",
        receiver_app.state.callback_endpoint,
        methods=["POST", "GET"],
        include_in_schema=False,
    )
    root = Starlette(routes=[callbacks, Mount(MOUNT_PATH, app=receiver_app)])
    root.state.receiver = receiver_app.state.receiver
    return ServerApp(root=root, handle_callback=receiver_app.state.handle_callback)
