"""Waiting for a condition instead of sleeping a fixed time (imported by name: ``tests/`` is on ``sys.path``).

A fixed sleep before a positive assertion guesses how long the code under test needs, and the guess is
wrong on a loaded CI machine. These helpers poll the condition itself until a generous deadline, which
only bounds how long a *failing* test takes.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

#: Seconds to wait before declaring a condition that should hold "soon" broken: long enough for a loaded
#: 2-core machine, short of the suite's 300 s per-test timeout.
DEFAULT_TIMEOUT = 30.0


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.01,
    what: str = "",
    message: Callable[[], str] | None = None,
) -> Any:
    """Call ``condition`` until it returns something truthy, and return that.

    :param condition: What to wait for.
    :param timeout: Seconds after which the wait fails with an :class:`AssertionError`.
    :param interval: Seconds between two calls of ``condition``.
    :param what: Description for the failure message.
    :param message: Builds the whole failure message instead (called only on failure: e.g. a log's tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(timeout, what or condition, message))
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], Any], *, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.01, what: str = ""
) -> Any:
    """Like :func:`wait_until`, yielding to the event loop between two calls of ``condition``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(timeout, what or condition, None))
        await asyncio.sleep(interval)


def _failure(timeout: float, what: object, message: Callable[[], str] | None) -> str:
    return message() if message is not None else f"timed out after {timeout} s waiting for {what}"
