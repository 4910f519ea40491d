"""The one place that knows the Vobiz REST API: requests as data, responses mapped to models or exceptions.

:class:`~vobiz_provider.client.VobizClient` and :class:`~vobiz_provider.client.AsyncVobizClient` only send
what :class:`ClientCore` builds here and hand the response back to :func:`interpret`, so the two clients
cannot drift apart; they differ only in how they send and sleep.

Every error message is built from the method, the path (which holds the Auth ID, never the token), the
status and Vobiz's own text, and is passed through :meth:`ClientCore.redact` in case Vobiz echoes the token.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

from vobiz_provider import __version__
from vobiz_provider.client.retry import describe_exception, retry_kwargs
from vobiz_provider.exceptions import (
    VobizAuthError,
    VobizCallOutcomeUnknownError,
    VobizError,
    VobizInsufficientBalanceError,
    VobizNotFoundError,
    VobizRateLimitedError,
    VobizServerError,
    VobizValidationError,
)
from vobiz_provider.get_provider_info import DEFAULT_BASE_URL
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
    from collections.abc import Callable, Iterable, Mapping

    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.models.responses import Cdr

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_BASE_URL",
    "USER_AGENT",
    "ApiRequest",
    "ClientCore",
    "PlacedCalls",
    "interpret",
    "placed_calls",
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

CLOCK_SKEW = dt.timedelta(seconds=2)
"""Clock difference tolerated between this machine and Vobiz when a live call's ``session_start`` is
compared with the moment ``POST /Call/`` was sent: a live call that started more than this before the
request was sent is not the call it placed (see :func:`started_before`)."""


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
    absent: Any = field(default=_MISSING, repr=False)
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


# ---------------------------------------------------------------------------------------------- recovery


def _party(value: Any) -> str:
    """Normalise a number or SIP URI for comparison: digits only for numbers, lower case for SIP."""
    text = str(value or "").strip()
    if text.lower().startswith("sip:"):
        return text.lower()
    return re.sub(r"\D", "", text)


def _call_field(call: Any, *names: str) -> Any:
    data = call.model_dump(by_alias=True) if hasattr(call, "model_dump") else dict(call)
    for name in names:
        if data.get(name) not in (None, ""):
            return data[name]
    for name in names:
        value = getattr(call, name, None)
        if value not in (None, ""):
            return value
    return None


def call_matches(request: MakeCallRequest, call: LiveCall | QueuedCall) -> bool:
    """Whether a live/queued call goes to one of the request's destinations from its caller ID."""
    caller = _party(_call_field(call, "from", "from_number"))
    callee = _party(_call_field(call, "to", "to_number"))
    destinations = {_party(to) for to in request.to}
    return bool(caller) and caller == _party(request.from_number) and callee in destinations


def call_uuid_of(call: LiveCall | QueuedCall) -> str | None:
    """The UUID to report for a recovered call (``request_uuid``, which equals ``call_uuid``)."""
    value = _call_field(call, "request_uuid", "call_uuid")
    return str(value) if value else None


def started_before(call: LiveCall | QueuedCall, sent_at: dt.datetime) -> bool:
    """Whether a live call provably started before ``sent_at`` (so it cannot be the call sent then).

    Compares the call's ``session_start`` (UTC, Vobiz's clock) with ``sent_at`` (UTC, ours) minus
    :data:`CLOCK_SKEW`. Queued calls carry no time, and a call without ``session_start`` cannot be ruled
    out: both return ``False``.
    """
    started = getattr(call, "session_start", None)
    return isinstance(started, dt.datetime) and started < sent_at - CLOCK_SKEW


class PlacedCalls:
    """The UUIDs of the calls this process placed (the latest :data:`PLACED_CALLS_KEPT`), thread-safe.

    A queued call carries no start time, so after an unknown outcome an earlier, still-ringing call to the
    same destination would look exactly like the call just sent. The calls this process placed itself
    (whose ``POST /Call/`` answered) are known not to be that call, and are never adopted.
    """

    def __init__(self, *, kept: int = 10_000) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._uuids: OrderedDict[str, None] = OrderedDict()

    def add(self, uuids: Iterable[str]) -> None:
        """Remember ``uuids`` as placed by this process."""
        with self._lock:
            for uuid in uuids:
                self._uuids[uuid] = None
            while len(self._uuids) > self._kept:
                self._uuids.popitem(last=False)

    def __contains__(self, uuid: object) -> bool:
        with self._lock:
            return uuid in self._uuids

    def clear(self) -> None:
        """Forget every UUID (for tests)."""
        with self._lock:
            self._uuids.clear()


