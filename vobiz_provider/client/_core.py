"""The one place that knows the Vobiz REST API: requests as data, responses mapped to models or exceptions.

:class:`~vobiz_provider.client.VobizClient` and :class:`~vobiz_provider.client.AsyncVobizClient` only send
what :class:`ClientCore` builds here and hand the response back to :func:`interpret`, so the two clients
cannot drift apart; they differ only in how they send and sleep. What they do when ``POST /Call/`` has an
unknown outcome is in :mod:`vobiz_provider.client._recovery`.

Every error message is built from the method, the path (which holds the Auth ID, never the token), the
status and Vobiz's own text, and is passed through :meth:`ClientCore.redact` in case Vobiz echoes the token.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

from vobiz_provider import __version__
from vobiz_provider.client.retry import describe_exception, retry_kwargs
from vobiz_provider.config import DEFAULT_BASE_URL
from vobiz_provider.exceptions import (
    VobizAuthError,
    VobizError,
    VobizInsufficientBalanceError,
    VobizNotFoundError,
    VobizRateLimitedError,
    VobizServerError,
    VobizValidationError,
)
from vobiz_provider.models.errors import parse_error_body
from vobiz_provider.models.responses import (
    Account,
    CallFiredResponse,
    CallUuidList,
    CdrEnvelope,
    CdrPage,
    LiveCall,
    QueuedCall,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.models.responses import Cdr

__all__ = [
    "USER_AGENT",
    "ApiRequest",
    "CallStatusFilter",
    "ClientCore",
    "error_from_response",
    "interpret",
    "transport_error",
]

log = logging.getLogger("vobiz_provider.client")

USER_AGENT = f"airflow-provider-vobiz/{__version__}"

T = TypeVar("T")
CallStatusFilter = Literal["live", "queued"]

_MISSING: Any = object()
# Auth IDs (MA_/SA_...) and call UUIDs go into URL paths: refuse anything that could change the path.
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]*$")
# Header values must be visible ASCII: httpx/h11 would otherwise raise errors that quote the value.
_HEADER_VALUE = re.compile(r"^[\x21-\x7e]+$")
_BODY_EXCERPT = 500


@dataclass(frozen=True, kw_only=True)
class ApiRequest(Generic[T]):
    """One Vobiz request, as data.

    :param method: HTTP method.
    :param path: Path relative to the base URL, exactly as Vobiz documents it (case and trailing slash).
    :param parse: Turns a 2xx response into the result.
    :param params: Query parameters.
    :param json: JSON body.
    :param absent: Result when Vobiz answers 404 (e.g. ``False`` for hanging up a call that is gone);
        without it a 404 raises :class:`~vobiz_provider.exceptions.VobizNotFoundError`.
    :param hint_404: Extra explanation appended to a 404 message.
    """

    method: Literal["GET", "POST", "DELETE"]
    path: str
    parse: Callable[[httpx.Response], T] = field(repr=False)
    params: Mapping[str, str] | None = None
    json: Mapping[str, Any] | None = field(default=None, repr=False)
    absent: T = field(default=_MISSING, repr=False)
    hint_404: str = ""

    @property
    def idempotent(self) -> bool:
        """``GET`` and ``DELETE`` may be repeated; ``POST`` may not."""
        return self.method != "POST"

    @property
    def label(self) -> str:
        """``METHOD /path?query`` for messages and logs (never holds a secret)."""
        query = "&".join(f"{key}={value}" for key, value in (self.params or {}).items())
        return f"{self.method} {self.path}" + (f"?{query}" if query else "")


# ---------------------------------------------------------------------------------------------- parsers


def _json(response: httpx.Response) -> Any:
    return response.json()


def _model(model: Any) -> Callable[[httpx.Response], Any]:
    def parse(response: httpx.Response) -> Any:
        return model.model_validate(_json(response))

    return parse


def _model_json(model: Any) -> Callable[[httpx.Response], Any]:
    # Parses and validates the raw bytes in pydantic-core in one step (the hot path of placing a call).
    def parse(response: httpx.Response) -> Any:
        return model.model_validate_json(response.content)

    return parse


_parse_call_fired = _model_json(CallFiredResponse)


def _uuid_list(response: httpx.Response) -> list[str]:
    return list(CallUuidList.model_validate(_json(response)).calls)


def _cdr(response: httpx.Response) -> Cdr:
    return CdrEnvelope.model_validate(_json(response)).data


def _true(response: httpx.Response) -> bool:
    return True


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------- mapping


def interpret(request: ApiRequest[T], response: httpx.Response, *, redact: Callable[[str], str]) -> T:
    """Map a response to the request's result, or raise the matching :class:`VobizError`.

    :param request: The request that was sent.
    :param response: Vobiz's answer.
    :param redact: Removes the auth token from any text that goes into a message.
    """
    status = response.status_code
    if 200 <= status < 300:
        try:
            return request.parse(response)
        except ValidationError as exc:
            if any(error["type"] == "json_invalid" for error in exc.errors(include_url=False)):
                raise VobizServerError(
                    f"Vobiz answered {status} to {request.label} with a body that is not JSON: "
                    f"{redact(response.text[:_BODY_EXCERPT])!r}",
                    status_code=status,
                ) from None
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise VobizServerError(
                f"Vobiz answered {status} to {request.label} with an unexpected body ({problems})",
                status_code=status,
            ) from None
        except ValueError:
            raise VobizServerError(
                f"Vobiz answered {status} to {request.label} with a body that is not JSON: "
                f"{redact(response.text[:_BODY_EXCERPT])!r}",
                status_code=status,
            ) from None
    if status == 404 and request.absent is not _MISSING:
        return request.absent
    raise error_from_response(request, response, redact=redact)


def error_from_response(
    request: ApiRequest[Any], response: httpx.Response, *, redact: Callable[[str], str]
) -> VobizError:
    """Build the exception for a non-2xx response (both the flat and the envelope error shapes)."""
    status = response.status_code
    parsed = parse_error_body(status, response.content, response.headers)
    text = redact(str(parsed.message or "").strip()) or response.reason_phrase or "no error text"
    code = f" [{parsed.code}]" if parsed.code else ""
    message = f"Vobiz answered {status} to {request.label}: {text}{code}"
    details = parsed.details if isinstance(parsed.details, dict) else {}
    common: dict[str, Any] = {"status_code": status, "code": parsed.code, "details": details}

    if status in (401, 403):
        hint = (
            " (Vobiz did not accept the Auth ID / Auth Token. A 401 also comes from a wrongly cased path: "
            "Vobiz paths are case-sensitive, e.g. /Account/{auth_id}/Call/ with a capital A and C.)"
            if status == 401
            else " (the account is not allowed to do this)"
        )
        return VobizAuthError(message + hint, **common)
    if status in (400, 422):
        return VobizValidationError(message, **common)
    if status == 402:
        return VobizInsufficientBalanceError(message + " (account balance too low)", **common)
    if status == 404:
        return VobizNotFoundError(message + request.hint_404, **common)
    if status == 429:
        retry_after = parsed.retry_after
        after = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
        return VobizRateLimitedError(message + after, retry_after=retry_after, **common)
    if status >= 500:
        return VobizServerError(message, **common)
    return VobizError(message, **common)


def transport_error(request: ApiRequest[Any], exc: BaseException, *, timeout: float) -> VobizServerError:
    """Turn an ``httpx`` transport failure into a :class:`VobizServerError` without its request headers."""
    if isinstance(exc, httpx.TimeoutException):
        what = f"no answer within the {timeout:g} s timeout"
    else:
        what = "could not be reached"
    return VobizServerError(f"Vobiz {what} for {request.label} ({describe_exception(exc)})")


# ---------------------------------------------------------------------------------------------- core


class ClientCore:
    """What the sync and async clients share: settings, headers and every request of the API.

    :param auth_id: Vobiz Auth ID (``MA_...``/``SA_...``); sent as ``X-Auth-ID`` and used in paths.
    :param auth_token: Vobiz Auth Token; sent as ``X-Auth-Token`` and never shown.
    :param base_url: API root including ``/api/v1``.
    :param timeout: Timeout of each HTTP request, seconds.
    :param max_retries: Retries after the first attempt (see :mod:`vobiz_provider.client.retry`).
    :param cps: Account calls-per-second limit for pacing ``POST /Call/``; ``None`` disables pacing.
    :param backoff_base: Multiplier of the exponential backoff between retries, seconds.
    :param backoff_max: Longest wait between retries, seconds.
    """

    def __init__(
        self,
        *,
        auth_id: str,
        auth_token: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        max_retries: int = 3,
        cps: float | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        token = auth_token.get_secret_value() if isinstance(auth_token, SecretStr) else auth_token
        if not isinstance(auth_id, str) or not _PATH_SEGMENT.match(auth_id):
            raise VobizValidationError(
                "auth_id must be a non-empty Vobiz Auth ID such as MA_XXXXXXXX (letters, digits, '_', '-', "
                f"'.'), got {auth_id!r}"
            )
        if not isinstance(token, str) or not _HEADER_VALUE.match(token):
            # Never echo the value: it is (or is meant to be) the secret.
            raise VobizValidationError(
                "auth_token must be a non-empty string of visible ASCII characters without spaces"
            )
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError):
            url = None
        if (
            url is None
            or url.scheme not in ("http", "https")
            or not url.host
            or any(ch.isspace() for ch in str(base_url))
        ):
            raise VobizValidationError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        if not timeout or timeout <= 0:
            raise VobizValidationError(f"timeout must be greater than 0 seconds, got {timeout!r}")
        if max_retries < 0:
            raise VobizValidationError(f"max_retries must be 0 or more, got {max_retries!r}")
        if cps is not None and cps <= 0:
            raise VobizValidationError(f"cps must be greater than 0 (or None to disable pacing), got {cps!r}")
        self.auth_id = auth_id
        self._token = token
        self.base_url = str(url).rstrip("/")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.cps = float(cps) if cps is not None else None
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._make_call_policy: dict[str, Any] | None = None
        self._calls_path = f"/Account/{quote(auth_id, safe='')}/Call/"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(auth_id={self.auth_id!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ plumbing shared by both clients

    @property
    def headers(self) -> dict[str, str]:
        """Headers of every request (holds the token: never log it)."""
        return {
            "X-Auth-ID": self.auth_id,
            "X-Auth-Token": self._token,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    def http_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by ``httpx.Client`` and ``httpx.AsyncClient``."""
        return {
            "base_url": self.base_url + "/",
            "headers": self.headers,
            "timeout": httpx.Timeout(self.timeout),
            "follow_redirects": False,
        }

    def make_call_policy(self, label: str) -> dict[str, Any]:
        """The tenacity arguments of ``POST /Call/`` (send-once policy), built once per client."""
        if self._make_call_policy is None:
            self._make_call_policy = retry_kwargs(
                label=label,
                make_call=True,
                max_retries=self.max_retries,
                backoff_base=self.backoff_base,
                backoff_max=self.backoff_max,
                logger=log,
            )
        return self._make_call_policy

    def idempotent_policy(self, label: str) -> dict[str, Any]:
        """The tenacity arguments of an idempotent request (retried on 429, 5xx and network errors)."""
        return retry_kwargs(
            label=label,
            make_call=False,
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            logger=log,
        )

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the auth token replaced by ``***``."""
        return text.replace(self._token, "***") if self._token and text else text

    def interpret(self, request: ApiRequest[T], response: httpx.Response) -> T:
        """Map ``response`` to the result of ``request`` or raise (see :func:`interpret`)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Vobiz %s -> %s", request.label, response.status_code)
        return interpret(request, response, redact=self.redact)

    def transport_error(self, request: ApiRequest[Any], exc: BaseException) -> VobizServerError:
        """A token-free :class:`VobizServerError` for an ``httpx`` transport failure."""
        error = transport_error(request, exc, timeout=self.timeout)
        error.message = self.redact(error.message)
        error.args = (error.message,)
        return error

    def _call_path(self, uuid: str | None = None) -> str:
        base = self._calls_path
        return base if uuid is None else f"{base}{quote(uuid, safe='')}/"

    @staticmethod
    def _check_uuid(uuid: str, name: str = "call_uuid") -> str:
        if not isinstance(uuid, str) or not _PATH_SEGMENT.match(uuid):
            raise VobizValidationError(f"{name} must be a non-empty call UUID, got {uuid!r}")
        return uuid

    # ------------------------------------------------------------------ the API, as data

    def make_call_request(self, call: MakeCallRequest) -> ApiRequest[CallFiredResponse]:
        """``POST /Account/{auth_id}/Call/`` with the validated body. Any 2xx (200 or 201) is success."""
        return ApiRequest(
            method="POST",
            path=self._call_path(),
            json=call.to_payload(),
            parse=_parse_call_fired,
            hint_404=(
                " (unknown Auth ID in the path, or a path without its trailing slash: the base_url must "
                "end in /api/v1)"
            ),
        )

    def list_calls_request(self, status: CallStatusFilter) -> ApiRequest[list[str]]:
        """``GET /Account/{auth_id}/Call/?status=live|queued`` -> the call UUIDs."""
        return ApiRequest(method="GET", path=self._call_path(), params={"status": status}, parse=_uuid_list)

    def get_call_request(self, uuid: str, status: CallStatusFilter) -> ApiRequest[Any]:
        """``GET /Account/{auth_id}/Call/{uuid}/?status=live|queued`` -> LiveCall / QueuedCall."""
        self._check_uuid(uuid)
        model = LiveCall if status == "live" else QueuedCall
        return ApiRequest(
            method="GET",
            path=self._call_path(uuid),
            params={"status": status},
            parse=_model(model),
            hint_404=f" (no {status} call with this UUID: it may have moved on or ended)",
        )

    def hangup_call_request(self, uuid: str) -> ApiRequest[bool]:
        """``DELETE /Account/{auth_id}/Call/{uuid}/`` -> True (204), False when the call is gone (404)."""
        self._check_uuid(uuid)
        return ApiRequest(method="DELETE", path=self._call_path(uuid), parse=_true, absent=False)

    def get_cdr_request(self, uuid: str) -> ApiRequest[Cdr]:
        """``GET /Account/{auth_id}/cdr/{uuid}`` -> the CDR (404 until the call has ended)."""
        self._check_uuid(uuid)
        return ApiRequest(
            method="GET",
            path=f"/Account/{quote(self.auth_id, safe='')}/cdr/{quote(uuid, safe='')}",
            parse=_cdr,
            hint_404=" (a CDR exists only once the call has ended; pass the call UUID, not the numeric id)",
        )

    def list_cdrs_request(self, filters: Mapping[str, Any]) -> ApiRequest[CdrPage]:
        """``GET /Account/{auth_id}/cdr`` with the given filters (``None`` values are left out)."""
        params = {key: _query_value(value) for key, value in filters.items() if value is not None}
        if ("start_date" in params) != ("end_date" in params):
            raise VobizValidationError("list_cdrs: start_date and end_date must be given together")
        return ApiRequest(
            method="GET",
            path=f"/Account/{quote(self.auth_id, safe='')}/cdr",
            params=params or None,
            parse=_model(CdrPage),
        )

    def get_account_request(self) -> ApiRequest[Account]:
        """``GET /auth/me`` -> the account (its body holds ``auth_secret``: never log it)."""
        return ApiRequest(method="GET", path="/auth/me", parse=_model(Account))
