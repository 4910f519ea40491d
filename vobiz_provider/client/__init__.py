"""Vobiz REST clients: :class:`VobizClient` (blocking) and :class:`AsyncVobizClient` (asyncio).

Both build every request through :mod:`vobiz_provider.client._request`, retry through
:mod:`vobiz_provider.client.retry` and pace ``POST /Call/`` through :mod:`vobiz_provider.client.pacing`.
"""

from __future__ import annotations

from vobiz_provider.client._request import DEFAULT_BASE_URL, USER_AGENT
from vobiz_provider.client.asyncio import AsyncVobizClient
from vobiz_provider.client.sync import VobizClient

__all__ = ["DEFAULT_BASE_URL", "USER_AGENT", "AsyncVobizClient", "VobizClient"]
