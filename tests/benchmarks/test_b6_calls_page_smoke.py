"""B6 (the calls page at 100,000 calls) runs: a tiny store, SQLite only, in a subprocess (it sets its own
AIRFLOW_HOME). Its figures mean nothing here; the benchmark itself is run by hand (benchmarks/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.common import POSTGRES_ENV_VARS, REPO_ROOT


def test_b5_runs_on_a_small_store() -> None:
    env = {key: value for key, value in os.environ.items() if key not in POSTGRES_ENV_VARS}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.b6_calls_page", "--calls", "2000", "--repeat", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "### B6 calls page, 2,000 calls, sqlite" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "ms" not in line]
    assert len(rows) == 10, result.stdout
    assert all(float(row.rsplit("|", 2)[1]) > 0 for row in rows), result.stdout
    assert "postgresql" not in result.stdout
