"""The accounts' shared CPS budgets in the store: one statement per slot, slots one interval apart across
processes, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.rate_bucket import bucket_key
from vobiz_provider.ledger.schema import SCHEMA_VERSION, rate_slots

if TYPE_CHECKING:
    from pathlib import Path

INTERVAL = 0.05
BUCKET = bucket_key(base_url="https://api.vobiz.ai/api/v1/", auth_id="MA_SHARED")


@pytest.fixture(params=["sqlite", "postgresql"])
def bucket_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'buckets.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


def test_bucket_key_is_per_account_and_api_root() -> None:
    same = bucket_key(base_url="https://api.vobiz.ai/api/v1", auth_id="MA_SHARED")
    assert same == BUCKET  # a trailing slash does not make another budget
    assert bucket_key(base_url="https://api.vobiz.ai/api/v1", auth_id="MA_OTHER") != BUCKET
    assert bucket_key(base_url="http://127.0.0.1:9/api/v1", auth_id="MA_SHARED") != BUCKET
    assert len(BUCKET) == 64


def test_slots_are_one_interval_apart_and_an_idle_bucket_is_free(bucket_store_url: str) -> None:
    ledger = CallLedger(bucket_store_url)
    try:
        assert ledger._db.upgrade() == SCHEMA_VERSION
        waits = [ledger.reserve_call_slot(BUCKET, interval=INTERVAL) for _ in range(5)]
        # Reserved back to back: each waits one interval more than the one before (less the few ms the
        # round trips took).
        assert waits[0] == pytest.approx(0.0, abs=0.01)
        for earlier, later in itertools.pairwise(waits):
            assert INTERVAL - 0.02 <= later - earlier <= INTERVAL + 0.001
        # Another account has its own budget.
        other = bucket_key(base_url="https://api.vobiz.ai/api/v1", auth_id="MA_OTHER")
        assert ledger.reserve_call_slot(other, interval=INTERVAL) == pytest.approx(0.0, abs=0.01)
        # Once the reserved slots have passed, the account is free again at once.
        time.sleep(waits[-1] + INTERVAL)
        assert ledger.reserve_call_slot(BUCKET, interval=INTERVAL) == 0.0
        with ledger.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(rate_slots)).scalar_one() == 2
    finally:
        ledger.dispose()


def test_a_reservation_is_one_statement(bucket_store_url: str) -> None:
    ledger = CallLedger(bucket_store_url)
    statements: list[str] = []
    try:
        ledger._db.upgrade()
        sa.event.listen(
            ledger.engine, "before_cursor_execute", lambda _c, _cur, sql, *_rest: statements.append(sql)
        )
        ledger.reserve_call_slot(BUCKET, interval=INTERVAL)
    finally:
        ledger.dispose()
    touching = [sql for sql in statements if "vobiz_rate_slots" in sql]
    assert len(touching) == 1 and touching[0].lstrip().startswith(("WITH", "INSERT")), statements
    assert not [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")], statements


def test_a_bad_interval_is_refused_before_the_store_is_touched(tmp_path: Path) -> None:
    ledger = CallLedger(f"sqlite:///{tmp_path / 'never.db'}")
    with pytest.raises(ValueError, match="interval must be greater than 0"):
        ledger.reserve_call_slot(BUCKET, interval=0)
    assert not (tmp_path / "never.db").exists()


_RESERVER = textwrap.dedent(
    """
    import sys, time
    from vobiz_provider.ledger import CallLedger
    ledger = CallLedger(sys.argv[1])
    ledger._db.upgrade()
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    time.sleep(max(0.0, start - time.time()))
    for _ in range(int(sys.argv[2])):
        before = time.time()
        wait = ledger.reserve_call_slot(sys.argv[3], interval=float(sys.argv[4]))
        print(before + wait, time.time() + wait, flush=True)
    ledger.dispose()
    """
)


def test_processes_racing_for_one_account_get_distinct_slots_one_interval_apart(
    bucket_store_url: str,
) -> None:
    # Four processes (as four Celery workers would be) reserve at once: every slot is its own, and no two
    # are closer than the interval, although no process knows about the others.
    processes, per_process = 4, 10
    CallLedger(bucket_store_url)._db.upgrade()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RESERVER, bucket_store_url, str(per_process), BUCKET, str(INTERVAL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        start = time.time() + 0.3
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{start}\n")
            child.stdin.flush()
        slots: list[tuple[float, ...]] = []
        for child in children:
            out, _ = child.communicate(timeout=120)
            assert child.returncode == 0
            slots.extend(tuple(float(value) for value in line.split()) for line in out.splitlines())
    finally:
        for child in children:
            child.kill()
    assert len(slots) == processes * per_process
    # Each slot is known to lie between (clock before the reservation + wait) and (clock after + wait). A
    # process descheduled during its reservation (a loaded CI machine) knows its slot only within a window
    # wider than the interval, which cannot be ordered against the others: compare the slots known to
    # within a fifth of an interval, which sort in their true order when they are an interval apart.
    tight = sorted(slot for slot in slots if slot[1] - slot[0] <= INTERVAL / 5)
    assert len(tight) >= len(slots) // 2, slots
    gaps = [later[1] - earlier[0] for earlier, later in itertools.pairwise(tight)]
    assert min(gaps) >= INTERVAL - 0.002, gaps
    slots.sort()
    # And the budget is used, not wasted: 40 slots take about 39 intervals from the first.
    assert slots[-1][0] - slots[0][1] <= (len(slots) - 1) * INTERVAL + 1.0
