"""What the two browser tests share: Debian's chromium driven by Playwright's bundled driver (no browser
download, nothing reached but loopback), and where their screenshots go."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def find_chromium() -> Path:
    """Debian's chromium; skips when it is missing (fails under CI, which installs it)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed: run scripts/ci-browser-deps (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests but {reason}")
        pytest.skip(reason)
    return CHROMIUM


def screenshot(page: Page, name: str, capsys: pytest.CaptureFixture[str], *, full_page: bool = False) -> Path:
    """Save a screenshot of ``page`` as ``test-artifacts/<name>`` and print where it is."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    with capsys.disabled():
        print(f"\nscreenshot: {path}")
    return path
