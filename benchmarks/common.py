"""What every benchmark shares: result sections and target checks, statistics, machine info, stores, forms.

Nothing here imports Airflow at module level: :func:`prepare_environment` must run first (a private
``AIRFLOW_HOME``, the ``[vobiz]`` settings of the benchmark) because Airflow reads its configuration when it
is first imported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent

#: ``[vobiz] callback_secret`` of every benchmark process (signs the correlation tokens).
BENCH_SECRET = "benchmark-callback-secret-0123456789abcdef"
#: Credentials of the emulated account (also the key that signs the receiver benchmark's callbacks).
BENCH_AUTH_ID = "MA_BENCHMARK1"
BENCH_AUTH_TOKEN = "benchmark-auth-token"
#: Environment variables naming the PostgreSQL server of the PostgreSQL rows (first one set wins).
POSTGRES_ENV_VARS = ("VOBIZ_BENCH_POSTGRES_URL", "VOBIZ_TEST_POSTGRES_URL")


# ---------------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Check:
    """One target of the issue, measured.

    :param name: What is checked, e.g. ``"B1 store queries per interval, N=10,000, SQLite"``.
    :param measured: The measured figure, formatted.
    :param target: The target, formatted (e.g. ``"<= 1"``).
    :param passed: Whether the target is met (``None``: not measured, e.g. no PostgreSQL).
    :param note: Why it is missed or not measured.
    """

    name: str
    measured: str
    target: str
    passed: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "**MISS**", None: "n/a"}[self.passed]


@dataclass(kw_only=True)
class Section:
    """The result of one benchmark: its table, its target checks and notes on how it was measured.

    :param key: ``b1`` ... ``b4``.
    :param title: Heading.
    :param method: How it was measured (sizes, scaling, repetitions).
    :param headers: Column names of the table.
    :param rows: Table rows (already formatted cells).
    :param checks: The issue's targets, measured.
    :param notes: Findings and caveats.
    """

    key: str
    title: str
    method: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        return markdown_table(self.headers, self.rows)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    if not headers:
        return ""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# statistics and formatting
# ---------------------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median (``nan`` for no values)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (``nan`` for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    """A number for a table cell (``-`` for missing values)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}{unit}"


def fmt_ms(seconds: float | None, digits: int = 0) -> str:
    """Seconds shown as milliseconds."""
    if seconds is None or math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:,.{digits}f} ms"


def fmt_int(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.0f}"


# ---------------------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------------------


