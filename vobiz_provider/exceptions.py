"""The exceptions raised by the Vobiz client, hook and operators.

Every message carries Vobiz's own text and the HTTP status where there is one; none ever carries the
auth token (the client builds messages only from the response body and the request path).
"""

from __future__ import annotations

from typing import Any


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
