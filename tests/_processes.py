"""Processes a test starts and must stop: free ports, process groups, log tails, the emulator as a process.

Imported by name (``tests/`` is on ``sys.path``) by the end-to-end fixtures (``tests/e2e/conftest.py``) and
the fault suite (``tests/faults``). Every process started with ``start_new_session=True`` leads its own
process group, and :func:`stop_process_group` stops the whole group (SIGTERM, then SIGKILL after a grace
period), so no LocalExecutor worker or triggerer child outlives the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from vobiz_provider.testing import RemoteEmulator

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Seconds a process group gets to exit after SIGTERM before it is killed.
STOP_GRACE = 15.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redact(text: str) -> str:
    """Hide correlation tokens (``t=...``) in text dumped on failure."""
    return re.sub(r"([?&]t=)[^&\s\"']+", r"\1***", text)


def tail(path: Path, lines: int = 80, *, skip: re.Pattern[str] | None = None) -> str:
    """The last ``lines`` lines of a text file (empty if there is none), leaving out those ``skip`` finds."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if skip is None or not skip.search(line)]
    return redact("\n".join(kept[-lines:]))


def components_healthy(health: dict[str, Any], names: tuple[str, ...]) -> bool:
    """Whether every component ``names`` of an Airflow ``/monitor/health`` answer says ``healthy``."""
    return all((health.get(name) or {}).get("status") == "healthy" for name in names)


def execution_api_warm(api_url: str, timeout: float) -> bool:
    """Make the API server build its Execution API routes, which it does on their first request (20-40 s on
    2 busy cores, during which nothing else answers): paid for while starting rather than while tasks run.
    ``True`` once it answered without a server error."""
    try:
        warm = httpx.get(f"{api_url}/execution/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return warm.status_code < 500


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies waiting to be reaped do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: zombies count too
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_process_group(process: subprocess.Popen[Any], grace: float = STOP_GRACE) -> None:
    """SIGTERM the process group of ``process`` (started with ``start_new_session``), SIGKILL it after
    ``grace`` seconds if anything of it is still running."""
    pgid = process.pid  # the leader of its own session: its pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            break
        process.poll()
        time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


# ------------------------------------------------------------------------------------------ the emulator


@dataclass
class EmulatorProcess:
    """``python -m vobiz_provider.testing.emulator`` running in its own process, driven over its control API.

    :param process: The emulator process.
    :param remote: Client of its control API (scripts, calls, callbacks, requests).
    :param connection: The Airflow connection (as a dict) pointing at it.
    :param output: Lines the process printed so far.
    """

    process: subprocess.Popen[str]
    remote: RemoteEmulator
    connection: dict[str, Any]
    output: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Calls and callback attempts, for failure messages (tokens hidden)."""
        try:
            calls = [
                {k: c.get(k) for k in ("call_uuid", "to", "status", "hangup_cause_code", "xml_log")}
                for c in self.remote.calls()
            ]
            callbacks = [
                {k: c.get(k) for k in ("kind", "url", "attempt", "status", "error", "sent_at")}
                for c in self.remote.callbacks()
            ]
        except (httpx.HTTPError, ValueError) as exc:
            return f"emulator unreachable: {exc}\n" + redact("".join(self.output[-40:]))
        return redact(
            "emulator calls:\n"
            + json.dumps(calls, indent=1)
            + "\nemulator callback attempts:\n"
            + json.dumps(callbacks, indent=1)
            + "\nemulator output (tail):\n"
            + "".join(self.output[-40:])
        )


@contextlib.contextmanager
def emulator_subprocess(*args: str) -> Iterator[EmulatorProcess]:
    """The emulator as a separate process on a free loopback port (extra CLI ``args``), stopped on exit.

    :raises RuntimeError: When it does not start within 30 s.
    """
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vobiz_provider.testing.emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("AIRFLOW_CONN_VOBIZ_DEFAULT="):
                ready.set()
        ready.set()  # the process ended: stop waiting

    threading.Thread(target=pump, name="emulator-output", daemon=True).start()
    try:
        if not ready.wait(30) or process.poll() is not None:
            raise RuntimeError(f"the emulator did not start:\n{''.join(output)}")
        banner = next(line for line in output if "Vobiz emulator:" in line)
        match = re.search(r"Vobiz emulator: (http://[^/\s]+)/api/v1", banner)
        conn_line = next(line for line in output if line.startswith("AIRFLOW_CONN_VOBIZ_DEFAULT="))
        assert match is not None, output
        connection = json.loads(conn_line.split("=", 1)[1].strip().strip("'"))
        with RemoteEmulator(match.group(1)) as remote:
            yield EmulatorProcess(process=process, remote=remote, connection=connection, output=output)
    finally:
        stop_process_group(process, grace=5)
