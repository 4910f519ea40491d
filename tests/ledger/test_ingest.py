"""The ledger's write path (:mod:`vobiz_provider.ledger.ingest`) on its own, batch by batch.

What one ``ingest([...])`` does with several items at once: the binding verdicts, the replay keys and their
window, the dedupe keys, the call rows, a failing item retried alone, the purge of expired nonces, and the
group-commit writer. Checked by reading the tables. Time-dependent rules are tested at an explicit
transaction clock (``_write(..., now=...)``, the clock :meth:`Ingest.ingest` passes ``utcnow()`` as), so
nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from _ledger_helpers import TEST_TRY, place

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.exceptions import LedgerUnavailableError
from vobiz_provider.ledger import CallLedger, IngestResult, PreparedCallback
from vobiz_provider.ledger.binding import Refusal
from vobiz_provider.ledger.callback_columns import dedupe_key
from vobiz_provider.ledger.database import Conflict
from vobiz_provider.ledger.rows import to_call_record, utcnow
from vobiz_provider.ledger.schema import calls, events, nonces

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from vobiz_provider.models.record import CallRecord

NUMBER = "919000000001"
#: Another try, which placed nothing unless a test places for it.
OTHER_TRY = CorrelationToken(dag_id="tests", run_id="run", task_id="other")
SECOND = dt.timedelta(seconds=1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callbacks.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def store(store_url: str) -> Any:
    ledger = CallLedger(store_url)
    ledger.upgrade()
    yield ledger
    ledger.dispose()


@pytest.fixture(autouse=True)
def _batches_commit_whole(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Any:
    """A batch of healthy items is written in one transaction: never item by item (which would hide an
    error raised while writing it, the items then answering the same alone)."""
    yield
    if "expect_fallback" not in request.fixturenames:
        messages = [record.getMessage() for record in caplog.get_records("call")]
        assert [message for message in messages if "one by one" in message] == []


@pytest.fixture
def expect_fallback() -> None:
    """The test makes a batch fall back to writing its items one by one."""


@pytest.fixture
def short_store(store_url: str) -> Any:
    """A ledger whose own replay window is 40 s (the purge keeps at least the ledger's window)."""
    ledger = CallLedger(store_url, nonce_window=40)
    ledger.upgrade()
    yield ledger
    ledger.dispose()


def ring(
    call_uuid: str | None, request_uuid: str | None = "r1", to: str = NUMBER, **extra: str
) -> dict[str, str]:
    fields = {
        "CallUUID": call_uuid,
        "RequestUUID": request_uuid,
        "From": "918000000000",
        "To": to,
        "Direction": "outbound",
        "Event": "Ring",
        "CallStatus": "ringing",
        **extra,
    }
    return {key: value for key, value in fields.items() if value is not None}


def answer(call_uuid: str | None, request_uuid: str | None = "r1", **extra: str) -> dict[str, str]:
    return ring(call_uuid, request_uuid, **{"Event": "StartApp", "CallStatus": "in-progress", **extra})


def hangup(call_uuid: str | None, request_uuid: str | None = "r1", **extra: str) -> dict[str, str]:
    return ring(
        call_uuid,
        request_uuid,
        **{
            "Event": "Hangup",
            "CallStatus": "completed",
            "HangupCause": "NORMAL_CLEARING",
            "HangupCauseCode": "4000",
            "StartTime": "2026-11-27 10:00:00",
            "AnswerTime": "2026-11-27 10:00:05",
            "EndTime": "2026-11-27 10:00:47",
            **extra,
        },
    )


def _prep(store: CallLedger, kind: str, fields: dict[str, str], **kwargs: Any) -> PreparedCallback:
    kwargs.setdefault("correlation", TEST_TRY)
    return store.prepare_callback(kind, fields, **kwargs)


def _results(results: Sequence[IngestResult | BaseException]) -> list[IngestResult]:
    for result in results:
        assert isinstance(result, IngestResult), result
    return list(results)  # type: ignore[arg-type]


def _write(store: CallLedger, items: Sequence[PreparedCallback], now: dt.datetime) -> list[IngestResult]:
    """:meth:`Ingest.ingest` at an explicit transaction clock ``now``."""
    return store._db.run(lambda conn: store._write(conn, items, now=now), write=True)


def _nonces(store: CallLedger) -> dict[str, dt.datetime]:
    with store.engine.connect() as conn:
        return {key: seen_at for key, seen_at in conn.execute(sa.select(nonces.c.nonce, nonces.c.seen_at))}


def _plant_nonce(store: CallLedger, key: str, seen_at: dt.datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(nonces.insert().values(nonce=key, seen_at=seen_at))


def _events(store: CallLedger) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.select(events).order_by(events.c.id)).mappings()]


