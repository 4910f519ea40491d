"""Constants and helpers shared by the client tests (imported by name: this folder is on ``sys.path``)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import httpx

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


def place_elsewhere(emulator: Any, call: Any) -> str:
    """Place ``call`` as another worker would (a raw POST, not through this process's clients)."""
    response = httpx.post(
        f"{emulator.base_url}/Account/{emulator.auth_id}/Call/",
        json=call.to_payload(),
        headers={"X-Auth-ID": emulator.auth_id, "X-Auth-Token": emulator.auth_token},
    )
    response.raise_for_status()
    return str(response.json()["request_uuid"])


def live_call_placed_elsewhere(emulator: Any, call: Any, *, started_ago: float) -> str:
    """Place ``call`` elsewhere, wait until it is answered (live), and move its session start
    ``started_ago`` seconds into the past (as if it had been up that long)."""
    uuid = place_elsewhere(emulator, call)
    placed = wait_for(
        lambda: emulator.calls[uuid] if emulator.calls[uuid].status == "in-progress" else None,
        what="the earlier call to be answered",
    )
    placed.ring_at = placed.created_at = datetime.now(timezone.utc) - timedelta(seconds=started_ago)
    return uuid