def prepare_environment(home: Path | None = None) -> Path:
    """Give this process (and its children) a private Airflow home and the benchmark's ``[vobiz]`` settings.

    Must run before Airflow is imported. Returns the Airflow home.

    :param home: The directory to use; a new temporary one when ``None``.
    """
    home = home or Path(tempfile.mkdtemp(prefix="vobiz-bench-airflow-home-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    os.environ["AIRFLOW__VOBIZ__CALLBACK_SECRET"] = BENCH_SECRET
    os.environ["AIRFLOW__VOBIZ__CALLBACK_STORE"] = f"sqlite:///{home / 'vobiz_callbacks.db'}"
    return home


def postgres_base_url() -> str | None:
    """The PostgreSQL server of the PostgreSQL rows, from the environment (``None``: skip them)."""
    for name in POSTGRES_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _with_psycopg2(url: str) -> str:
    return re.sub(r"^postgresql(\+\w+)?://", "postgresql+psycopg2://", url)


@contextlib.contextmanager
def postgres_schema(base_url: str, label: str) -> Iterator[str]:
    """A dedicated, empty PostgreSQL schema for one benchmark case; dropped (with its tables) on exit.

    Yields a store URL whose connections use that schema (``options=-csearch_path=...``), so the store's
    tables never touch the shared ``public`` schema of the test database.

    :param base_url: ``postgresql://user@host:port/db``.
    :param label: Part of the schema name.
    """
    import sqlalchemy as sa

    schema = f"vobiz_bench_{re.sub(r'[^a-z0-9_]', '_', label.lower())}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(_with_psycopg2(base_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in base_url else "?"
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        try:
            from vobiz_provider.ledger import dispose_ledgers

            dispose_ledgers()
        except Exception:
            pass
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@contextlib.contextmanager
def sqlite_store_url(label: str) -> Iterator[str]:
    """A store URL for a new SQLite file in a temporary directory (removed on exit)."""
    with tempfile.TemporaryDirectory(prefix=f"vobiz-bench-{label}-") as directory:
        yield f"sqlite:///{Path(directory) / 'callbacks.db'}"


@contextlib.contextmanager
def store_url(backend: str, label: str) -> Iterator[str]:
    """A fresh store of ``backend`` (``sqlite`` or ``postgresql``) for one case."""
    if backend == "sqlite":
        with sqlite_store_url(label) as url:
            yield url
    else:
        base = postgres_base_url()
        if base is None:
            raise RuntimeError("no PostgreSQL configured")
        with postgres_schema(base, label) as url:
            yield url


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float = 60.0, process: subprocess.Popen[Any] | None = None) -> None:
    """Wait until ``url`` answers (any status), or raise naming the process's exit."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server process exited with {process.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def receiver_env(store: str, base_url: str) -> dict[str, str]:
    """The environment of a ``vobiz-callbacks serve`` under benchmark: this process's, plus the ``[vobiz]``
    settings of ``store`` and ``base_url`` (signatures required) and the bench's ``vobiz_default`` connection.

    :param store: The callback store URL.
    :param base_url: The receiver root, also its public ``callback_base_url``.
    """
    import json

    env = os.environ.copy()
    env.update(
        {
            "AIRFLOW__VOBIZ__CALLBACK_STORE": store,
            "AIRFLOW__VOBIZ__CALLBACK_SECRET": BENCH_SECRET,
            "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": base_url,
            "AIRFLOW__VOBIZ__REQUIRE_SIGNATURES": "True",
            "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(
                {"conn_type": "vobiz", "login": BENCH_AUTH_ID, "password": BENCH_AUTH_TOKEN}
            ),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    return env


def stop_process(process: subprocess.Popen[Any], *, timeout: float = 10.0) -> None:
    """Stop a server subprocess started by a benchmark (SIGTERM, then SIGKILL)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def vm_rss_bytes() -> int:
    """Resident set size of this process (``VmRSS`` of ``/proc/self/status``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


class StatementCounter:
    """Counts the SQL statements an engine sends (``before_cursor_execute``), split by kind.

    ``queries`` are the statements that read or write data; ``transaction`` are ``BEGIN``/``COMMIT``/
    ``PRAGMA``-like statements some dialects send through a cursor (SQLite's ``BEGIN`` of the store).

    :param engine: The SQLAlchemy engine to watch.
    """

    _CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE", "SET ")

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self._lock = threading.Lock()
        self.queries = 0
        self.transaction = 0
        self.selects = 0
        sa.event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        head = statement.lstrip()[:10].upper()
        with self._lock:
            if head.startswith(self._CONTROL):
                self.transaction += 1
            else:
                self.queries += 1
                if head.startswith("SELECT"):
                    self.selects += 1

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.queries, self.transaction


# ---------------------------------------------------------------------------------------------------------
# Vobiz-like payloads
# ---------------------------------------------------------------------------------------------------------


def destination(index: int) -> str:
    """A distinct E.164 destination per index."""
    return f"9198{index:08d}"


def hangup_form(*, call_uuid: str, request_uuid: str, to: str) -> dict[str, str]:
    """A hangup callback's form fields as Vobiz sends them (the full Plivo-style superset)."""
    return {
        "ALegRequestUUID": request_uuid,
        "ALegUUID": call_uuid,
        "AnswerTime": "2026-11-27 07:00:02",
        "BillDuration": "60",
        "BillRate": "0.6",
        "CallStatus": "completed",
        "CallUUID": call_uuid,
        "Direction": "outbound",
        "Duration": "12",
        "EndTime": "2026-11-27 07:00:14",
        "Event": "Hangup",
        "From": "919000000001",
        "HangupCause": "NORMAL_CLEARING",
        "HangupCauseCode": "4000",
        "HangupCauseName": "Normal Hangup",
        "HangupSource": "Callee",
        "ParentAuthID": BENCH_AUTH_ID,
        "RequestUUID": request_uuid,
        "STIRAttestation": "Not Applicable",
        "STIRVerification": "Not Applicable",
        "SessionStart": "2026-11-27 01:30:00.000000",
        "StartTime": "2026-11-27 07:00:00",
        "To": to,
        "TotalCost": "0.60000",
    }


def new_uuid() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------------------
# machine info
# ---------------------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram() -> str:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def _postgres_version() -> str:
    base = postgres_base_url()
    if base is None:
        return "not configured (PostgreSQL rows skipped)"
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(_with_psycopg2(base))
        with engine.connect() as conn:
            text = conn.exec_driver_sql("SHOW server_version").scalar()
        engine.dispose()
        return f"{text} (server at {re.sub(r'//[^@/]*@', '//', base)})"
    except Exception as err:
        return f"unreachable ({type(err).__name__})"


def machine_info() -> dict[str, str]:
    """The facts RESULTS.md records about the machine and the software."""
    import sqlite3

    try:
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    return {
        "Date (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "RAM": _ram(),
        "OS": f"{platform.system()} {platform.release()}",
        "Load average at start (1/5/15 min)": load,
        "Python": sys.version.split()[0],
        "Airflow": _version("apache-airflow"),
        "SQLAlchemy": _version("sqlalchemy"),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": _postgres_version(),
        "httpx / uvicorn / FastAPI": f"{_version('httpx')} / {_version('uvicorn')} / {_version('fastapi')}",
        "uvloop / httptools": f"{_version('uvloop')} / {_version('httptools')}",
    }
