"""``vobiz-callbacks serve`` as a subprocess of a test: started on a free port, its stderr collected."""

from __future__ import annotations

import queue
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterator

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)/vobiz")


def readable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` has data or an end of stream to read within ``timeout`` seconds (poll: any fd)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def cli_command() -> list[str]:
    """The installed console script when there is one (it proves the entry point), else ``-m``."""
    script = shutil.which("vobiz-callbacks", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "vobiz_provider.receiver.cli"]


@dataclass
class ServedReceiver:
    """A running ``vobiz-callbacks serve``: where it listens and what it has printed to stderr so far."""

    origin: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


@contextmanager
def serve_subprocess(
    env: dict[str, str],
    *args: str,
    preexec_fn: Callable[[], None] | None = None,
    startup_timeout: float = 90,
) -> Iterator[ServedReceiver]:
    """Run ``vobiz-callbacks serve --host 127.0.0.1 --port 0 <args>`` until the block ends.

    :param env: The environment of the server.
    :param args: More ``serve`` arguments.
    :param preexec_fn: Run in the child before it executes (e.g. to lower its resource limits).
    :param startup_timeout: Seconds to wait for the "listening on" line.
    """
    process = subprocess.Popen(
        [*cli_command(), "serve", "--host", "127.0.0.1", "--port", "0", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
            seen.append(line)

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    try:
        origin = None
        deadline = time.monotonic() + startup_timeout
        while origin is None:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > deadline or (process.poll() is not None and not pumping.is_alive()):
                    raise RuntimeError("vobiz-callbacks serve did not start:\n" + "".join(seen)) from None
                continue
            match = _LISTENING.search(line)
            origin = match.group(1) if match else None
        yield ServedReceiver(origin=origin, process=process, lines=seen)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pumping.join(10)