def _calls(store: CallLedger) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.select(calls).order_by(calls.c.id)).mappings()]


def _record(store: CallLedger, call_uuid: str) -> CallRecord:
    [record] = store.lookup(call_uuids=[call_uuid])
    return record


# -- prepare_callback ------------------------------------------------------------------------------------


def test_prepare_callback_works_out_the_rows_without_touching_the_database(store: CallLedger) -> None:
    token = CorrelationToken(
        dag_id="calls", run_id="run-7", task_id="dial", map_index=3, try_number=2, conn_id="vobiz_other"
    )
    fields = {**ring("c1"), "X-Extra": "kept"}
    prepared = store.prepare_callback("RING", fields, correlation=token, replay_keys=["k1", "k2"])
    assert prepared.kind == "ring"
    assert prepared.form == fields
    assert prepared.status == "ringing"
    assert (prepared.event, prepared.call_status) == ("Ring", "ringing")
    assert prepared.dedupe_key == dedupe_key("ring", fields)
    assert prepared.replay_keys == ("k1", "k2")
    assert (prepared.ti_key, prepared.try_number) == (token.ti_key, 2)
    assert prepared.values["call_uuid"] == "c1"
    assert prepared.values["request_uuid"] == "r1"
    assert prepared.values["destination"] == NUMBER
    assert {column: prepared.values[column] for column in ("ti_key", "dag_id", "run_id", "task_id")} == {
        "ti_key": token.ti_key,
        "dag_id": "calls",
        "run_id": "run-7",
        "task_id": "dial",
    }
    assert (prepared.values["map_index"], prepared.values["try_number"]) == (3, 2)
    assert prepared.values["conn_id"] == "vobiz_other"
    assert prepared.call_uuid == "c1"
    assert _events(store) == [] and _calls(store) == []


def test_prepare_callback_defaults_to_the_ledgers_window_and_budget(store_url: str) -> None:
    ledger = CallLedger(store_url, nonce_window=500.0, max_callbacks_per_call=9)
    try:
        default = ledger.prepare_callback("ring", ring("c1"), correlation=TEST_TRY)
        assert (default.nonce_window, default.max_callbacks_per_call) == (500.0, 9)
        assert default.replay_keys == ()
        zero = ledger.prepare_callback(
            "ring", ring("c1"), correlation=TEST_TRY, nonce_window=0, max_callbacks_per_call=0
        )
        assert (zero.nonce_window, zero.max_callbacks_per_call) == (0, 0)  # given, even if falsy
    finally:
        ledger.dispose()


def test_prepare_callback_normalises_the_kind_and_knows_no_call_uuid_when_none_is_named(
    store: CallLedger,
) -> None:
    prepared = _prep(store, "machine_detection", {"RequestUUID": "r1", "Machine": "true"})
    assert prepared.kind == "machine-detection"
    assert prepared.call_uuid is None
    assert prepared.status is None
    assert (prepared.event, prepared.call_status) == (None, None)
    with pytest.raises(ValueError, match="unknown callback kind"):
        _prep(store, "ringing", ring("c1"))


def test_prepare_callback_parses_the_times_with_the_model_of_its_route(store: CallLedger) -> None:
    # No Event: only the route says this is a hangup, whose model reads EndTime.
    fields = hangup("c1")
    del fields["Event"]
    prepared = _prep(store, "hangup", fields, timezone="Asia/Kolkata")
    assert prepared.values["end_time"] == "2026-11-27 10:00:47"
    assert prepared.values["end_time_utc"] == dt.datetime(2026, 11, 27, 4, 30, 47, tzinfo=dt.timezone.utc)


