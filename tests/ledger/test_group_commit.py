"""Group commit: the writer thread, the store's batched write, and what it means for the store's contents.

The store tests (``test_store.py``) already run every behaviour through the group-commit path one callback
at a time; these tests put several callbacks into one batch on purpose.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from _ledger_helpers import astore_callback, place
from sqlalchemy import exc as sa_exc

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.exceptions import LedgerUnavailableError
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.group_commit import GroupCommitter
from vobiz_provider.ledger.schema import calls, events, nonces

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from vobiz_provider.ledger import PreparedCallback


# -- the writer thread ---------------------------------------------------------------------------------------


class Recorder:
    """An ``apply_batch`` that records its batches; the first one waits until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        self.release.wait(30)
        return [ValueError(f"bad {item}") if item < 0 else item * 10 for item in items]


def test_items_queued_while_a_batch_is_written_form_the_next_batch() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=recorder)
    first = committer.submit(1)
    assert recorder.started.wait(10)
    queued = [committer.submit(item) for item in range(2, 12)]
    recorder.release.set()
    assert first.result(10) == 10
    assert [future.result(10) for future in queued] == [item * 10 for item in range(2, 12)]
    assert recorder.batches == [[1], list(range(2, 12))]
    committer.close(10)


def test_batches_are_bounded() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=recorder, max_batch=4)
    committer.submit(0)
    assert recorder.started.wait(10)
    futures = [committer.submit(item) for item in range(1, 11)]
    recorder.release.set()
    assert [future.result(10) for future in futures] == [item * 10 for item in range(1, 11)]
    assert recorder.batches[1:] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    committer.close(10)


def test_an_item_failing_on_its_own_fails_only_its_future() -> None:
    recorder = Recorder()
    recorder.release.set()
    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=recorder)
    good, bad = committer.submit(3), committer.submit(-1)
    assert good.result(10) == 30
    with pytest.raises(ValueError, match="bad -1"):
        bad.result(10)
    committer.close(10)


def test_a_failed_batch_fails_every_future_and_the_writer_goes_on() -> None:
    calls_seen: list[list[int]] = []

    def apply_batch(items: Sequence[int]) -> list[int]:
        calls_seen.append(list(items))
        if len(calls_seen) == 1:
            raise LedgerUnavailableError("commit failed")
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=apply_batch)
    with pytest.raises(LedgerUnavailableError):
        committer.submit(1).result(10)
    assert committer.submit(2).result(10) == 2
    committer.close(10)


def test_a_future_cancelled_while_queued_is_not_written() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=recorder)
    committer.submit(1)
    assert recorder.started.wait(10)
    withdrawn, kept = committer.submit(2), committer.submit(3)
    assert withdrawn.cancel()
    recorder.release.set()
    assert kept.result(10) == 30
    with pytest.raises(CancelledError):
        withdrawn.result(10)
    assert recorder.batches == [[1], [3]]
    committer.close(10)


def test_close_writes_what_is_queued_and_a_later_submit_restarts_the_writer() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=recorder)
    committer.submit(1)
    assert recorder.started.wait(10)
    queued = committer.submit(2)
    closer = threading.Thread(target=committer.close, args=(10,))
    closer.start()
    recorder.release.set()
    closer.join(10)
    assert queued.result(0) == 20
    assert committer.submit(4).result(10) == 40
    committer.close(10)


async def test_loop_futures_are_resolved_on_their_loop_once_their_batch_is_committed() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=recorder)
    first = committer.asubmit(1)
    assert await asyncio.to_thread(recorder.started.wait, 10)
    queued = [committer.asubmit(item) for item in (2, -3, 4)]
    await asyncio.sleep(0.05)
    assert not any(future.done() for future in [first, *queued])  # nothing answered before its commit
    recorder.release.set()
    assert await asyncio.wait_for(first, 10) == 10
    assert await asyncio.wait_for(queued[0], 10) == 20
    with pytest.raises(ValueError, match="bad -3"):
        await queued[1]  # an item's own failure reaches that item alone
    assert await queued[2] == 40
    assert recorder.batches == [[1], [2, -3, 4]]
    await asyncio.to_thread(committer.close, 10)


