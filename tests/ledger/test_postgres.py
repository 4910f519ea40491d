"""The callback store under concurrent writers on a real PostgreSQL server.

Several hosts (API servers, standalone receivers, triggerers, workers) share one PostgreSQL store, so
writers race for real: these tests run many threads, each with its own store (engine), against one fresh
schema. Skipped when VOBIZ_TEST_POSTGRES_URL is unset.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from _ledger_helpers import store_callback

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import SCHEMA_VERSION, calls, events, schema_version

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.postgres

THREADS = 8
PER_THREAD = 50


def _token(task: int, map_index: int = -1) -> CorrelationToken:
    return CorrelationToken(
        dag_id="load", run_id="manual__1", task_id=f"t{task}", map_index=map_index, try_number=1
    )


def _owner(call: int) -> CorrelationToken:
    """Odd calls: task t1's bulk request. Even calls: one mapped task instance of t0 each."""
    return _token(1) if call % 2 else _token(0, map_index=call)


def _fields(call: int, event: str) -> dict[str, str]:
    base = {
        "CallUUID": f"call-{call}",
        "RequestUUID": "bulk" if call % 2 else f"req-{call}",
        "From": "918000000000",
        "To": f"9190000{call:05d}",
        "Direction": "outbound",
    }
    if event == "ring":
        return {**base, "Event": "Ring", "CallStatus": "ringing"}
    if event == "answer":
        return {**base, "Event": "StartApp", "CallStatus": "in-progress"}
    return {
        **base,
        "Event": "Hangup",
        "CallStatus": "completed",
        "HangupCause": "NORMAL_CLEARING",
        "HangupCauseCode": "4000",
        "Duration": str(call),
    }


