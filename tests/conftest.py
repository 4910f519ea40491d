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
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="vobiz-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ.setdefault("AIRFLOW__VOBIZ__CALLBACK_SECRET", "test-callback-secret")
os.environ.setdefault("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{_HOME / 'vobiz_callbacks.db'}")

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    """URL of the PostgreSQL server the tests may use; skips when none is configured."""
    url = os.environ.get("VOBIZ_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "no PostgreSQL configured: set VOBIZ_TEST_POSTGRES_URL (CI sets it to 127.0.0.1:5432/test)"
        )
    return url