async def test_a_loop_future_cancelled_while_queued_is_not_written() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=recorder)
    committer.asubmit(1)
    assert await asyncio.to_thread(recorder.started.wait, 10)
    withdrawn, kept = committer.asubmit(2), committer.asubmit(3)
    assert withdrawn.cancel()
    recorder.release.set()
    assert await asyncio.wait_for(kept, 10) == 30
    assert withdrawn.cancelled()
    assert recorder.batches == [[1], [3]]
    await asyncio.to_thread(committer.close, 10)


async def test_a_failed_batch_fails_the_loop_and_thread_futures_waiting_on_it() -> None:
    release = threading.Event()

    def apply_batch(items: Sequence[int]) -> list[int | BaseException]:
        release.wait(10)
        raise LedgerUnavailableError("store down")

    committer: GroupCommitter[int, int] = GroupCommitter(apply_batch=apply_batch)
    on_loop, in_thread = committer.asubmit(1), committer.submit(2)
    release.set()
    with pytest.raises(LedgerUnavailableError, match="store down"):
        await asyncio.wait_for(on_loop, 10)
    with pytest.raises(LedgerUnavailableError, match="store down"):
        await asyncio.wrap_future(in_thread)
    await asyncio.to_thread(committer.close, 10)


# -- the store's batched write -------------------------------------------------------------------------------


def _token(map_index: int = -1) -> CorrelationToken:
    return CorrelationToken(dag_id="calls", run_id="run", task_id="ring", map_index=map_index)


def ring(call_uuid: str) -> dict[str, str]:
    return {
        "CallUUID": call_uuid,
        "RequestUUID": f"req-{call_uuid}",
        "From": "918000000000",
        "To": "919000000001",
        "Event": "Ring",
        "CallStatus": "ringing",
    }


def answer(call_uuid: str) -> dict[str, str]:
    return {**ring(call_uuid), "Event": "StartApp", "CallStatus": "in-progress"}


def hangup(call_uuid: str) -> dict[str, str]:
    return {
        **ring(call_uuid),
        "Event": "Hangup",
        "CallStatus": "completed",
        "HangupCause": "NORMAL_CLEARING",
        "HangupCauseCode": "4000",
        "Duration": "42",
        "StartTime": "2026-11-27 10:00:00",
        "AnswerTime": "2026-11-27 10:00:05",
        "EndTime": "2026-11-27 10:00:47",
    }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'callbacks.db'}"
        return
    yield request.getfixturevalue("pg_schema_url")


@pytest.fixture
def store(store_url: str) -> Iterator[CallLedger]:
    store = CallLedger(store_url)
    store.upgrade()
    yield store
    store.dispose()


