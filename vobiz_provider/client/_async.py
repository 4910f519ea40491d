"""``AsyncVobizClient``: the asyncio twin of ``VobizClient`` (one pooled ``httpx.AsyncClient``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from tenacity import AsyncRetrying

from vobiz_provider.client._core import ApiRequest, CallStatusFilter, ClientCore
from vobiz_provider.client._recovery import (
    classify_found,
    log_outcome_unknown,
    remember_placed,
    settle_outcome,
    utcnow,
)
from vobiz_provider.client.pacing import apace_call
from vobiz_provider.client.retry import describe_exception, is_outcome_unknown
from vobiz_provider.config import DEFAULT_BASE_URL
from vobiz_provider.exceptions import VobizError, VobizNotFoundError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime
    from types import TracebackType

    from pydantic import SecretStr

    from vobiz_provider.client.pacing import SlotReserver
    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.models.responses import (
        Account,
        CallFiredResponse,
        Cdr,
        CdrPage,
        LiveCall,
        QueuedCall,
    )

__all__ = ["AsyncVobizClient"]

T = TypeVar("T")


class AsyncVobizClient(ClientCore):
    """Asyncio client of the Vobiz voice API: the methods of ``VobizClient``, awaited.

    Retries idempotent requests on 429/5xx/network errors, never re-sends ``POST /Call/`` once Vobiz may
    have accepted it (it looks the call up instead), and paces ``POST /Call/`` to ``cps`` per process.

    :param auth_id: Vobiz Auth ID (``MA_...``/``SA_...``).
    :param auth_token: Vobiz Auth Token (never logged or shown in errors).
    :param base_url: API root including ``/api/v1``.
    :param timeout: Timeout of each HTTP request, seconds.
    :param max_retries: Retries after the first attempt.
    :param cps: Account calls-per-second limit; ``None`` disables pacing.
    :param transport: ``httpx`` transport to use instead of the default one (proxies, tests).
    :param backoff_base: Multiplier of the jittered exponential backoff, seconds.
    :param backoff_max: Longest wait between retries (and longest honoured ``Retry-After``), seconds.
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
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        super().__init__(
            auth_id=auth_id,
            auth_token=auth_token,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            cps=cps,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
        )
        self._http = httpx.AsyncClient(transport=transport, **self.http_client_kwargs())

    # ------------------------------------------------------------------ sending

    async def _send(self, request: ApiRequest[T]) -> T:
        response = await self._http.request(
            request.method, request.path, params=request.params, json=request.json
        )
        return self.interpret(request, response)

    async def _with_retries(
        self, policy: Callable[[], dict[str, Any]], attempt: Callable[[], Awaitable[T]]
    ) -> T:
        """Await ``attempt`` under the tenacity ``policy``, without tenacity's cost when it succeeds at once.

        The first attempt runs bare. If it fails, that failure is handed to an ``AsyncRetrying`` loop as
        its first attempt (re-raised, not re-sent), so tenacity alone decides - exactly as if it had run
        the first attempt itself - whether to stop, how long to wait (``Retry-After``) and what to log.
        """
        try:
            return await attempt()
        except Exception as exc:
            failure: Exception | None = exc
        async for retrying in AsyncRetrying(**policy()):
            with retrying:
                if failure is not None:
                    replayed, failure = failure, None
                    raise replayed
                return await attempt()
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover

    async def _execute(self, request: ApiRequest[T]) -> T:
        try:
            return await self._with_retries(
                lambda: self.idempotent_policy(request.label), lambda: self._send(request)
            )
        except httpx.TransportError as exc:
            raise self.transport_error(request, exc) from None

    # ------------------------------------------------------------------ calls

    async def make_call(
        self, call: MakeCallRequest, *, pacer: SlotReserver | None = None
    ) -> CallFiredResponse:
        """Place a call (``POST /Account/{auth_id}/Call/``).

        Re-sent only after a connect failure or a 429. After a read timeout, a broken connection or a
        5xx the outcome is unknown: the request is not re-sent, the call is looked for among the queued
        and live calls instead (to that destination, from that caller ID; calls this process placed
        earlier and live calls that started before the request was sent are ruled out). Exactly one
        match is returned (``recovered``); none or several raise
        :class:`~vobiz_provider.exceptions.VobizCallOutcomeUnknownError`. Paced to ``cps``.

        :param call: The validated request body.
        :param pacer: Where the send slot is reserved (e.g. the account's shared slot in the callback
            store); this process's pacer when omitted.
        """
        request = self.make_call_request(call)
        sent_at = utcnow()

        async def attempt() -> CallFiredResponse:
            nonlocal sent_at
            await apace_call(base_url=self.base_url, auth_id=self.auth_id, cps=self.cps, reserver=pacer)
            sent_at = utcnow()
            return remember_placed(await self._send(request))

        try:
            return await self._with_retries(lambda: self.make_call_policy(request.label), attempt)
        except Exception as exc:
            if is_outcome_unknown(exc):
                return await self._recover(request, call, exc, sent_at)
            if isinstance(exc, httpx.TransportError):
                raise self.transport_error(request, exc) from None
            raise

    async def _recover(
        self, request: ApiRequest[Any], call: MakeCallRequest, cause: BaseException, sent_at: datetime
    ) -> CallFiredResponse:
        log_outcome_unknown(request, cause)
        found: list[LiveCall | QueuedCall] = []
        earlier: list[str] = []
        errors: list[str] = []
        seen: set[str] = set()
        for status in ("queued", "live"):
            try:
                uuids = await self._execute(self.list_calls_request(status))
            except VobizError as exc:
                errors.append(describe_exception(exc))
                continue
            for uuid in uuids:
                if uuid in seen:
                    continue
                seen.add(uuid)
                try:
                    candidate = await self._get_call_any_state(uuid, first=status)
                except VobizError as exc:
                    errors.append(describe_exception(exc))
                    continue
                verdict = None if candidate is None else classify_found(call, candidate, sent_at=sent_at)
                if verdict == "candidate" and candidate is not None:
                    found.append(candidate)
                elif verdict == "earlier":
                    earlier.append(uuid)
        return settle_outcome(
            request=request,
            call=call,
            cause=cause,
            found=found,
            earlier=earlier,
            lookup_errors=errors,
            redact=self.redact,
        )

    async def _get_call_any_state(
        self, uuid: str, *, first: CallStatusFilter
    ) -> LiveCall | QueuedCall | None:
        # A queued call may have been answered between the list and the get: try the other state too.
        for status in (first, "live" if first == "queued" else "queued"):
            try:
                return await self._execute(self.get_call_request(uuid, status))
            except VobizNotFoundError:
                continue
        return None

    async def get_live_call(self, uuid: str) -> LiveCall:
        """A call in progress (``GET .../Call/{uuid}/?status=live``); 404 once it is no longer live."""
        return await self._execute(self.get_call_request(uuid, "live"))

    async def get_queued_call(self, uuid: str) -> QueuedCall:
        """A queued or ringing call (``GET .../Call/{uuid}/?status=queued``)."""
        return await self._execute(self.get_call_request(uuid, "queued"))

    async def list_live_calls(self) -> list[str]:
        """UUIDs of the account's live calls."""
        return await self._execute(self.list_calls_request("live"))

    async def list_queued_calls(self) -> list[str]:
        """UUIDs of the account's queued calls (Vobiz returns at most 20)."""
        return await self._execute(self.list_calls_request("queued"))

    async def hangup_call(self, uuid: str) -> bool:
        """Hang up a call; ``False`` when it was already gone (404)."""
        return await self._execute(self.hangup_call_request(uuid))

    async def get_cdr(self, uuid: str) -> Cdr:
        """The CDR of an ended call (``GET .../cdr/{uuid}``)."""
        return await self._execute(self.get_cdr_request(uuid))

    async def list_cdrs(self, **filters: Any) -> CdrPage:
        """One page of CDRs (``GET .../cdr``), filtered by Vobiz's query parameters."""
        return await self._execute(self.list_cdrs_request(filters))

    async def get_account(self) -> Account:
        """The account behind the credentials (``GET /auth/me``)."""
        return await self._execute(self.get_account_request())

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._http.is_closed

    async def close(self) -> None:
        """Close the connection pool (same as :meth:`aclose`)."""
        await self.aclose()

    async def __aenter__(self) -> AsyncVobizClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
