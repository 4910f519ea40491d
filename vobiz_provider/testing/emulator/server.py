"""Serve an emulator with uvicorn in a background thread (tests, demos) and hand out its coordinates."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from vobiz_provider.testing.emulator.core import VobizEmulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vobiz_provider.testing.emulator.script import CallScript
    from vobiz_provider.testing.emulator.state import CallbackAttempt, EmulatedCall, Fault

__all__ = ["EmulatorHandle", "run_emulator", "serve_in_thread"]


class EmulatorHandle:
    """A running emulator: where it listens, its credentials, and shortcuts to the emulator.

    :param emulator: The emulator being served.
    :param host: The host it listens on.
    :param port: The port it listens on.
    """

    def __init__(self, *, emulator: VobizEmulator, host: str, port: int) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port

    def __repr__(self) -> str:
        return f"EmulatorHandle(url={self.url!r}, auth_id={self.auth_id!r})"

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:8765`` (the control API is under ``/_emulator``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The Vobiz API base URL, e.g. ``http://127.0.0.1:8765/api/v1``."""
        return f"{self.url}/api/v1"

    @property
    def auth_id(self) -> str:
        """The account's Auth ID."""
        return self.emulator.settings.auth_id

    @property
    def auth_token(self) -> str:
        """The account's Auth Token."""
        return self.emulator.settings.auth_token

    @property
    def auth_headers(self) -> dict[str, str]:
        """``X-Auth-ID``/``X-Auth-Token`` headers for raw HTTP requests."""
        return {"X-Auth-ID": self.auth_id, "X-Auth-Token": self.auth_token}

    def connection_dict(self, **extra: Any) -> dict[str, Any]:
        """An Airflow connection (``conn_type`` ``vobiz``) pointing at this emulator.

        :param extra: More connection extras (e.g. ``callback_base_url``, ``timezone``).
        """
        return {
            "conn_type": "vobiz",
            "login": self.auth_id,
            "password": self.auth_token,
            "extra": {"base_url": self.base_url, **extra},
        }

    def connection_json(self, **extra: Any) -> str:
        """:meth:`connection_dict` as JSON, the value for ``AIRFLOW_CONN_VOBIZ_DEFAULT``."""
        return json.dumps(self.connection_dict(**extra))

    def connection_uri(self, **extra: Any) -> str:
        """The same connection as an Airflow URI (extras in the query string)."""
        extras = {"base_url": self.base_url, **extra}
        query = "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in extras.items())
        return f"vobiz://{quote(self.auth_id, safe='')}:{quote(self.auth_token, safe='')}@/?{query}"

    # ------------------------------------------------------------------ shortcuts to the emulator

    def script(self, destination: str, script: CallScript) -> None:
        """See :meth:`VobizEmulator.script`."""
        self.emulator.script(destination, script)

    def configure(self, **changes: Any) -> None:
        """See :meth:`VobizEmulator.configure`."""
        self.emulator.configure(**changes)

    def inject_fault(self, **kwargs: Any) -> Fault:
        """See :meth:`VobizEmulator.inject_fault`."""
        return self.emulator.inject_fault(**kwargs)

    def reset(self) -> None:
        """See :meth:`VobizEmulator.reset`."""
        self.emulator.reset()

    @property
    def requests(self) -> list[Any]:
        """See :attr:`VobizEmulator.requests`."""
        return self.emulator.requests

    @property
    def callbacks(self) -> list[CallbackAttempt]:
        """See :attr:`VobizEmulator.callbacks`."""
        return self.emulator.callbacks

    @property
    def calls(self) -> dict[str, EmulatedCall]:
        """See :attr:`VobizEmulator.calls`."""
        return self.emulator.calls

    def wait_for_callbacks(
        self, kind: str | None = None, count: int = 1, timeout: float = 10.0, *, call_uuid: str | None = None
    ) -> list[CallbackAttempt]:
        """See :meth:`VobizEmulator.wait_for_callbacks`."""
        return self.emulator.wait_for_callbacks(kind, count, timeout, call_uuid=call_uuid)

    def wait_for_call(self, call_uuid: str, timeout: float = 10.0) -> EmulatedCall:
        """See :meth:`VobizEmulator.wait_for_call`."""
        return self.emulator.wait_for_call(call_uuid, timeout)

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """See :meth:`VobizEmulator.wait_until_idle`."""
        self.emulator.wait_until_idle(timeout)


@contextlib.contextmanager
def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0
) -> Iterator[int]:
    """Serve an ASGI ``app`` with uvicorn in a daemon thread; yields the bound port; stops on exit.

    Also handy for a test's own callback receiver. ``port=0`` picks a free port.

    :param app: The ASGI application.
    :param host: Interface to listen on.
    :param port: Port (0: any free port).
    :param startup_timeout: Seconds to wait for the server to come up.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="auto",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    bound_port = sock.getsockname()[1]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"asgi-server-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            sock.close()
            raise RuntimeError(f"the server did not start on {host}:{bound_port}")
        time.sleep(0.01)
    try:
        yield bound_port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def run_emulator(
    emulator: VobizEmulator | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **setting_overrides: Any,
) -> Iterator[EmulatorHandle]:
    """Serve ``emulator`` with uvicorn in a background thread; stop it when the block ends.

    The call lifecycle runs on that server's event loop. ``port=0`` picks a free port.

    :param emulator: The emulator (default: a new one with ``setting_overrides``).
    :param host: Interface to listen on.
    :param port: Port (0: any free port).
    :param setting_overrides: Settings to apply (to a new emulator, or to ``emulator``).
    """
    if emulator is None:
        emulator = VobizEmulator(**setting_overrides)
    elif setting_overrides:
        emulator.configure(**setting_overrides)
    with serve_in_thread(emulator.app, host=host, port=port) as bound_port:
        yield EmulatorHandle(emulator=emulator, host=host, port=bound_port)
