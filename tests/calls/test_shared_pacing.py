"""The account's CPS budget shared through the store: several "workers" (each with its own store engine
and its own per-process pacer) stay under the emulator's CPS limit together; per-process pacing alone
does not. While the store is down, calls are paced per process."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pytest

from vobiz_provider.calls.pacing import SharedCallPacer
from vobiz_provider.client import VobizClient
from vobiz_provider.client.pacing import SLACK, CallPacer
from vobiz_provider.exceptions import LedgerUnavailableError
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.rate_bucket import bucket_key
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from vobiz_provider.client.pacing import SlotReserver

CPS = 4
WORKERS = 3
CALLS_PER_WORKER = 3


@pytest.fixture
def emulator(vobiz_emulator: Any) -> Any:
    vobiz_emulator.configure(cps=CPS, concurrency=100)
    return vobiz_emulator


def _burst(emulator: Any, answer_url: str, reserver_of: Callable[[int], SlotReserver]) -> list[int]:
    """Each worker thread places its calls as fast as its reserver lets it; the emulator's answers."""
    for worker in range(WORKERS):
        for call in range(CALLS_PER_WORKER):
            emulator.script(f"+9198{worker:04d}{call:04d}", CallScript.busy(after=0.01))
    errors: list[BaseException] = []
    barrier = threading.Barrier(WORKERS)

    def work(worker: int) -> None:
        reserver = reserver_of(worker)
        client = VobizClient(
            auth_id=emulator.auth_id,
            auth_token=emulator.auth_token,
            base_url=emulator.base_url,
            cps=CPS,
            max_retries=0,  # a 429 surfaces instead of being retried away
        )
        try:
            barrier.wait(timeout=30)
            for call in range(CALLS_PER_WORKER):
                request = MakeCallRequest.build(
                    **{"from": "14155550100", "to": f"+9198{worker:04d}{call:04d}", "answer_url": answer_url}
                )
                client.make_call(request, pacer=reserver)
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = [r.status for r in emulator.requests if r.method == "POST" and r.path.endswith("/Call/")]
    return statuses if not errors else [*statuses, *(-1 for _ in errors)]


def test_per_process_pacing_alone_lets_several_workers_exceed_the_account_cps(
    emulator: Any, answer_url: str
) -> None:
    # The control: every worker keeps to cps on its own, together they send WORKERS x cps.
    statuses = _burst(emulator, answer_url, lambda _worker: CallPacer())
    assert 429 in statuses


def test_workers_sharing_the_budget_through_the_store_never_meet_a_429(
    emulator: Any, answer_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    assert _burst_through(emulator, answer_url, f"sqlite:///{tmp_path / 'shared.db'}") == [201] * (
        WORKERS * CALLS_PER_WORKER
    )


@pytest.mark.postgres
def test_workers_sharing_the_budget_through_postgresql_never_meet_a_429(
    emulator: Any, answer_url: str, pg_schema_url: str
) -> None:
    assert _burst_through(emulator, answer_url, pg_schema_url) == [201] * (WORKERS * CALLS_PER_WORKER)


def _burst_through(emulator: Any, answer_url: str, store_url: str) -> list[int]:
    """:func:`_burst` with each worker pacing through its own engine on ``store_url``, as separate processes
    would."""
    ledgers = [CallLedger(store_url) for _ in range(WORKERS)]
    try:
        return _burst(emulator, answer_url, lambda worker: SharedCallPacer(store=ledgers[worker]))
    finally:
        for ledger in ledgers:
            ledger.dispose()


class _DownStore:
    def __init__(self) -> None:
        self.asked: list[tuple[str, float]] = []

    def reserve_call_slot(self, bucket: str, *, interval: float) -> float:
        self.asked.append((bucket, interval))
        raise LedgerUnavailableError("callback store sqlite:///x.db is unavailable: disk I/O error")


def test_while_the_store_is_down_calls_are_paced_per_process(caplog: pytest.LogCaptureFixture) -> None:
    now = [50.0]
    fallback = CallPacer(clock=lambda: now[0])
    store = _DownStore()
    shared = SharedCallPacer(store=store, fallback=fallback)
    with caplog.at_level(logging.WARNING, logger="vobiz_provider.calls.pacing"):
        waits = [shared.reserve(base_url="https://a/api/v1", auth_id="MA_1", cps=2) for _ in range(3)]
    assert waits == pytest.approx([0.0, (1 + SLACK) / 2, 2 * (1 + SLACK) / 2])
    assert store.asked == [(bucket_key(base_url="https://a/api/v1", auth_id="MA_1"), (1 + SLACK) / 2)] * 3
    assert "shared CPS budget is unavailable" in caplog.text and "disk I/O error" in caplog.text


def test_a_bad_cps_is_refused() -> None:
    with pytest.raises(ValueError, match="cps must be greater than 0"):
        SharedCallPacer(store=_DownStore()).reserve(base_url="https://a/api/v1", auth_id="MA_1", cps=0)