def test_an_unparsable_field_is_kept_raw_with_a_warning(
    store: CallLedger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vobiz_provider.ledger"):
        prepared = _prep(store, "hangup", hangup("c1", StartTime="yesterday at noon"))
    assert prepared.values["start_time"] == "yesterday at noon"
    assert prepared.values["start_time_utc"] is None
    assert prepared.status == "completed"  # the status is applied all the same
    [message] = [r.getMessage() for r in caplog.records if r.name.startswith("vobiz_provider.ledger")]
    assert message.startswith("Storing a Vobiz hangup callback (CallUUID ")
    assert "with fields left empty because they could not be read: StartTime: " in message


@pytest.mark.parametrize(("field", "limit"), [("Event", 64), ("CallStatus", 32)])
def test_an_event_field_longer_than_its_column_is_left_empty_and_kept_in_the_form(
    store: CallLedger, field: str, limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    column = "event" if field == "Event" else "call_status"
    fits = _prep(store, "ring", ring("c1", **{field: "x" * limit}))
    assert getattr(fits, column) == "x" * limit and fits.form[field] == "x" * limit
    with caplog.at_level(logging.WARNING, logger="vobiz_provider.ledger"):
        long = _prep(store, "ring", ring("c1", **{field: "x" * (limit + 1)}))
    assert getattr(long, column) is None
    assert long.form[field] == "x" * (limit + 1)  # the raw form keeps it whole
    [message] = [r.getMessage() for r in caplog.records if r.name.startswith("vobiz_provider.ledger")]
    assert f"{field}: longer than {limit} characters" in message


def test_a_call_value_longer_than_its_column_is_left_empty_and_kept_in_the_form(store: CallLedger) -> None:
    prepared = _prep(store, "ring", ring("c" * 65))
    assert prepared.values["call_uuid"] is None
    assert prepared.form["CallUUID"] == "c" * 65
    assert _prep(store, "ring", ring("c" * 64)).values["call_uuid"] == "c" * 64


def test_a_hangup_without_call_status_ends_by_its_cause_and_whether_it_was_answered(
    store: CallLedger,
) -> None:
    fields = hangup("c1", HangupCause="USER_BUSY", HangupCauseCode="3010")
    del fields["CallStatus"]
    assert _prep(store, "hangup", fields).status == "completed"  # answered (AnswerTime)
    del fields["AnswerTime"]
    assert _prep(store, "hangup", fields).status == "busy"


def test_a_large_form_is_stored_capped(store: CallLedger) -> None:
    prepared = _prep(store, "ring", {**ring("c1"), **{f"Extra{n}": "v" * 100 for n in range(100)}})
    assert prepared.form["CallUUID"] == "c1"
    assert "Direction" not in prepared.form  # not a field the ledger reads
    assert prepared.form["_dropped_fields"] == "101"


def test_the_repr_of_a_prepared_callback_leaves_out_the_fields_and_replay_keys(store: CallLedger) -> None:
    token = dataclasses.replace(TEST_TRY, conn_id="conn-only-in-values")
    prepared = store.prepare_callback(
        "ring", ring("c1", **{"X-Form": "only-in-form"}), correlation=token, replay_keys=("secret-key",)
    )
    shown = repr(prepared)
    assert "kind='ring'" in shown and f"dedupe_key='{prepared.dedupe_key}'" in shown
    assert "only-in-form" not in shown
    assert "conn-only-in-values" not in shown
    assert "secret-key" not in shown


# -- the event row -------------------------------------------------------------------------------------


def test_the_event_row_holds_what_the_callback_said(store: CallLedger) -> None:
    place(store, "r1")
    now = utcnow()
    prepared = _prep(store, "answer", answer("c1"), replay_keys=("k1", "k2"))
    [result] = _write(store, [prepared], now)
    assert result.stored
    [row] = _events(store)
    assert row == {
        "id": row["id"],
        "received_at": now,
        "kind": "answer",
        "event": "StartApp",
        "call_uuid": "c1",
        "request_uuid": "r1",
        "call_status": "in-progress",
        "ti_key": TEST_TRY.ti_key,
        "try_number": TEST_TRY.try_number,
        "dedupe_key": prepared.dedupe_key,
        "nonce": "k1",
        "fields": answer("c1"),
    }


def test_an_unsigned_callback_stores_no_nonce(store: CallLedger) -> None:
    place(store, "r1")
    _results(store.ingest([_prep(store, "ring", ring("c1"))]))
    assert [row["nonce"] for row in _events(store)] == [None]
    assert _nonces(store) == {}


# -- replay keys -----------------------------------------------------------------------------------------


def test_the_first_use_of_a_replay_key_in_a_batch_claims_it(store: CallLedger) -> None:
    place(store, "r1")
    place(store, "r2")
    place(store, "r3")
    batch = [
        _prep(store, "ring", ring("c1"), replay_keys=("k1",)),
        _prep(store, "ring", ring("c1"), replay_keys=("k1",)),  # Vobiz resending it: same body, same key
        _prep(store, "hangup", hangup("c1"), replay_keys=("k1",)),  # the key on another body: a replay
        _prep(store, "ring", ring("c2", "r2")),  # unsigned
    ]
    results = _results(store.ingest(batch))
    assert results == [
        IngestResult(stored=True, duplicate=False, call_uuid="c1"),
        IngestResult(stored=False, duplicate=True, call_uuid="c1", replayed=False),
        IngestResult(stored=False, duplicate=True, call_uuid="c1", replayed=True),
        IngestResult(stored=True, duplicate=False, call_uuid="c2"),
    ]
    assert [result.record for result in results] == [_record(store, "c1"), None, None, _record(store, "c2")]
    assert _record(store, "c1").status == "ringing"  # the replayed hangup changed nothing
    assert [(row["call_uuid"], row["kind"]) for row in _events(store)] == [("c1", "ring"), ("c2", "ring")]
    assert set(_nonces(store)) == {"k1"}

    # a later batch: the same again
    again = _results(store.ingest(batch[1:3]))
    assert again == [
        IngestResult(stored=False, duplicate=True, call_uuid="c1", replayed=False),
        IngestResult(stored=False, duplicate=True, call_uuid="c1", replayed=True),
    ]
    assert len(_events(store)) == 2


def test_an_item_with_any_replay_key_seen_before_is_not_stored(store: CallLedger) -> None:
    place(store, "r1")
    _results(store.ingest([_prep(store, "ring", ring("c1"), replay_keys=("k1",))]))
    [result] = _results(store.ingest([_prep(store, "answer", answer("c1"), replay_keys=("k2", "k1"))]))
    assert result == IngestResult(stored=False, duplicate=True, call_uuid="c1", replayed=True)
    assert _record(store, "c1").status == "ringing"


def test_a_replay_key_is_claimable_again_only_past_its_window(store: CallLedger) -> None:
    place(store, "r1")
    start = utcnow()
    window = dt.timedelta(seconds=60)
    _write(store, [_prep(store, "ring", ring("c1"), replay_keys=("k1",), nonce_window=60)], start)
    assert _nonces(store) == {"k1": start}
    forged = _prep(store, "answer", answer("c1"), replay_keys=("k1",), nonce_window=60)
    # exactly at the cutoff (seen_at == now - window): still within the window
    at_cutoff = _write(store, [forged], start + window)
    assert at_cutoff == [IngestResult(stored=False, duplicate=True, call_uuid="c1", replayed=True)]
    assert _nonces(store) == {"k1": start}
    # a microsecond past it: claimed again, and stored
    past = start + window + dt.timedelta(microseconds=1)
    [result] = _write(store, [forged], past)
    assert (result.stored, result.replayed) == (True, False)
    assert _nonces(store) == {"k1": past}


def test_each_item_is_claimed_within_its_own_window(store: CallLedger) -> None:
    place(store, "r1")
    place(store, "r2")
    start = utcnow()
    _write(store, [_prep(store, "ring", ring("c1"), replay_keys=("kA",))], start)
    _write(store, [_prep(store, "ring", ring("c2", "r2"), replay_keys=("kB",))], start)
    results = _write(
        store,
        [
            _prep(store, "answer", answer("c1"), replay_keys=("kA",), nonce_window=10),
            _prep(store, "answer", answer("c2", "r2"), replay_keys=("kB",), nonce_window=100),
        ],
        start + 20 * SECOND,
    )
    assert [(result.stored, result.replayed) for result in results] == [(True, False), (False, True)]
    assert _nonces(store) == {"kA": start + 20 * SECOND, "kB": start}


def test_refused_and_replayed_items_claim_nothing_and_store_nothing(store: CallLedger) -> None:
    place(store, "r1")
    refused = _prep(store, "ring", ring("c1"), correlation=OTHER_TRY, replay_keys=("k1",))
    batch = [
        refused,
        _prep(store, "ring", ring("c1"), replay_keys=("k1",)),  # the key is still free for this one
        _prep(store, "answer", answer("c1"), correlation=OTHER_TRY, replay_keys=("k9",)),
    ]
    results = _results(store.ingest(batch))
    no_placement = Refusal(status_code=403, reason="no call was placed with this callback URL")
    assert results[0] == IngestResult(stored=False, duplicate=False, call_uuid="c1", refusal=no_placement)
    assert (results[1].stored, results[1].replayed, results[1].refusal) == (True, False, None)
    assert results[2] == IngestResult(stored=False, duplicate=False, call_uuid="c1", refusal=no_placement)
    assert set(_nonces(store)) == {"k1"}
    assert [(row["kind"], row["ti_key"]) for row in _events(store)] == [("ring", TEST_TRY.ti_key)]
    assert _record(store, "c1").status == "ringing"


# -- purging expired nonces ----------------------------------------------------------------------------


def test_expired_nonces_are_purged_at_most_every_30_seconds(short_store: CallLedger) -> None:
    ledger = short_store
    place(ledger, "r1")
    now = utcnow()
    _plant_nonce(ledger, "old", now - 1000 * SECOND)
    _plant_nonce(ledger, "recent", now - 30 * SECOND)
    ledger._last_nonce_purge = time.monotonic() - 29.0
    _results(ledger.ingest([_prep(ledger, "ring", ring("c1"), replay_keys=("k1",), nonce_window=40)]))
    assert set(_nonces(ledger)) == {"old", "recent", "k1"}  # purged 29 s ago: not yet

    ledger._last_nonce_purge = time.monotonic() - 30.5
    before = time.monotonic()
    _results(ledger.ingest([_prep(ledger, "answer", answer("c1"), replay_keys=("k2",), nonce_window=40)]))
    assert set(_nonces(ledger)) == {"recent", "k1", "k2"}  # only what is past the window
    assert before <= ledger._last_nonce_purge <= time.monotonic()

    _plant_nonce(ledger, "old-again", now - 1000 * SECOND)
    _results(ledger.ingest([_prep(ledger, "hangup", hangup("c1"), replay_keys=("k3",), nonce_window=40)]))
    assert "old-again" in _nonces(ledger)  # purged a moment ago: not again


def test_a_long_window_is_purged_at_most_every_half_window(short_store: CallLedger) -> None:
    ledger = short_store
    place(ledger, "r1")
    now = utcnow()
    _plant_nonce(ledger, "old", now - 1000 * SECOND)
    ledger._last_nonce_purge = time.monotonic() - 45.0
    _results(ledger.ingest([_prep(ledger, "ring", ring("c1"), replay_keys=("k1",), nonce_window=100)]))
    assert "old" in _nonces(ledger)  # 45 s < 100 / 2
    ledger._last_nonce_purge = time.monotonic() - 60.0
    _results(ledger.ingest([_prep(ledger, "answer", answer("c1"), replay_keys=("k2",), nonce_window=100)]))
    assert set(_nonces(ledger)) == {"k1", "k2"}


def test_the_purge_keeps_a_nonce_exactly_at_the_cutoff(short_store: CallLedger) -> None:
    ledger = short_store
    place(ledger, "r1")
    now = utcnow()
    window = 60 * SECOND
    _plant_nonce(ledger, "at-cutoff", now - window)
    _plant_nonce(ledger, "past-cutoff", now - window - dt.timedelta(microseconds=1))
    ledger._last_nonce_purge = 0.0
    _write(ledger, [_prep(ledger, "ring", ring("c1"), replay_keys=("k1",), nonce_window=60)], now)
    assert set(_nonces(ledger)) == {"at-cutoff", "k1"}


def test_nothing_to_claim_purges_nothing(short_store: CallLedger) -> None:
    ledger = short_store
    place(ledger, "r1")
    _plant_nonce(ledger, "old", utcnow() - 1000 * SECOND)
    ledger._last_nonce_purge = 0.0
    _results(ledger.ingest([_prep(ledger, "ring", ring("c1"))]))
    assert set(_nonces(ledger)) == {"old"}


def test_a_new_ledgers_first_batch_purges_whatever_the_clocks_origin(store_url: str) -> None:
    # Half this window is longer than any uptime: time.monotonic() cannot stand for "never purged".
    ledger = CallLedger(store_url, nonce_window=1e9)
    try:
        ledger.upgrade()
        place(ledger, "r1")
        _plant_nonce(ledger, "expired", utcnow() - dt.timedelta(seconds=1e9 + 1))
        _results(ledger.ingest([_prep(ledger, "ring", ring("c1"), replay_keys=("k1",))]))
        assert set(_nonces(ledger)) == {"k1"}
    finally:
        ledger.dispose()


def test_the_purge_keeps_the_ledgers_window_and_the_longest_in_the_batch(store_url: str) -> None:
    ledger = CallLedger(store_url, nonce_window=600)
    try:
        ledger.upgrade()
        place(ledger, "r1")
        now = utcnow()
        _plant_nonce(ledger, "within-the-ledgers-window", now - 100 * SECOND)
        _plant_nonce(ledger, "past-it", now - 601 * SECOND)
        _results(ledger.ingest([_prep(ledger, "ring", ring("c1"), replay_keys=("k1",), nonce_window=60)]))
        assert set(_nonces(ledger)) == {"within-the-ledgers-window", "k1"}
    finally:
        ledger.dispose()


# -- dedupe keys ---------------------------------------------------------------------------------------


def test_a_dedupe_key_repeated_in_a_batch_or_already_stored_is_a_duplicate(store: CallLedger) -> None:
    place(store, "r1")
    results = _results(
        store.ingest(
            [
                _prep(store, "ring", ring("c1")),
                _prep(store, "ring", ring("c1"), replay_keys=("k2",)),  # a retry under a new signature
                _prep(store, "answer", answer("c1")),
            ]
        )
    )
    assert results[1:] == [
        IngestResult(stored=False, duplicate=True, call_uuid="c1"),
        IngestResult(stored=True, duplicate=False, call_uuid="c1"),
    ]
    assert results[2].record == _record(store, "c1")
    assert results[0].stored
    later = _results(store.ingest([_prep(store, "answer", answer("c1")), _prep(store, "ring", ring("c1"))]))
    assert later == [IngestResult(stored=False, duplicate=True, call_uuid="c1")] * 2
    assert [row["kind"] for row in _events(store)] == ["ring", "answer"]


# -- binding within a batch ------------------------------------------------------------------------------


def test_a_call_uuid_learnt_earlier_in_the_batch_binds_the_later_items(store: CallLedger) -> None:
    place(store, "r1")
    place(store, "r2", correlation=OTHER_TRY)
    results = _results(
        store.ingest(
            [
                _prep(store, "ring", ring("c1")),
                _prep(store, "answer", answer("c1")),  # the same try: its own call
                _prep(store, "ring", ring("c1", "r2"), correlation=OTHER_TRY),  # another try claiming c1
            ]
        )
    )
    assert [result.stored for result in results] == [True, True, False]
    assert results[2].refusal == Refusal(
        status_code=403, reason="the callback's CallUUID belongs to another task's call"
    )
    # and in a later batch, from the stored row
    [later] = _results(store.ingest([_prep(store, "answer", answer("c1", "r2"), correlation=OTHER_TRY)]))
    assert later.refusal == results[2].refusal


def test_the_budget_is_counted_across_the_batch(store: CallLedger) -> None:
    place(store, "r1")
    batch = [
        _prep(store, kind, fields, max_callbacks_per_call=2)
        for kind, fields in (("ring", ring("c1")), ("answer", answer("c1")), ("hangup", hangup("c1")))
    ]
    results = _results(store.ingest(batch))
    assert [result.stored for result in results] == [True, True, False]
    assert results[2].refusal == Refusal(
        status_code=429,
        reason="this call's callback URLs already stored 2 callbacks (the limit is "
        "[vobiz] max_callbacks_per_call=2 per destination)",
    )
    assert _record(store, "c1").status == "in-progress"


# -- call rows -----------------------------------------------------------------------------------------


def test_callbacks_apply_to_their_fired_call_in_order(store: CallLedger) -> None:
    place(store, "r1")
    results = _results(
        store.ingest(
            [
                _prep(store, "ring", ring("c1")),
                _prep(store, "machine-detection", ring("c1", Machine="true", Event="MachineDetection")),
                _prep(store, "hangup", hangup("c1")),
            ]
        )
    )
    [row] = _calls(store)
    assert (row["call_uuid"], row["request_uuid"], row["status"], row["machine"]) == (
        "c1",
        "r1",
        "completed",
        True,
    )
    assert results[-1].record == _record(store, "c1")
    assert [result.record.status for result in results if result.record] == [
        "ringing",
        "ringing",
        "completed",
    ]


def test_a_new_machine_detection_overwrites_the_last_on_a_live_call(store: CallLedger) -> None:
    place(store, "r1")
    _results(store.ingest([_prep(store, "answer", answer("c1"))]))
    for machine in ("true", "false"):
        fields = ring("c1", Machine=machine, Event="MachineDetection")
        [result] = _results(store.ingest([_prep(store, "machine-detection", fields)]))
        assert result.stored
    assert _calls(store)[0]["machine"] is False


def test_a_callback_with_its_to_spelt_otherwise_joins_its_fired_call(store: CallLedger) -> None:
    place(store, "r1", ["919000000001"])
    [result] = _results(store.ingest([_prep(store, "ring", ring("c1", to="919000000999"))]))
    assert result.stored
    assert [(row["call_uuid"], row["request_uuid"]) for row in _calls(store)] == [("c1", "r1")]


def test_a_batch_mixing_callbacks_with_and_without_uuids(store: CallLedger) -> None:
    place(store, "r1")
    place(store, "r2")
    place(store, "r3")
    _results(store.ingest([_prep(store, "ring", ring("c1"))]))
    results = _results(
        store.ingest(
            [
                _prep(store, "answer", answer("c1", None)),  # CallUUID only: bound by its stored call
                _prep(store, "ring", ring("c2", "r2")),
                _prep(store, "ring", ring(None, "r3")),  # RequestUUID only
            ]
        )
    )
    assert [result.stored for result in results] == [True, True, True]
    assert [result.call_uuid for result in results] == ["c1", "c2", None]
    rows = {row["request_uuid"]: row for row in _calls(store)}
    assert {request: row["status"] for request, row in rows.items()} == {
        "r1": "in-progress",
        "r2": "ringing",
        "r3": "ringing",
    }
    assert rows["r3"]["call_uuid"] is None


# The binding stores only callbacks that name a call row already stored (their try recorded it), so
# ingest() always merges. _apply_to_calls' own contract - calls new to the ledger and to the batch are
# inserted in one statement, the others merged in order - is tested on it directly.


def _apply(
    store: CallLedger, items: Sequence[PreparedCallback], *, known: list[Any] | None = None
) -> list[CallRecord | None]:
    def work(conn: Any) -> list[CallRecord | None]:
        rows = store._load_known(conn, items) if known is None else known
        call_rows = store._apply_to_calls(conn, items, rows, now=utcnow())
        return [None if row is None else to_call_record(row) for row in call_rows]

    return store._db.run(work, write=True)


def test_calls_new_to_the_ledger_and_the_batch_are_inserted(store: CallLedger) -> None:
    items = [
        _prep(store, "ring", {"Event": "Ring"}),  # names no call: none
        _prep(store, "ring", ring("c1")),
        _prep(store, "machine-detection", ring("c2", "r2", Machine="true", Event="MachineDetection")),
        _prep(store, "answer", answer("c4", None)),  # a call without its request
        _prep(store, "answer", answer("c3", "r3")),  # c3 twice: merged in order
        _prep(store, "hangup", hangup("c3", "r3")),
    ]
    records = _apply(store, items)
    assert records[0] is None
    assert [record.call_uuid if record else None for record in records] == [
        None,
        "c1",
        "c2",
        "c4",
        "c3",
        "c3",
    ]
    assert [record.status if record else None for record in records] == [
        None,
        "ringing",
        "in-progress",  # machine detection happens on an answered call
        "in-progress",
        "in-progress",
        "completed",
    ]
    rows = {row["call_uuid"]: row for row in _calls(store)}
    assert set(rows) == {"c1", "c2", "c3", "c4"}
    assert {uuid: row["status"] for uuid, row in rows.items()} == {
        "c1": "ringing",
        "c2": "in-progress",
        "c3": "completed",
        "c4": "in-progress",
    }
    assert rows["c1"]["leg_key"] == f"r1|{NUMBER}" and rows["c1"]["source"] == "callback"
    assert rows["c4"]["leg_key"] is None and rows["c4"]["request_uuid"] is None
    assert rows["c2"]["machine"] is True
    assert records[1] == _record(store, "c1")


def test_calls_already_stored_are_merged_not_inserted(store: CallLedger) -> None:
    place(store, "r5")  # a fired call without its CallUUID yet
    _apply(store, [_prep(store, "ring", ring("c1"))])
    records = _apply(
        store,
        [
            _prep(store, "answer", answer("c1", "r9")),  # c1 is stored (under r1)
            _prep(
                store, "ring", ring("c6", "r5", to="919000000999")
            ),  # r5 is stored, the leg spelt otherwise
        ],
    )
    assert [(record.call_uuid, record.status) for record in records if record] == [
        ("c1", "in-progress"),
        ("c6", "ringing"),
    ]
    assert sorted((row["call_uuid"], row["request_uuid"]) for row in _calls(store)) == [
        ("c1", "r1"),
        ("c6", "r5"),
    ]


def test_a_call_row_that_appears_under_the_writer_is_a_conflict(store: CallLedger) -> None:
    _apply(store, [_prep(store, "ring", ring("c1"))])
    with pytest.raises(Conflict, match="a call row appeared while its writer held the locks"):
        _apply(store, [_prep(store, "answer", answer("c1"))], known=[])  # read before c1 was stored
    assert _calls(store)[0]["status"] == "ringing"


def test_concurrent_batches_on_one_file_all_commit(store: CallLedger, store_url: str) -> None:
    requests = [f"r{n}" for n in range(8)]
    for request in requests:
        place(store, request)
    errors: list[BaseException] = []
    results: list[IngestResult | BaseException] = []

    def writer(request: str) -> None:
        try:
            for kind, fields in (
                ("ring", ring(f"c-{request}", request)),
                ("answer", answer(f"c-{request}", request)),
            ):
                results.extend(store.ingest([_prep(store, kind, fields)]))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(request,)) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [result.stored for result in _results(results)] == [True] * 16
    assert {row["status"] for row in _calls(store)} == {"in-progress"}


# -- a failing item --------------------------------------------------------------------------------------


def _broken(store: CallLedger, fields: dict[str, str], **kwargs: Any) -> PreparedCallback:
    """A prepared callback whose event row breaks a constraint (``kind`` is NOT NULL)."""
    return dataclasses.replace(_prep(store, "ring", fields, **kwargs), kind=None)  # type: ignore[arg-type]


def test_an_item_that_fails_on_its_own_is_retried_alone(
    store: CallLedger, caplog: pytest.LogCaptureFixture, expect_fallback: None
) -> None:
    place(store, "r1")
    place(store, "r2")
    place(store, "r3")
    batch = [
        _prep(store, "ring", ring("c1"), replay_keys=("k1",)),
        _broken(store, ring("c2", "r2"), replay_keys=("k2",)),
        _prep(store, "ring", ring("c3", "r3"), replay_keys=("k3",)),
    ]
    with caplog.at_level(logging.WARNING, logger="vobiz_provider.ledger.ingest"):
        results = store.ingest(batch)
    assert len(results) == 3
    error = results[1]
    assert isinstance(error, sa.exc.IntegrityError)
    assert isinstance(results[0], IngestResult) and results[0].stored
    assert isinstance(results[2], IngestResult) and results[2].stored
    assert set(_nonces(store)) == {"k1", "k3"}  # the failed item's key is not burnt
    assert [row["call_uuid"] for row in _events(store)] == ["c1", "c3"]
    reason = str(error.orig).strip().splitlines()[0]
    assert [r.getMessage() for r in caplog.records if r.name == "vobiz_provider.ledger.ingest"] == [
        f"A batch of 3 callbacks failed (IntegrityError: {reason}); writing them one by one"
    ]


def test_a_batch_of_one_failing_item_answers_its_error(store: CallLedger) -> None:
    place(store, "r1")
    [error] = store.ingest([_broken(store, ring("c1"))])
    assert isinstance(error, sa.exc.IntegrityError)
    assert _events(store) == []


def test_an_unavailable_ledger_raises_for_the_whole_batch(tmp_path: Path) -> None:
    ledger = CallLedger(f"sqlite:///{tmp_path / 'missing-dir' / 'callbacks.db'}")
    try:
        items = [
            ledger.prepare_callback("ring", ring("c1"), correlation=TEST_TRY),
            ledger.prepare_callback("answer", answer("c1"), correlation=TEST_TRY),
        ]
        for batch in (items[:1], items):
            with pytest.raises(LedgerUnavailableError, match="unavailable"):
                ledger.ingest(batch)
    finally:
        ledger.dispose()


# -- the writer ------------------------------------------------------------------------------------------


def _writers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if "vobiz" in thread.name.lower()]


