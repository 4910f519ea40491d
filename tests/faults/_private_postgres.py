"""A PostgreSQL server of a test's own, which the test may kill and start again.

The shared server (127.0.0.1:5432) must never be stopped, so outage scenarios run ``initdb`` into a temporary
directory and start ``postgres`` on a free loopback port, with trust authentication, from the Debian
binaries under ``/usr/lib/postgresql/*/bin``. :meth:`PrivatePostgres.kill` is a power cut of the database
alone: SIGKILL to the postmaster and every backend at once (its own process group), so the next
:meth:`PrivatePostgres.start` runs crash recovery.

PostgreSQL refuses to run as root; when the tests do, the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Seconds allowed for ``initdb``, a start (crash recovery included) or a stop on a loaded machine.
STARTUP_TIMEOUT = 120.0


def binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``postgres`` (or ``None``)."""
    found = [
        Path(path).parent
        for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if Path(path).with_name("postgres").exists()
    ]
    return max(
        found, key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0, default=None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PrivatePostgres:
    """One private server: :meth:`start`, :meth:`kill`, :meth:`start` again, :meth:`close`.

    :param bin_dir: Where ``initdb`` and ``postgres`` are.
    :param root: An empty directory for the data directory, the socket and the server log.
    """

    def __init__(self, *, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log_path = root / "postgres.log"
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        # PostgreSQL will not run as root: hand the directory to the postgres user.
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server's ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether the postmaster is alive."""
        return self._process is not None and self._process.poll() is None

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=STARTUP_TIMEOUT,
            user=self._user,
        )

    def initdb(self) -> None:
        """Create the cluster (trust authentication, superuser ``postgres``)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        """Start the postmaster and wait until it accepts connections (after crash recovery, if any)."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.root}",
                    "-c",
                    "max_connections=100",
                    "-c",
                    "shared_buffers=16MB",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self._user,
                start_new_session=True,  # its own process group: kill() reaches every backend
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.ready():
            if not self.running or time.monotonic() > deadline:
                raise RuntimeError(f"the private PostgreSQL did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        """Whether the server accepts connections (``pg_isready``)."""
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                "-q",
                "-U",
                "postgres",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-t",
                "2",
            ],
            check=False,
            capture_output=True,
        )
        return result.returncode == 0

    def kill(self) -> None:
        """SIGKILL to the postmaster and all its backends at once, and wait until they are gone."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STARTUP_TIMEOUT)
        # Backends are in the same group; wait until none is left, or the restart would find the
        # shared memory still attached.
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the server for good (fast shutdown, SIGKILL if it lingers)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # fast shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies waiting to be reaped do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and ")", so split after the last ")".
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state not in ("Z", "X"):
            return True
    return False


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private server in a temporary directory; stopped and removed afterwards."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin (initdb, postgres)")
    root = Path(tempfile.mkdtemp(prefix="vobiz-private-pg-"))
    server = PrivatePostgres(bin_dir=bin_dir, root=root)
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        try:
            server.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
