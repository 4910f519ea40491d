"""Fixtures of the client tests: a client on the emulator and a Make-Call request builder (the answer URL
that keeps calls up is in tests/conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _client_helpers import CALLER, DESTINATION, FAST

from vobiz_provider.client import VobizClient
from vobiz_provider.models.call import MakeCallRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def client(vobiz_emulator: Any) -> Iterator[VobizClient]:
    with VobizClient(
        auth_id=vobiz_emulator.auth_id,
        auth_token=vobiz_emulator.auth_token,
        base_url=vobiz_emulator.base_url,
        timeout=2.0,
        max_retries=3,
        **FAST,
    ) as client:
        yield client


@pytest.fixture
def call_request(answer_url: str) -> Callable[..., MakeCallRequest]:
    """Build a valid Make-Call request (override any field)."""

    def build(to: str | list[str] = DESTINATION, **fields: Any) -> MakeCallRequest:
        return MakeCallRequest.build(**{"from": CALLER, "to": to, "answer_url": answer_url, **fields})

    return build
