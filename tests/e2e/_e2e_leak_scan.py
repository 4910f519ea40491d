"""The leak scan of the end-to-end run: no callback secret or auth token in anything ``airflow standalone``
and the emulator wrote (used by ``test_standalone_airflow.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from _suite_secrets import E2E_CALLBACK_SECRET

from vobiz_provider.testing.secret_scan import Finding, ScanCounts, Secret, SecretScanner

if TYPE_CHECKING:
    from _processes import EmulatorProcess
    from _standalone import StandaloneAirflow

#: The tables of the Airflow metadata DB where a leak would reach users (all tables are scanned; these must
#: hold rows after the run, or the scan proved nothing).
SCANNED_METADATA_TABLES = ("xcom", "rendered_task_instance_fields", "task_instance", "log")


@dataclass
class LeakScan:
    """What :func:`scan_for_leaks` found and how much it read.

    :param findings: Each place a secret was found (file + offset, table cell, output line): never the value.
    :param counts: Files, bytes, tables, rows and texts scanned.
    :param metadata_rows: Rows of each of :data:`SCANNED_METADATA_TABLES`.
    """

    findings: list[Finding]
    counts: ScanCounts
    metadata_rows: dict[str, int]


def scan_for_leaks(airflow: StandaloneAirflow, emulator: EmulatorProcess) -> LeakScan:
    """Look for the run's secrets - the callback secret and the connection's auth token (raw, URL-encoded,
    base64, Basic-auth) - in everything the run wrote: the whole AIRFLOW_HOME (task logs of the worker and
    the triggerer, ``standalone.log`` with the API server's receiver, scheduler and triggerer output, the
    metadata DB table by table - XCom, rendered template fields, task instances, the log table - and the
    callback store), and the emulator process's output.

    Left out: the emulator's banner line ``AIRFLOW_CONN_VOBIZ_DEFAULT=...``, the test tool handing its own
    credentials to its user (it is how this test learns the connection).
    """
    import sqlalchemy as sa

    connection = emulator.connection
    scanner = SecretScanner(
        [
            Secret(name="callback secret", value=E2E_CALLBACK_SECRET),
            Secret(name="auth token", value=connection["password"], auth_id=connection["login"]),
        ]
    )
    findings = scanner.scan_tree(airflow.home)
    output = "".join(line for line in emulator.output if not line.startswith("AIRFLOW_CONN_VOBIZ_DEFAULT="))
    findings.extend(scanner.scan_text(output, "emulator process output"))
    engine = sa.create_engine(f"sqlite:///{airflow.home / 'airflow.db'}")
    try:
        with engine.connect() as conn:
            rows = {
                table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
                for table in SCANNED_METADATA_TABLES
            }
    finally:
        engine.dispose()
    return LeakScan(findings=findings, counts=scanner.counts, metadata_rows=rows)
