"""The session-wide leak scan (tests/conftest.py, tests/_leak_scan.py) fails a pytest session in which the
code logged a secret or wrote one to a file, naming the places and never the secret."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _suite_secrets import E2E_CALLBACK_SECRET, EMULATOR_AUTH_TOKEN, SESSION_CALLBACK_SECRET

REPO = Path(__file__).resolve().parents[2]


def test_a_session_that_leaks_fails_naming_each_place() -> None:
    # The inner session's basetemp lies outside this session's: its planted file must not fail this one.
    basetemp = Path(tempfile.mkdtemp(prefix="vobiz-planted-leaks-"))
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "python_files=_planted_leak_cases.py",
                f"--basetemp={basetemp / 'tmp'}",
                "tests/testing/_planted_leak_cases.py",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
            env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
        )
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)
    output = result.stdout + result.stderr
    assert "3 passed" in output, output  # the cases themselves pass: the scan alone fails the session
    assert result.returncode == 1, output
    assert "log record of vobiz_provider.planted" in output
    assert "callback secret (tests/conftest.py)" in output
    assert "task.log @ offset" in output and "auth token (the emulator) (base64)" in output
    printed = "Captured stdout call of tests/testing/_planted_leak_cases.py::test_prints_the_e2e_secret"
    assert printed in output and "callback secret (tests/e2e/conftest.py) (raw)" in output
    for secret in (SESSION_CALLBACK_SECRET, EMULATOR_AUTH_TOKEN, E2E_CALLBACK_SECRET):
        assert secret not in output
