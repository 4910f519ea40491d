"""Cases that leak on purpose, run only by ``test_session_leak_scan.py`` in a pytest session of their own: the
session's leak scan (tests/conftest.py) must fail that session. Not collected otherwise (the name does not
match ``test_*.py``)."""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

from _suite_secrets import E2E_CALLBACK_SECRET, EMULATOR_AUTH_TOKEN, SESSION_CALLBACK_SECRET

if TYPE_CHECKING:
    from pathlib import Path


def test_logs_the_callback_secret() -> None:
    logging.getLogger("vobiz_provider.planted").warning("signing with %s", SESSION_CALLBACK_SECRET)


def test_prints_the_e2e_secret() -> None:
    print(f"callback to https://x/?s={E2E_CALLBACK_SECRET}")


def test_writes_the_auth_token_in_base64(tmp_path: Path) -> None:
    encoded = base64.b64encode(f"header {EMULATOR_AUTH_TOKEN}".encode()).decode()
    (tmp_path / "task.log").write_text(f"Authorization: {encoded}\n")
