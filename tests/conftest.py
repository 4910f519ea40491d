"""Test-wide setup.

Airflow reads its configuration when first imported, so the environment is fixed here, before any test
module imports Airflow: a private AIRFLOW_HOME with a SQLite metadata DB, no example DAGs, and no
connection other than those that tests put in ``AIRFLOW_CONN_*`` variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _leak_scan import SessionLeakScan
from _suite_secrets import SESSION_CALLBACK_SECRET

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vobiz_provider.ledger import CallLedger

_HOME = Path(tempfile.mkdtemp(prefix="vobiz-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ.setdefault("AIRFLOW__VOBIZ__CALLBACK_SECRET", SESSION_CALLBACK_SECRET)
os.environ.setdefault("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{_HOME / 'vobiz_callbacks.db'}")
# The suite runs with the default (signatures required) unless a test switches it off and says why.
os.environ.pop("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", None)

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The session's leak scan (tests/_leak_scan.py): log records as they are emitted, files and databases at
#: the end of the session, PostgreSQL schemas before they are dropped.
LEAK_SCAN = SessionLeakScan()


def _scanning_readouterr(self: Any) -> Any:
    """``capfd``/``capsys.readouterr()``, scanning what it returns: output a test reads is gone from its
    report, and under ``dag.test()`` it holds the task's log (structlog writes to stdout, not to logging)."""
    result = _READOUTERR(self)
    request = getattr(self, "request", None)
    where = f"output read by {getattr(getattr(request, 'node', None), 'nodeid', '?')}"
    LEAK_SCAN.scan_output(f"{result.out}{result.err}", where)
    return result


_READOUTERR = pytest.CaptureFixture.readouterr
pytest.CaptureFixture.readouterr = _scanning_readouterr  # type: ignore[method-assign]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Scan the output each test phase left in its report (what the test did not read itself)."""
    for name, content in report.sections:
        if name.startswith(("Captured stdout", "Captured stderr")):
            LEAK_SCAN.scan_output(content, f"{name} of {report.nodeid}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    LEAK_SCAN.attach()  # again before each test: Airflow's logging setup replaces the root's handlers


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    LEAK_SCAN.attach()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scan the session's AIRFLOW_HOME and pytest's basetemp; fail the session on any finding."""
    import time

    started = time.monotonic()
    scan = LEAK_SCAN
    scan.findings.extend(scan.scanner.scan_tree(_HOME))
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None)  # only if the session made one (never create it here)
    if basetemp is not None and Path(basetemp).is_dir():
        scan.findings.extend(scan.scanner.scan_tree(basetemp))
    findings = scan.all_findings()
    counts = scan.scanner.counts
    summary = (
        f"leak scan: {counts.files} files ({counts.bytes} bytes), {counts.tables} tables ({counts.rows} "
        f"rows), {counts.records} log records, {counts.texts} texts scanned in "
        f"{time.monotonic() - started:.1f} s at the end of the session: {len(findings)} secret(s) found"
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [summary, *(f"  {finding}" for finding in findings[:200])]
    if reporter is not None:
        reporter.write_line("\n".join(lines))
    else:
        print("\n".join(lines), file=sys.stderr)
    if findings and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The private AIRFLOW_HOME of this test session."""
    return _HOME


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """A migrated Airflow metadata DB (SQLite), created once per session; needed by ``dag.test()``."""
    marker = airflow_home / ".migrated"
    if not marker.exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            capture_output=True,
            env=os.environ.copy(),
        )
        marker.touch()
    return airflow_home


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the PostgreSQL server the tests may use.

    Unset (or empty): the PostgreSQL tests skip. Set: the server must answer, or every PostgreSQL test
    errors with the reason - a configured server that is down must fail the run, not skip 70-odd tests
    quietly.
    """
    url = os.environ.get("VOBIZ_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "no PostgreSQL configured: set VOBIZ_TEST_POSTGRES_URL (CI sets it to 127.0.0.1:5432/test)"
        )
    import sqlalchemy as sa

    engine = sa.create_engine(
        sa.engine.make_url(url).set(drivername="postgresql+psycopg2"), connect_args={"connect_timeout": 10}
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        safe = sa.engine.make_url(url).render_as_string(hide_password=True)
        pytest.fail(
            f"VOBIZ_TEST_POSTGRES_URL is set ({safe}) but PostgreSQL does not answer: {exc}\n"
            "start it, or unset the variable to skip the PostgreSQL tests",
            pytrace=False,
        )
    finally:
        engine.dispose()
    return url


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema (CI shares one database), dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    schema = f"vobiz_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(sa.engine.make_url(postgres_url).set(drivername="postgresql+psycopg2"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.engine.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        # The store's tables are gone once the schema is dropped: scan them now.
        LEAK_SCAN.findings.extend(
            LEAK_SCAN.scanner.scan_database(
                sa.engine.make_url(postgres_url)
                .set(drivername="postgresql+psycopg2")
                .render_as_string(hide_password=False),
                schema=schema,
                label=f"postgresql schema {schema}",
            )
        )
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite store file, made the ``[vobiz] callback_store`` of this test."""
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", url)
    return url


@pytest.fixture
def store(store_url: str) -> CallLedger:
    """The (process-wide cached) store behind :func:`store_url`, upgraded to the current schema."""
    from vobiz_provider.ledger import get_ledger

    instance = get_ledger(store_url)
    instance.upgrade()
    return instance


class _KeepUpAnswerHandler(BaseHTTPRequestHandler):
    """Answers every answer-URL fetch (and any callback) with XML that keeps the call up for a while."""

    body = b'<?xml version="1.0" encoding="UTF-8"?><Response><Wait length="20"/></Response>'

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def answer_url() -> Iterator[str]:
    """An answer URL on loopback whose XML keeps answered calls in progress for 20 s.

    Callbacks sent there are answered 200 and never reach a callback store.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepUpAnswerHandler)
    thread = threading.Thread(target=server.serve_forever, name="vobiz-test-answer", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/answer"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _fresh_pacer() -> Iterator[None]:
    """Forget the process-wide CPS reservations between tests (emulators of different tests may reuse a
    port, i.e. the same pacing key)."""
    from vobiz_provider.client.pacing import pacer

    pacer.reset()
    yield
    pacer.reset()
