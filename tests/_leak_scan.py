"""The session-wide leak scan: no secret of the suite (``tests/_suite_secrets.py``) in anything the code under
test wrote or logged during the session.

What it scans (``tests/conftest.py`` wires it in):

* **captured output**: what each test's code wrote to stdout/stderr, as pytest captured it - both the part a
  test read itself (``capfd``/``capsys.readouterr()``) and the rest (the report's captured sections). Under
  ``dag.test()`` a task's own log (``self.log``, structlog in Airflow 3) goes there, not through
  :mod:`logging`;
* **log records**: a :class:`~vobiz_provider.testing.secret_scan.SecretLogHandler` on the root logger and on
  every ``airflow*`` / ``vobiz_provider*`` logger that does not propagate, re-attached before each test
  (Airflow's logging setup replaces the root's handlers); it sees every record of ``vobiz_provider.*`` and
  ``airflow.*`` at the levels enabled, rendered with its arguments and exception text;
* **the session's AIRFLOW_HOME** at the end of the session: task logs, the metadata DB (every table, so
  XCom, rendered template fields, task instances, the log table), the default callback store;
* **pytest's basetemp** at the end of the session: every file the tests' ``tmp_path`` and the processes they
  started wrote (receiver and emulator output, stores, the e2e run's AIRFLOW_HOME), SQLite files also table
  by table;
* **PostgreSQL stores**: each ``pg_schema_url`` schema, every table, just before the fixture drops it.

What it leaves out, and why (the scan must not flag a test's own inputs, only what the code emitted):

* nothing among the files and tables: no test writes a secret into a file or table as its own input today
  (a test that must would name the file in :data:`INPUT_FILE_NAMES`, which is empty);
* records of loggers other than ``airflow*`` / ``vobiz_provider*`` (httpx, uvicorn, the tests' own);
* what tests assert about directly (exceptions caught with ``pytest.raises``, strings a test builds): those
  are checked by the tests that make them, e.g. ``tests/client/test_client_errors.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from _suite_secrets import SUITE_SECRETS

from vobiz_provider.testing.secret_scan import Finding, SecretLogHandler, SecretScanner

if TYPE_CHECKING:
    from pathlib import Path

#: Files a test writes as the configuration of what it starts (they would hold a secret because the test put
#: it there), matched by name. None today.
INPUT_FILE_NAMES: frozenset[str] = frozenset()
#: Logger-name prefixes whose records are scanned.
WATCHED_LOGGERS = ("vobiz_provider", "airflow")


def is_test_input(path: Path) -> bool:
    """Whether ``path`` is a configuration file a test wrote for what it runs (see the module docs)."""
    return path.name in INPUT_FILE_NAMES


@dataclass
class SessionLeakScan:
    """The scanner, the log handler and the findings of one pytest session."""

    scanner: SecretScanner = field(
        default_factory=lambda: SecretScanner(SUITE_SECRETS, skip_file=is_test_input)
    )
    findings: list[Finding] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.handler = SecretLogHandler(self.scanner, prefixes=WATCHED_LOGGERS)

    def attach(self) -> None:
        """Put the handler on the root logger and on every watched logger that does not propagate."""
        loggers = [logging.getLogger()]
        for name, candidate in list(logging.root.manager.loggerDict.items()):
            if (
                isinstance(candidate, logging.Logger)
                and name.startswith(WATCHED_LOGGERS)
                and not candidate.propagate
            ):
                loggers.append(candidate)
        for logger in loggers:
            if self.handler not in logger.handlers:
                logger.addHandler(self.handler)

    def scan_output(self, text: str, where: str) -> None:
        """Scan output the code wrote to stdout/stderr during a test (task logs under ``dag.test()``)."""
        if text:
            self.findings.extend(self.scanner.scan_text(text, where))

    def all_findings(self) -> list[Finding]:
        """The findings of the scans so far and of the log records."""
        return [*self.findings, *self.handler.findings]
