"""Retry policies of the Vobiz client (tenacity), for idempotent requests and for placing a call.

* **Idempotent requests** (``GET``, ``DELETE``) are retried on 429, 5xx, network errors and timeouts,
  up to ``max_retries`` times.
* **``POST /Call/``** has no idempotency key, so it is re-sent only when Vobiz provably did not accept it:
  the connection could not be opened (connect error, connect or pool timeout) or Vobiz answered 429.
  After a read timeout, a broken connection or a 5xx the outcome is *unknown*
  (:func:`is_outcome_unknown`): the client does not re-send but looks for the call instead.

Waits are jittered exponential backoff (``wait_random_exponential``) capped at ``backoff_max``; when Vobiz
says how long to wait (``Retry-After`` or ``details.retryAfter`` on a 429) that wait is used instead, and
if it is longer than ``backoff_max`` the client gives up at once and raises the
:class:`~vobiz_provider.exceptions.VobizRateLimitedError` (whose ``retry_after`` tells the caller when to
come back) rather than retrying too early.

Both the sync and the async client build their ``Retrying`` / ``AsyncRetrying`` from :func:`retry_kwargs`.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from vobiz_provider.exceptions import VobizError, VobizRateLimitedError, VobizServerError

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = [
    "describe_exception",
    "is_outcome_unknown",
    "is_retryable",
    "is_retryable_make_call",
    "retry_kwargs",
]

log = logging.getLogger(__name__)

# Failures after which the request cannot have reached Vobiz's application.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after which an idempotent request is safely repeated.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def is_retryable(exc: BaseException) -> bool:
    """Whether an idempotent request (``GET``/``DELETE``) should be retried after ``exc``."""
    return isinstance(exc, (VobizRateLimitedError, VobizServerError, *_TRANSIENT))


def is_retryable_make_call(exc: BaseException) -> bool:
    """Whether ``POST /Call/`` may be re-sent after ``exc``: only when Vobiz provably did not accept it."""
    return isinstance(exc, (VobizRateLimitedError, *_NOT_SENT))


def is_outcome_unknown(exc: BaseException) -> bool:
    """Whether ``POST /Call/`` may have placed the call although it failed (read timeout, 5xx, ...)."""
    if is_retryable_make_call(exc):
        return False
    return isinstance(exc, (VobizServerError, httpx.TransportError))


def describe_exception(exc: BaseException) -> str:
    """A one-line description of ``exc`` that never contains request headers.

    Our own exceptions carry redacted messages; for ``httpx`` errors only the class name and the message
    are used (never the attached request, whose headers hold the auth token).
    """
    if isinstance(exc, VobizError):
        return f"{type(exc).__name__}: {exc}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _wait_retry_after(wait_base):
    """Use the server's ``retry_after`` when a 429 gives one, else the fallback backoff."""

    def __init__(self, fallback: wait_base) -> None:
        self._fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        retry_after = _retry_after(retry_state)
        if retry_after is not None:
            # A little jitter so that clients told the same Retry-After do not come back in lockstep.
            return retry_after + random.uniform(0, min(0.25, retry_after * 0.1))
        return self._fallback(retry_state)


class _stop_if_retry_after_exceeds(stop_base):
    """Give up when the server asks for a longer wait than we are willing to sleep."""

    def __init__(self, limit: float) -> None:
        self._limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        retry_after = _retry_after(retry_state)
        return retry_after is not None and retry_after > self._limit


def _retry_after(retry_state: RetryCallState) -> float | None:
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    if isinstance(exc, VobizRateLimitedError) and exc.retry_after is not None:
        return max(0.0, float(exc.retry_after))
    return None


def retry_kwargs(
    *,
    label: str,
    make_call: bool,
    max_retries: int,
    backoff_base: float,
    backoff_max: float,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying`` for one request.

    :param label: ``"METHOD /path"`` of the request, for log lines.
    :param make_call: Use the send-once policy of ``POST /Call/`` instead of the idempotent one.
    :param max_retries: Retries after the first attempt (0 disables retrying).
    :param backoff_base: Multiplier of the exponential backoff, seconds.
    :param backoff_max: Longest wait between attempts, seconds (also the longest honoured Retry-After).
    :param logger: Where to log each retry (the module logger by default).
    """
    logger = logger or log
    attempts = max_retries + 1

    def before_sleep(retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "Vobiz %s failed (%s); retry %d of %d in %.2f s",
            label,
            describe_exception(exc) if exc else "no result",
            retry_state.attempt_number,
            max_retries,
            wait,
        )

    return {
        "stop": stop_after_attempt(attempts) | _stop_if_retry_after_exceeds(backoff_max),
        "wait": _wait_retry_after(wait_random_exponential(multiplier=backoff_base, max=backoff_max)),
        "retry": retry_if_exception(is_retryable_make_call if make_call else is_retryable),
        "before_sleep": before_sleep,
        "reraise": True,
    }
