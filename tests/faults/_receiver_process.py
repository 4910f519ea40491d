"""``vobiz-callbacks serve`` as a real process for the fault suite: on a fixed loopback port, in a process
group of its own, killed with SIGKILL and restarted on the same port and store.

Signatures are required (``[vobiz] require_signatures = true``) and checked against the configured public
URL, which is the receiver's own loopback origin; callbacks are signed with :data:`AUTH_TOKEN`, the auth
token of the ``vobiz_default`` connection (an ``AIRFLOW_CONN_*`` variable, as in a deployment).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from _ledger_helpers import token_for
from _receiver_server import cli_command
from _waiting import wait_until

from vobiz_provider.correlation import callback_url
from vobiz_provider.signatures import signature_headers

if TYPE_CHECKING:
    from pathlib import Path

    from vobiz_provider.correlation import CorrelationToken

SECRET = "faults-receiver-callback-secret-0123456789abcdef"
AUTH_TOKEN = "faults-receiver-auth-token"
#: Vobiz's budget for an answer: it treats a slower one as failed and retries.
VOBIZ_TIMEOUT = 3.0


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ReceiverProcess:
    """One ``vobiz-callbacks serve`` on ``127.0.0.1:port`` writing ``store_url``; its stderr goes to ``log``.

    :param store_url: The callback store.
    :param log: File the receiver's stderr is appended to (every start).
    :param port: The port (a free one by default); restarts reuse it.
    :param settings: More ``[vobiz]`` settings, by option name (``{"max_body_bytes": "4096"}``).
    """

    store_url: str
    log: Path
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        """The receiver's root, which is also its configured public ``callback_base_url``."""
        return f"http://127.0.0.1:{self.port}/vobiz"

    def env(self) -> dict[str, str]:
        """The receiver's environment: this test session's Airflow home, and the ``[vobiz]`` settings."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__VOBIZ__")}
        env.update(
            {
                "AIRFLOW__VOBIZ__CALLBACK_SECRET": SECRET,
                "AIRFLOW__VOBIZ__CALLBACK_STORE": self.store_url,
                "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": self.base_url,
                "AIRFLOW__VOBIZ__REQUIRE_SIGNATURES": "true",
                "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(
                    {"conn_type": "vobiz", "login": "MA_FAULTS1", "password": AUTH_TOKEN}
                ),
            }
        )
        env.update({f"AIRFLOW__VOBIZ__{name.upper()}": value for name, value in self.settings.items()})
        return env

    def start(self, *, timeout: float = 120) -> None:
        """Start the receiver and wait until it answers ``/health``."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    *cli_command(),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
                start_new_session=True,  # its own process group: killed as a whole
            )
        self.starts += 1
        wait_until(
            self._healthy,
            timeout=timeout,
            interval=0.05,
            message=lambda: f"the receiver did not start:\n{self.log.read_text(errors='replace')[-4000:]}",
        )

    def _healthy(self) -> bool:
        process = self.process
        if process is None or process.poll() is not None:
            raise AssertionError(
                f"the receiver exited ({process and process.returncode}):\n"
                + self.log.read_text(errors="replace")[-4000:]
            )
        try:
            return httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL the receiver's process group, and reap it."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 20 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill9()
        except ProcessLookupError:
            pass

    def __enter__(self) -> ReceiverProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # The whole group, whatever state the test left it in: nothing may outlive the test.
        self.stop()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def signed_post(
    client: httpx.Client,
    receiver: ReceiverProcess,
    kind: str,
    correlation: CorrelationToken,
    fields: dict[str, str],
    *,
    nonce: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """POST ``fields`` as Vobiz does: to the ``kind`` URL of ``correlation``'s try, signed."""
    url = callback_url(receiver.base_url, kind, token_for(correlation, kind, secret=SECRET))
    return client.post(url, data=fields, headers=signature_headers(url, AUTH_TOKEN, nonce=nonce), **kwargs)
