"""Vobiz REST clients: :class:`VobizClient` (blocking) and :class:`AsyncVobizClient` (asyncio).

Both build every request through :mod:`vobiz_provider.client._core`, retry through
:mod:`vobiz_provider.client.retry`, pace ``POST /Call/`` through :mod:`vobiz_provider.client.pacing` and
settle an unknown ``POST /Call/`` outcome through :mod:`vobiz_provider.client._recovery`.
"""

from __future__ import annotations

from vobiz_provider.client._async import AsyncVobizClient
from vobiz_provider.client._core import USER_AGENT
from vobiz_provider.client._sync import VobizClient
from vobiz_provider.config import DEFAULT_BASE_URL

__all__ = ["DEFAULT_BASE_URL", "USER_AGENT", "AsyncVobizClient", "VobizClient"]
