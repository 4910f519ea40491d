"""Every public exception of the provider, in one place.

::

    VobizError
    ├── VobizValidationError (also ValueError)   refused as invalid, locally or by Vobiz (400/422)
    ├── MissingCallbackSecretError (also ValueError)   [vobiz] callback_secret is needed but not set
    ├── InvalidCorrelationTokenError (also ValueError) a callback URL's token is malformed or not ours
    ├── VobizAuthError                            401/403
    ├── VobizInsufficientBalanceError             402
    ├── VobizNotFoundError                        404
    ├── VobizRateLimitedError                     429 (retry_after)
    ├── VobizServerError                          5xx, or Vobiz could not be reached
    ├── VobizCallOutcomeUnknownError              POST /Call/ may or may not have placed the call
    ├── LedgerUnavailableError                    the call ledger (callback store) cannot be reached
    └── VobizCallFailedError (also AirflowException)   the call ended, but not as the task wanted
        └── VobizCallFailedFinalError (also AirflowFailException)   ... and no retry can change that

Every message carries Vobiz's own text and the HTTP status where there is one; none ever carries the
auth token (the client builds messages only from the response body and the request path).

The two classes with an Airflow base are defined on first use: importing Airflow costs about a second,
which the client, the models and the emulator (usable without Airflow running) must not pay.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

__all__ = [
    "InvalidCorrelationTokenError",
    "LedgerUnavailableError",
    "MissingCallbackSecretError",
    "VobizAuthError",
    "VobizCallFailedError",
    "VobizCallFailedFinalError",
    "VobizCallOutcomeUnknownError",
    "VobizError",
    "VobizInsufficientBalanceError",
    "VobizNotFoundError",
    "VobizRateLimitedError",
    "VobizServerError",
    "VobizValidationError",
    "WeakCallbackSecretError",
]


class VobizError(Exception):
    """Base class of every error raised by this provider.

    :param message: Human-readable description (never contains the auth token).
    :param status_code: HTTP status Vobiz answered with, if the error came from a response.
    :param code: Vobiz's machine-readable error code (envelope shape), if any.
    :param details: Vobiz's ``details`` object (envelope shape), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class VobizValidationError(VobizError, ValueError):
    """A request was refused as invalid: locally before sending, or by Vobiz with 400/422."""


class MissingCallbackSecretError(VobizError, ValueError):
    """``[vobiz] callback_secret`` is needed (to issue or verify a correlation token) but is not set."""

    def __init__(self) -> None:
        super().__init__(
            "[vobiz] callback_secret is not set: it is needed to sign and verify the correlation token in "
            "callback URLs. Set it in airflow.cfg or as AIRFLOW__VOBIZ__CALLBACK_SECRET (the same value on "
            "every Airflow host and on the standalone receiver)."
        )


class WeakCallbackSecretError(MissingCallbackSecretError):
    """``[vobiz] callback_secret`` (or a fallback) is too short to sign correlation tokens safely.

    One callback URL is enough to search for a short secret offline; a secret that can be found lets anyone
    forge callback URLs. It counts as a missing secret: nothing is signed or accepted with it.

    :param name: The setting at fault.
    :param minimum: The shortest length accepted, in bytes.
    """

    def __init__(self, name: str, minimum: int) -> None:
        VobizError.__init__(
            self,
            f"[vobiz] {name} is shorter than {minimum} bytes, too weak to sign callback URLs (one URL is "
            "enough to search for it offline). Generate one with "
            '`python -c "import secrets; print(secrets.token_urlsafe(32))"` and set it as '
            f"AIRFLOW__VOBIZ__{name.upper()} (the same value on every Airflow host and on the standalone "
            "receiver).",
        )


class InvalidCorrelationTokenError(VobizError, ValueError):
    """A callback URL's correlation token is malformed, or its signature matches no configured secret."""


class VobizAuthError(VobizError):
    """Vobiz refused the Auth ID / Auth Token (401), or the account is not allowed (403).

    A 401 can also mean a wrongly cased path (``/account/`` instead of ``/Account/``).
    """


class VobizInsufficientBalanceError(VobizError):
    """The account balance is too low to place the call (402)."""


class VobizNotFoundError(VobizError):
    """The call, CDR or account path does not exist (404)."""


class VobizRateLimitedError(VobizError):
    """The CPS or concurrent-call limit was exceeded (429).

    :param retry_after: Seconds Vobiz asked us to wait (``Retry-After`` or ``details.retryAfter``).
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class VobizServerError(VobizError):
    """Vobiz answered with a 5xx status, or could not be reached at all."""


class VobizCallOutcomeUnknownError(VobizError):
    """``POST /Call/`` may or may not have placed the call, and the live/queued lists could not settle it.

    Raised instead of re-sending, because a blind re-send can ring the same person twice.
    """


class LedgerUnavailableError(VobizError):
    """The call ledger (the callback store) cannot be reached or stayed locked.

    The receiver answers 503 so that Vobiz retries; waiting tasks ask the Vobiz API instead.
    """


if TYPE_CHECKING:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    class VobizCallFailedError(VobizError, AirflowException):  # type: ignore[misc]  # status_code: VobizError's int | None vs AirflowException's HTTPStatus
        """See :func:`_define_call_failed`."""

        calls: list[dict[str, Any]]

        def __init__(self, message: str, *, calls: Any = ()) -> None: ...

    class VobizCallFailedFinalError(VobizCallFailedError, AirflowFailException):  # type: ignore[misc]  # status_code: VobizError's int | None vs AirflowException's HTTPStatus
        """See :func:`_define_call_failed`."""


_AIRFLOW_BOUND = frozenset({"VobizCallFailedError", "VobizCallFailedFinalError"})
_DEFINE_LOCK = threading.Lock()


def _define_call_failed() -> None:
    """Define the exceptions with an Airflow base (once, under a lock: one class object per name)."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    class VobizCallFailedError(VobizError, AirflowException):  # type: ignore[misc]  # status_code: VobizError's int | None vs AirflowException's HTTPStatus
        """The call ended, but not as the task wanted (busy, no answer, the wrong key...).

        Raised by :class:`~vobiz_provider.operators.call.VobizCallOperator`, so that the task's ``retries``
        (or a clear in the UI) dial again.

        :param message: What happened: destination, final status and hangup cause.
        :param calls: The final call records (``CallRecord.to_event()`` dicts) of the attempt.
        """

        def __init__(self, message: str, *, calls: Any = ()) -> None:
            super().__init__(message)
            self.calls: list[dict[str, Any]] = list(calls)

    class VobizCallFailedFinalError(VobizCallFailedError, AirflowFailException):  # type: ignore[misc]  # status_code: VobizError's int | None vs AirflowException's HTTPStatus
        """The watched call ended, but not as the task wanted, and retrying cannot change that.

        Raised by :class:`~vobiz_provider.sensors.call.VobizCallSensor` (an ``AirflowFailException``:
        no retry; ``soft_fail=True`` skips the task instead).
        """

    for cls in (VobizCallFailedError, VobizCallFailedFinalError):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    globals().update(
        VobizCallFailedError=VobizCallFailedError, VobizCallFailedFinalError=VobizCallFailedFinalError
    )


def __getattr__(name: str) -> Any:
    if name not in _AIRFLOW_BOUND:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _DEFINE_LOCK:
        if name not in globals():
            _define_call_failed()
    return globals()[name]