#: Calls placed by any client of this process.
placed_calls = PlacedCalls()


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

    call_matches = staticmethod(call_matches)

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

    # ------------------------------------------------------------------ settling an unknown call outcome

    def log_outcome_unknown(self, request: ApiRequest[Any], exc: BaseException) -> None:
        """Say that ``POST /Call/`` will not be re-sent and that the call is being looked for."""
        log.warning(
            "Vobiz %s: outcome unknown after %s. Not re-sending (that could ring the destination twice); "
            "looking for the call among the account's queued and live calls.",
            request.label,
            describe_exception(exc),
        )

    @staticmethod
    def remember_placed(response: CallFiredResponse) -> CallFiredResponse:
        """Note the UUIDs of a call this process placed (never adopted by a later recovery)."""
        placed_calls.add(response.request_uuids)
        return response

    def classify_found(
        self, call: MakeCallRequest, found: LiveCall | QueuedCall, *, sent_at: dt.datetime
    ) -> str | None:
        """Whether a call listed after an unknown outcome may be the one sent at ``sent_at``.

        :return: ``None`` if it does not go to the destination from the caller ID; ``"candidate"`` if it
            may be the call; ``"earlier"`` if it provably is another one (placed earlier by this process,
            or live since before ``sent_at`` - :data:`CLOCK_SKEW`).
        """
        if not call_matches(call, found):
            return None
        uuid = call_uuid_of(found)
        if (uuid is not None and uuid in placed_calls) or started_before(found, sent_at):
            return "earlier"
        return "candidate"

    def settle_outcome(
        self,
        *,
        request: ApiRequest[Any],
        call: MakeCallRequest,
        cause: BaseException,
        found: Iterable[LiveCall | QueuedCall],
        earlier: Iterable[str],
        lookup_errors: list[str],
    ) -> CallFiredResponse:
        """Turn the calls found after an unknown outcome into a response, or raise outcome-unknown.

        Exactly one candidate and every look-up answered: that is the call (logged, never re-sent). Zero
        or several, or a failed look-up: :class:`VobizCallOutcomeUnknownError`, saying what was found.

        :param request: The ``POST /Call/`` that failed.
        :param call: Its body.
        :param cause: Why the outcome is unknown.
        :param found: Queued/live calls to the destination from the caller ID that may be this call.
        :param earlier: UUIDs of matching calls ruled out (placed earlier by this process, or live since
            before the request was sent).
        :param lookup_errors: Descriptions of look-ups that failed.
        """
        uuids = _unique(call_uuid_of(candidate) for candidate in found)
        ruled_out = _unique(earlier)
        if len(uuids) == 1 and not lookup_errors:
            log.warning(
                "Vobiz %s: recovered the call after %s: found %s to %s from %s among the account's "
                "queued/live calls%s; it was not re-sent.",
                request.label,
                describe_exception(cause),
                uuids[0],
                "<".join(call.to),
                call.from_number,
                f" (ignoring earlier call(s) {', '.join(ruled_out)})" if ruled_out else "",
            )
            return CallFiredResponse.model_validate(
                {
                    "api_id": None,
                    "message": "call fired (recovered from the live/queued call lists)",
                    "request_uuid": uuids[0],
                    "recovered": True,
                }
            )
        if len(uuids) > 1:
            reason = (
                "several calls to that destination from that caller ID may be this one "
                f"({', '.join(uuids)}), so none can be attributed to this request"
            )
        elif lookup_errors:
            seen = f" (found {uuids[0]}, but other calls may be unlisted)" if uuids else ""
            reason = "looking for it failed: " + "; ".join(lookup_errors) + seen
        else:
            reason = (
                "no queued or live call to that destination from that caller ID was found (the call may "
                "not have been placed, or may already have ended)"
            )
        if ruled_out:
            reason += (
                f"; call(s) {', '.join(ruled_out)} to it were ruled out (placed earlier by this process, or "
                "live since before the request was sent)"
            )
        raise VobizCallOutcomeUnknownError(
            self.redact(
                f"Vobiz {request.label} to {'<'.join(call.to)} from {call.from_number}: the outcome is "
                f"unknown after {describe_exception(cause)}. The request was NOT re-sent, because a "
                f"re-send could ring the destination twice; {reason}. Check the Vobiz console or the "
                "CDRs before placing the call again."
            ),
            status_code=getattr(cause, "status_code", None),
        )


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (compared with ``session_start``)."""
    return dt.datetime.now(dt.timezone.utc)


def _unique(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))