def _count(store: CallLedger, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _prepare(store: CallLedger, kind: str, fields: dict[str, str], nonce: str | None = None) -> Any:
    """A callback of a call the ``_token()`` try placed, signed with ``nonce`` (a fresh one by default)."""
    place(store, fields["RequestUUID"], [fields["To"]], correlation=_token())
    return store.prepare_callback(
        kind, fields, correlation=_token(), replay_keys=(nonce or uuid.uuid4().hex,)
    )


def test_concurrent_callbacks_are_each_stored_once(store: CallLedger) -> None:
    call_uuids = [f"call-{index}" for index in range(60)]

    async def post_all() -> list[Any]:
        posts = [
            astore_callback(store, "hangup", hangup(call), replay_keys=(uuid.uuid4().hex,))
            for call in call_uuids
        ]
        # Vobiz retrying ten of them (same fields, new signatures) while the first tries are queued.
        posts += [
            astore_callback(store, "hangup", hangup(call), replay_keys=(uuid.uuid4().hex,))
            for call in call_uuids[:10]
        ]
        return await asyncio.gather(*posts)

    results = asyncio.run(post_all())
    assert sum(result.stored for result in results) == 60
    assert sum(result.duplicate for result in results) == 10
    assert _count(store, events) == 60
    records = store.lookup(call_uuids=call_uuids)
    assert len(records) == 60
    assert {record.status for record in records} == {"completed"}


def test_events_of_one_call_in_one_batch_apply_in_order(store: CallLedger) -> None:
    store.register_fired_calls(request_uuids=["req-c1"], destinations=["+919000000001"], correlation=_token())
    batch = [_prepare(store, "ring", ring("c1")), _prepare(store, "answer", answer("c1"))]
    batch += [_prepare(store, "hangup", hangup("c1")), _prepare(store, "ring", ring("c1"))]  # a late ring
    batch.append(_prepare(store, "hangup", hangup("c2")))
    results = store.ingest(batch)
    assert [result.stored for result in results] == [True, True, True, False, True]
    assert results[3].duplicate  # the late ring repeats the first one's fields
    [record] = store.lookup(call_uuids=["c1"])
    assert record.status == "completed"
    assert record.request_uuid == "req-c1"
    assert (record.dag_id, record.task_id) == ("calls", "ring")
    assert _count(store, calls) == 2  # the fired row became c1's row: no second row for the same leg


def test_nonces_within_one_batch_are_claimed_once(store: CallLedger) -> None:
    batch = [
        _prepare(store, "ring", ring("c1"), nonce="n1"),
        _prepare(store, "ring", ring("c1"), nonce="n1"),  # Vobiz resending: same fields, same signature
        _prepare(store, "hangup", hangup("c1"), nonce="n1"),  # a captured signature on another body
    ]
    first, resent, forged = store.ingest(batch)
    assert first.stored
    assert resent.duplicate and not resent.replayed
    assert forged.replayed and not forged.stored
    assert _count(store, events) == 1


def test_a_bad_callback_in_a_batch_does_not_lose_the_good_ones(
    store: CallLedger, caplog: pytest.LogCaptureFixture
) -> None:
    good = [_prepare(store, "hangup", hangup(f"good-{index}")) for index in range(3)]
    bad = _prepare(store, "hangup", hangup("bad"))
    # A value the database driver cannot take: the event insert of the whole batch fails.
    bad = dataclasses.replace(bad, form={**bad.form, "Unserialisable": object()})
    results = store.ingest([good[0], bad, good[1], good[2]])
    assert isinstance(results[1], Exception)
    assert all(result.stored for result in (results[0], *results[2:]))
    assert _count(store, events) == 3
    assert {
        record.call_uuid for record in store.lookup(call_uuids=["good-0", "good-1", "good-2", "bad"])
    } == {
        "good-0",
        "good-1",
        "good-2",
    }
    assert "writing them one by one" in caplog.text


def test_a_failed_commit_stores_nothing_of_the_batch_and_keeps_its_nonces(store: CallLedger) -> None:
    batch: list[PreparedCallback] = [
        _prepare(store, "hangup", hangup(f"call-{index}"), nonce=f"nonce-{index}") for index in range(5)
    ]

    def fail_commit(conn: Any) -> None:
        raise sa_exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    sa.event.listen(store.engine, "commit", fail_commit)
    try:
        futures = [store.submit_callback(item) for item in batch]
        for future in futures:
            with pytest.raises(LedgerUnavailableError, match="disk I/O error"):
                future.result(30)
    finally:
        sa.event.remove(store.engine, "commit", fail_commit)
    assert (_count(store, events), _count(store, nonces)) == (0, 0)
    assert {record.status for record in store.lookup(request_uuids=[f"req-call-{i}" for i in range(5)])} == {
        "queued"  # as recorded when they were fired: no callback applied
    }
    # Vobiz retries with the same signatures: the nonces were not burnt by the failed batch.
    results = [store.submit_callback(item).result(30) for item in batch]
    assert all(result.stored for result in results)
    assert _count(store, events) == 5
