"""A real Airflow API server (``airflow api-server``) with this provider installed, for browser tests.

The server runs in its own AIRFLOW_HOME, not the test session's: a fresh SQLite metadata DB migrated by
``airflow db migrate``, no DAGs, no example DAGs, and ``simple_auth_manager_all_admins`` so the UI opens
without a login page (Airflow's SimpleAuthManager then treats every request as an admin's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from _browser import find_chromium

if TYPE_CHECKING:
    from collections.abc import Iterator


_STARTUP_TIMEOUT = 120.0
_STOP_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(home: Path) -> dict[str, str]:
    """The environment of the server: the session's, less every Airflow setting the tests' conftest made."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])  # airflow spawns airflow
    (home / "dags").mkdir()
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__VOBIZ__CALLBACK_SECRET="ui-test-callback-secret-0123456789abcdef",
        AIRFLOW__VOBIZ__CALLBACK_STORE=f"sqlite:///{home / 'vobiz_callbacks.db'}",
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the server's whole process group: SIGTERM, then SIGKILL if it is still there."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        # Workers left behind by the leader (or a leader that ignored SIGTERM).
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=_STOP_TIMEOUT)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium; skips when it is missing (fails under CI, which installs it)."""
    return find_chromium()


@pytest.fixture(scope="session")
def airflow_api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running ``airflow api-server`` (core API and UI, one worker) with the provider."""
    home = tmp_path_factory.mktemp("ui-airflow-home")
    env = _server_env(home)
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stderr[-3000:]}"

    port = _free_port()
    log_path = home / "api-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--apps", "core", "-w", "1"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow api-server exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{base_url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"airflow api-server not healthy after {_STARTUP_TIMEOUT:.0f} s:\n{_tail(log_path)}"
                )
            time.sleep(0.5)
        yield base_url
    finally:
        _stop(process)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]
