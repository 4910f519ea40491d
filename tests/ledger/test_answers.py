"""The store's answer specs and notification claims, on SQLite and PostgreSQL (schema version 2)."""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from _ledger_helpers import store_callback

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import (
    SCHEMA_VERSION,
    STEPS,
    answers,
    nonces,
    notifications,
    schema_version,
)
from vobiz_provider.models.answer import AnswerSpec

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'callbacks.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def store(store_url: str) -> Iterator[CallLedger]:
    store = CallLedger(store_url)
    yield store
    store.dispose()


def _token(try_number: int = 1, task_id: str = "page") -> CorrelationToken:
    return CorrelationToken(dag_id="alerts", run_id="manual__1", task_id=task_id, try_number=try_number)


def _backdate_claims(store: CallLedger, by: dt.timedelta) -> None:
    with store.engine.begin() as conn:
        for row in conn.execute(sa.select(notifications)).mappings().all():
            conn.execute(
                notifications.update()
                .where(notifications.c.dedupe_key == row["dedupe_key"])
                .values(claimed_at=row["claimed_at"] - by)
            )


# -- answers -----------------------------------------------------------------------------------------------


def test_answer_round_trip(store: CallLedger) -> None:
    spec = AnswerSpec.build(
        message="Ünïcödé & <markup>", voice="MAN", loop=2, gather={"prompt": "Press 1", "num_digits": 1}
    )
    store.save_answer(_token(), spec, callback_base_url="https://hooks.example.com/vobiz")
    assert store.load_answer_entry(_token()).spec == spec
    entry = store.load_answer_entry(_token())
    assert entry is not None
    assert entry.callback_base_url == "https://hooks.example.com/vobiz"
    assert entry.created_at.tzinfo is not None


def test_save_answer_is_an_upsert_per_try(store: CallLedger) -> None:
    store.save_answer(_token(1), AnswerSpec.build(message="first"))
    store.save_answer(_token(1), AnswerSpec.build(message="first, again"))
    store.save_answer(_token(2), AnswerSpec.build(message="second try"))
    assert store.load_answer_entry(_token(1)).spec == AnswerSpec.build(message="first, again")
    assert store.load_answer_entry(_token(2)).spec == AnswerSpec.build(message="second try")
    assert store.load_answer_entry(_token(3)) is None
    assert store.load_answer_entry(_token(1, task_id="other")) is None
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(answers)).scalar() == 2


def test_prune_drops_old_answers_and_claims_only(store: CallLedger) -> None:
    store.save_answer(_token(1), AnswerSpec.build(message="old"))
    assert store.claim_notification("old", window=HOUR)
    with store.engine.begin() as conn:
        conn.execute(answers.update().values(created_at=dt.datetime.now(dt.timezone.utc) - 3 * HOUR))
    _backdate_claims(store, 3 * HOUR)
    store.save_answer(_token(2), AnswerSpec.build(message="new"))
    assert store.claim_notification("new", window=HOUR)

    assert store.prune(older_than=2 * HOUR) == 2
    assert store.load_answer_entry(_token(1)) is None
    assert store.load_answer_entry(_token(2)) is not None
    assert not store.claim_notification("new", window=HOUR)


# -- schema upgrade ----------------------------------------------------------------------------------------


def test_upgrade_from_version_1_keeps_the_data(store_url: str) -> None:
    url = sa.engine.make_url(store_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url)
    seen_at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    with engine.begin() as conn:  # a store written by the previous release
        schema_version.create(conn)
        STEPS[0](conn)
        conn.execute(schema_version.insert().values(id=1, version=1, upgraded_at=seen_at))
        conn.execute(nonces.insert().values(nonce="kept", seen_at=seen_at))
        assert "vobiz_answers" not in sa.inspect(conn).get_table_names()
    engine.dispose()

    store = CallLedger(store_url)
    try:
        assert store.upgrade() == SCHEMA_VERSION
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(schema_version.c.version)).scalar() == SCHEMA_VERSION
            assert conn.execute(sa.select(nonces.c.nonce)).scalars().all() == ["kept"]
            tables = set(sa.inspect(conn).get_table_names())
            assert {"vobiz_answers", "vobiz_notifications", "vobiz_placements", "vobiz_rate_slots"} <= tables
        ring = {"CallUUID": "c-kept", "RequestUUID": "r-kept", "Event": "Ring", "CallStatus": "ringing"}
        window = 10 * 365 * 24 * 3600.0
        assert store_callback(store, "ring", ring, replay_keys=("kept",), nonce_window=window).replayed
        store.save_answer(_token(), AnswerSpec.build(message="after the upgrade"))
        assert store.load_answer_entry(_token()).spec == AnswerSpec.build(message="after the upgrade")
    finally:
        store.dispose()


# -- notification claims -----------------------------------------------------------------------------------


def test_a_key_is_claimed_once_per_window(store: CallLedger) -> None:
    assert store.claim_notification("etl/run1/load", window=HOUR) is True
    assert store.claim_notification("etl/run1/load", window=HOUR) is False
    assert store.claim_notification("etl/run1/transform", window=HOUR) is True


def test_a_claim_expires_after_its_window(store: CallLedger) -> None:
    assert store.claim_notification("k", window=HOUR)
    _backdate_claims(store, dt.timedelta(minutes=30))
    assert not store.claim_notification("k", window=HOUR)
    assert store.claim_notification("k", window=dt.timedelta(minutes=20))  # a shorter window has passed
    assert not store.claim_notification("k", window=dt.timedelta(minutes=20))  # ... and was renewed


def test_released_claims_and_zero_windows_let_the_next_caller_phone(store: CallLedger) -> None:
    assert store.claim_notification("k", window=HOUR)
    store.release_notification("k")
    assert store.claim_notification("k", window=HOUR)
    assert store.claim_notification("k", window=dt.timedelta(0))


def test_long_keys_are_stored_by_digest(store: CallLedger) -> None:
    long_key = "dag/" + "x" * 5000
    assert store.claim_notification(long_key, window=HOUR)
    assert not store.claim_notification(long_key, window=HOUR)
    assert store.claim_notification(long_key + "y", window=HOUR)


@pytest.mark.parametrize(("key", "window"), [("", HOUR), ("k", -HOUR)])
def test_bad_claims_are_refused(store: CallLedger, key: str, window: dt.timedelta) -> None:
    with pytest.raises(ValueError, match="claim_notification"):
        store.claim_notification(key, window=window)


def test_concurrent_claims_have_exactly_one_winner(store_url: str) -> None:
    threads_count = 8
    stores = [CallLedger(store_url) for _ in range(threads_count)]
    stores[0].upgrade()
    barrier = threading.Barrier(threads_count)
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim(store: CallLedger) -> None:
        try:
            barrier.wait()
            won = store.claim_notification("alerts/manual__1/page", window=HOUR)
            with lock:
                results.append(won)
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=claim, args=(store,)) for store in stores]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    for store in stores:
        store.dispose()
    assert errors == []
    assert sorted(results) == [False] * (threads_count - 1) + [True]