def test_the_writer_resolves_futures_and_drains_its_queue_when_stopped(store: CallLedger) -> None:
    place(store, "r1")
    before = set(_writers())
    futures = [
        store.submit_callback(_prep(store, kind, fields))
        for kind, fields in (("ring", ring("c1")), ("answer", answer("c1")), ("hangup", hangup("c1")))
    ]
    store._stop_writer(timeout=30)
    assert all(future.done() for future in futures)
    assert [future.result().stored for future in futures] == [True, True, True]
    assert set(_writers()) <= before  # the writer thread has ended
    assert _record(store, "c1").status == "completed"
    store._stop_writer()  # no writer: nothing to stop

    again = store.submit_callback(_prep(store, "ring", ring("c1")))  # restarts the writer
    assert again.result(timeout=30) == IngestResult(stored=False, duplicate=True, call_uuid="c1")
    store._stop_writer(timeout=30)


def test_stopping_the_writer_waits_at_most_its_timeout(tmp_path: Path) -> None:
    store = CallLedger(f"sqlite:///{tmp_path / 'callbacks.db'}")  # SQLite: its writers take a lock in turn
    try:
        store.upgrade()
        place(store, "r1")
        write_lock = store._db._write_lock
        assert write_lock is not None
        with write_lock:  # another writer of this file holds it: the writer waits for its turn
            future = store.submit_callback(_prep(store, "ring", ring("c1")))
            started = time.monotonic()
            store._stop_writer(timeout=0.2)
            assert time.monotonic() - started < 3.0  # not the writer's busy_timeout (5 s)
            assert not future.done()
        assert future.result(timeout=30).stored  # the writer goes on with what it took
    finally:
        store.dispose()
