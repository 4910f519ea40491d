"""Constants and helpers shared by the client tests (imported by name: this folder is on ``sys.path``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

CALLER = "14155550100"
DESTINATION = "14155550199"

# Fast retries for tests: the policy is the same, only the backoff unit is shorter.
FAST = {"backoff_base": 0.01, "backoff_max": 2.0}


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def api_requests(emulator: Any, method: str | None = None, path_contains: str = "") -> list[Any]:
    """The API requests the emulator received, filtered."""
    return [
        r for r in emulator.requests if (method is None or r.method == method) and path_contains in r.path
    ]
