"""``VobizHook``: the ``vobiz`` connection, turned into a validated config and pooled API clients.

The connection holds the Auth ID in ``login``, the Auth Token in ``password`` and everything else as extras
(``base_url``, ``callback_base_url``, ``timeout``, ``max_retries``, ``cps``, ``timezone``; declared as
``conn-fields`` in :mod:`vobiz_provider.get_provider_info`). ``host``, ``port`` and ``schema`` are not used
(the API root is the ``base_url`` extra because it carries a path); a ``host`` that is set anyway is
ignored with a warning. For example::

    AIRFLOW_CONN_VOBIZ_DEFAULT='{"conn_type": "vobiz", "login": "MA_XXXXXXXX", "password": "...",
                                 "extra": {"cps": 2, "timezone": "Asia/Kolkata"}}'
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from vobiz_provider.client import AsyncVobizClient, VobizClient
from vobiz_provider.exceptions import VobizError
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.models.connection import EXTRA_FIELDS, VobizConnectionConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vobiz_provider.client.pacing import SlotReserver
    from vobiz_provider.models.responses import (
        Account,
        CallFiredResponse,
        Cdr,
        CdrPage,
        LiveCall,
        QueuedCall,
    )

__all__ = ["VobizHook"]


class VobizHook(BaseHook):
    """Interact with the Vobiz voice API through a ``vobiz`` connection.

    One pooled :class:`~vobiz_provider.client.VobizClient` per hook (:meth:`get_conn`) and one
    :class:`~vobiz_provider.client.AsyncVobizClient` per hook and event loop (:meth:`aget_conn`); close
    them with :meth:`close` / :meth:`aclose` (or use the hook as a context manager).

    :param vobiz_conn_id: Id of the ``vobiz`` connection (Auth ID in login, Auth Token in password).
    """

    conn_name_attr = "vobiz_conn_id"
    default_conn_name = "vobiz_default"
    conn_type = "vobiz"
    hook_name = "Vobiz"

    def __init__(self, *, vobiz_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vobiz_conn_id = vobiz_conn_id
        self._config: VobizConnectionConfig | None = None
        self._client: VobizClient | None = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncVobizClient] = (
            weakref.WeakKeyDictionary()
        )

    # ------------------------------------------------------------------ configuration

    def _build_config(self, conn: Any, extra: Mapping[str, Any]) -> VobizConnectionConfig:
        if conn.host:
            self.log.warning(
                "Vobiz connection %r: host %r is ignored; the API address is the base_url extra.",
                self.vobiz_conn_id,
                conn.host,
            )
        unknown = VobizConnectionConfig.unknown_extras(extra)
        if unknown:
            self.log.warning(
                "Vobiz connection %r: unknown extra field(s) %s ignored (known: %s).",
                self.vobiz_conn_id,
                ", ".join(unknown),
                ", ".join(EXTRA_FIELDS),
            )
        return VobizConnectionConfig.from_connection(
            conn_id=self.vobiz_conn_id, login=conn.login, password=conn.password, extra=extra
        )

    def get_config(self) -> VobizConnectionConfig:
        """Read and validate the connection (cached on the hook).

        :raises VobizValidationError: naming the missing or malformed field.
        """
        if self._config is None:
            from airflow.sdk.log import mask_secret

            conn = self.get_connection(self.vobiz_conn_id)
            if conn.password:
                mask_secret(conn.password)
            config = self._config = self._build_config(conn, conn.extra_dejson)
            if config.main_account_auth_token is not None:
                mask_secret(config.main_account_auth_token.get_secret_value())
        return self._config

    async def aget_config(self) -> VobizConnectionConfig:
        """Async twin of :meth:`get_config` (safe in triggers and async tasks)."""
        if self._config is None:
            from airflow.sdk.log import amask_secret

            conn = await self.aget_connection(self.vobiz_conn_id)
            if conn.password:
                await amask_secret(conn.password)
            config = self._config = self._build_config(conn, await conn.aextra_dejson())
            if config.main_account_auth_token is not None:
                await amask_secret(config.main_account_auth_token.get_secret_value())
        return self._config

    # ------------------------------------------------------------------ clients

    def get_conn(self) -> VobizClient:
        """The hook's pooled blocking client (created on first use)."""
        if self._client is None or self._client.is_closed:
            self._client = VobizClient(**self.get_config().client_kwargs())
        return self._client

    async def aget_conn(self) -> AsyncVobizClient:
        """The hook's pooled async client for the running event loop (created on first use)."""
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None or client.is_closed:
            client = AsyncVobizClient(**(await self.aget_config()).client_kwargs())
            self._async_clients[loop] = client
        return client

    def close(self) -> None:
        """Close the blocking client's connections (async clients: :meth:`aclose`)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the async client of the running loop, and the blocking client."""
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        self.close()

    def __enter__(self) -> VobizHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ delegations (sync)
    # Async code awaits the client of aget_conn() directly: ``await (await hook.aget_conn()).make_call(r)``.

    @staticmethod
    def _call_request(request: MakeCallRequest | Mapping[str, Any]) -> MakeCallRequest:
        if isinstance(request, MakeCallRequest):
            return request
        return MakeCallRequest.build(**request)

    def make_call(
        self, request: MakeCallRequest | Mapping[str, Any], *, pacer: SlotReserver | None = None
    ) -> CallFiredResponse:
        """Place a call; a mapping is validated with ``MakeCallRequest.build`` first.

        :param request: The call.
        :param pacer: Where the send slot is reserved (the operators pass the account's shared budget in
            the callback store); this process's pacer when omitted.
        """
        return self.get_conn().make_call(self._call_request(request), pacer=pacer)

    def get_live_call(self, uuid: str) -> LiveCall:
        """See :meth:`VobizClient.get_live_call <vobiz_provider.client.VobizClient.get_live_call>`."""
        return self.get_conn().get_live_call(uuid)

    def get_queued_call(self, uuid: str) -> QueuedCall:
        """See :meth:`VobizClient.get_queued_call <vobiz_provider.client.VobizClient.get_queued_call>`."""
        return self.get_conn().get_queued_call(uuid)

    def list_live_calls(self) -> list[str]:
        """UUIDs of the account's live calls."""
        return self.get_conn().list_live_calls()

    def list_queued_calls(self) -> list[str]:
        """UUIDs of the account's queued calls."""
        return self.get_conn().list_queued_calls()

    def hangup_call(self, uuid: str) -> bool:
        """Hang up a call; ``False`` when it was already gone."""
        return self.get_conn().hangup_call(uuid)

    def get_cdr(self, uuid: str) -> Cdr:
        """The CDR of an ended call."""
        return self.get_conn().get_cdr(uuid)

    def list_cdrs(self, **filters: Any) -> CdrPage:
        """One page of CDRs."""
        return self.get_conn().list_cdrs(**filters)

    def get_account(self) -> Account:
        """The account behind the connection (``GET /auth/me``)."""
        return self.get_conn().get_account()

    # ------------------------------------------------------------------ connection test

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials with ``GET /auth/me`` (no retries); never raises.

        The message names the account that answered and its CPS limit, and never contains the token or
        the account's ``auth_secret``.
        """
        token: str | None = None
        try:
            config = self.get_config()
            token = config.auth_token.get_secret_value()
            with VobizClient(**config.client_kwargs(max_retries=0)) as client:
                account = client.get_account()
        except Exception as exc:
            text = str(exc) if isinstance(exc, VobizError) else f"{type(exc).__name__}: {exc}"
            if token:
                text = text.replace(token, "***")
            return False, text
        who = (
            f"{account.name!r} (Auth ID {account.auth_id})" if account.name else f"Auth ID {account.auth_id}"
        )
        message = f"Connected to Vobiz at {config.base_url}: account {who} answered"
        if account.auth_id and account.auth_id != config.auth_id:
            message += f" for Auth ID {config.auth_id}"
        if account.cps_limit is not None:
            message += f"; its CPS limit is {account.cps_limit}"
            if config.cps is not None and config.cps > account.cps_limit:
                message += f", lower than the connection's cps={config.cps:g}: calls may be refused with 429"
        elif config.cps is None:
            message += "; pacing is off (no cps on the connection)"
        return True, message + "."
