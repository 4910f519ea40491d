"""B2's ``--workers`` comparison on PostgreSQL, at its smallest size: both receivers answer and store every
callback they were sent (smoke runs of ``benchmarks.run`` leave PostgreSQL out). No timing is asserted."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from benchmarks.b2_receiver import SMOKE, Ledger, _bench_workers, _start_workers, _workers_check
from benchmarks.common import stop_process

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="B2's load generator is Debian's wrk"),
]


@pytest.mark.timeout(180)
def test_receivers_with_one_and_two_workers_store_what_they_answered(
    pg_schema_url: str, tmp_path: Path
) -> None:
    ledger = Ledger()
    servers = _start_workers(pg_schema_url, SMOKE, tmp_path)
    try:
        runs = _bench_workers(servers, pg_schema_url, SMOKE, tmp_path, ledger, log=lambda _: None)
        stored, twice = ledger.settle(pg_schema_url)
    finally:
        for _, process in servers.values():
            stop_process(process)

    assert set(runs) == {1, 2} and all(len(each) == SMOKE.repetitions for each in runs.values())
    assert all(result.ok > 0 for each in runs.values() for result in each)
    assert (stored, twice) == (len(ledger.sent), 0)
    check, note = _workers_check(runs, max(SMOKE.concurrency))
    assert check.name == "B2 PostgreSQL, --workers 2 vs 1, 8 connections, unpinned"
    assert "1 worker " in note and "2 workers " in note