def _run_threads(work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_concurrent_writers_give_exactly_the_expected_rows(pg_schema_url: str) -> None:
    calls_count = 40
    # Odd calls belong to one bulk request (one request uuid, 20 destinations); even ones to their own.
    unique: list[tuple[str, Any]] = [("fired-bulk", None)]
    unique += [("fired", call) for call in range(0, calls_count, 2)]
    unique += [(event, call) for call in range(calls_count) for event in ("ring", "answer", "hangup")]
    rng = random.Random(20261127)
    jobs = [*unique, *(rng.choice(unique) for _ in range(THREADS * PER_THREAD - len(unique)))]
    rng.shuffle(jobs)  # late rings after hangups, callbacks before register_fired_calls, duplicates at once
    per_thread = [jobs[index::THREADS] for index in range(THREADS)]
    stores = [CallLedger(pg_schema_url) for _ in range(THREADS)]  # one engine per "host", upgrading lazily
    outcomes: list[tuple[str, Any, bool]] = []
    deferred: list[tuple[str, Any]] = []
    lock = threading.Lock()
    # Every try opens its placement before dialling, as the placer does.
    stores[0].open_placement(_token(1), destinations=20, expires_at=time.time() + 3600)
    for call in range(0, calls_count, 2):
        stores[0].open_placement(_owner(call), destinations=1, expires_at=time.time() + 3600)

    def work(index: int) -> None:
        store = stores[index]
        for job, call in per_thread[index]:
            if job == "fired-bulk":
                store.register_fired_calls(
                    request_uuids=["bulk"],
                    destinations=[f"+9190000{c:05d}" for c in range(1, calls_count, 2)],
                    from_number="918000000000",
                    correlation=_token(1),
                )
            elif job == "fired":
                store.register_fired_calls(
                    request_uuids=[f"req-{call}"],
                    destinations=[f"+9190000{call:05d}"],
                    from_number="918000000000",
                    correlation=_owner(call),
                )
            else:
                result = store_callback(store, job, _fields(call, job), correlation=_owner(call), bind=False)
                with lock:
                    if result.refusal is not None:
                        # Before its task recorded the call: deferred, and Vobiz retries it later.
                        assert result.refusal.pending, result.refusal
                        deferred.append((job, call))
                    else:
                        outcomes.append((job, call, result.stored))

    try:
        errors = _run_threads(work)
        assert errors == []
        store = stores[0]
        for job, call in deferred:  # Vobiz's retries, once every call is recorded
            result = store_callback(store, job, _fields(call, job), correlation=_owner(call), bind=False)
            assert result.refusal is None
            outcomes.append((job, call, result.stored))
        with store.engine.connect() as conn:
            assert (
                conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 3 * calls_count
            )
            assert conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar_one() == calls_count
            assert conn.execute(sa.select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]
        # Each distinct callback was stored exactly once, whichever thread got there first.
        stored = [(job, call) for job, call, was_stored in outcomes if was_stored]
        assert sorted(stored) == sorted(
            (job, call) for job, call in unique if job not in ("fired", "fired-bulk")
        )
        records = store.lookup(request_uuids=["bulk", *(f"req-{c}" for c in range(0, calls_count, 2))])
        assert len(records) == calls_count
        by_call = {record.call_uuid: record for record in records}
        assert set(by_call) == {f"call-{c}" for c in range(calls_count)}
        for call in range(calls_count):
            record = by_call[f"call-{call}"]
            assert (record.status, record.terminal, record.duration) == ("completed", True, call)
            # Whichever came first, the fired row and the callbacks ended up in one row.
            assert record.to is not None and record.to.lstrip("+") == f"9190000{call:05d}"
            assert record.task_id == ("t1" if call % 2 else "t0")
    finally:
        for store in stores:
            store.dispose()


def test_concurrent_duplicates_of_one_callback_store_one_event(pg_schema_url: str) -> None:
    stores = [CallLedger(pg_schema_url) for _ in range(THREADS)]
    stores[0].upgrade()
    results: list[bool] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        for _ in range(10):
            result = store_callback(stores[index], "hangup", _fields(7, "hangup"))
            with lock:
                results.append(result.stored)

    try:
        assert _run_threads(work) == []
        assert results.count(True) == 1
        assert len(results) == THREADS * 10
        assert len(stores[0].lookup(call_uuids=["call-7"])) == 1
    finally:
        for store in stores:
            store.dispose()


def test_concurrent_nonce_claims_accept_each_nonce_once(pg_schema_url: str) -> None:
    stores = [CallLedger(pg_schema_url) for _ in range(THREADS)]
    stores[0].upgrade()
    accepted: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        for nonce in range(20):
            # The same signature on every thread, each with a body of its own: one is stored, the rest
            # are replays of it.
            fields = {
                "CallUUID": f"nonce-call-{nonce}-{index}",
                "RequestUUID": f"nonce-request-{nonce}-{index}",
                "To": "+919000000001",
                "Event": "Ring",
                "CallStatus": "ringing",
            }
            result = store_callback(
                stores[index], "ring", fields, replay_keys=(f"nonce-{nonce}",), nonce_window=300
            )
            if result.stored:
                with lock:
                    accepted.append(f"nonce-{nonce}")

    try:
        assert _run_threads(work) == []
        assert sorted(accepted) == sorted(f"nonce-{nonce}" for nonce in range(20))
    finally:
        for store in stores:
            store.dispose()


def test_a_callback_waits_for_another_writer_holding_its_call(pg_schema_url: str) -> None:
    """Writers of one call serialise on PostgreSQL advisory locks: a receiver storing a callback waits while
    another host's transaction holds that call's lock, and stores it once that commits."""
    store, holder = CallLedger(pg_schema_url), CallLedger(pg_schema_url)
    store.upgrade()
    done = threading.Event()
    results: list[Any] = []

    def write() -> None:
        results.append(store_callback(store, "hangup", _fields(9, "hangup")))
        done.set()

    try:
        with holder.engine.begin() as conn:
            holder._db.lock(conn, ["call-9"])
            writer = threading.Thread(target=write)
            writer.start()
            assert not done.wait(1.0), "the callback was stored while another writer held its call's lock"
        assert done.wait(30), "the callback was not stored once the lock was released"
        writer.join(timeout=5)
        assert results[0].stored
    finally:
        store.dispose()
        holder.dispose()
