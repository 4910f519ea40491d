"""Placements a retry reads: the newest earlier try's placement, and whether its calls' outcome was reported.

On both backends; plus the schema 4 upgrade that adds ``settled_at`` to a store written by schema 3.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from _ledger_helpers import store_of_version

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import SCHEMA_VERSION, placements

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callbacks.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[CallLedger]:
    store = CallLedger(store_url)
    store.upgrade()
    yield store
    store.dispose()


def _token(try_number: int, task_id: str = "call") -> CorrelationToken:
    return CorrelationToken(dag_id="alerts", run_id="r1", task_id=task_id, try_number=try_number)


def test_last_placement_is_the_newest_earlier_try(store: CallLedger) -> None:
    key = _token(1).ti_key
    assert store.last_placement(key, before_try=5) is None
    store.open_placement(_token(1), destinations=1, expires_at=time.time() + 600)
    store.register_fired_calls(request_uuids=["r-1"], destinations=["+14155550101"], correlation=_token(1))
    store.open_placement(_token(2), destinations=1, expires_at=time.time() + 600)  # died before recording
    store.open_placement(_token(1, task_id="other"), destinations=1, expires_at=time.time() + 600)

    newest = store.last_placement(key, before_try=3)
    assert newest is not None and newest.try_number == 2 and newest.registered_at is None
    first = store.last_placement(key, before_try=2)
    assert first is not None and first.try_number == 1 and first.registered_at is not None
    assert first.settled_at is None
    assert store.last_placement(key, before_try=1) is None


def test_settle_calls_marks_the_placement_of_the_try_that_recorded_them(store: CallLedger) -> None:
    for try_number, uuid in ((1, "r-1"), (2, "r-2")):
        store.open_placement(_token(try_number), destinations=1, expires_at=time.time() + 600)
        store.register_fired_calls(
            request_uuids=[uuid], destinations=["+14155550101"], correlation=_token(try_number)
        )

    assert store.settle_calls(["r-1", "unknown"]) == 1
    assert store.settle_calls([]) == 0

    key = _token(1).ti_key
    one, two = store.last_placement(key, before_try=2), store.last_placement(key, before_try=3)
    assert one is not None and isinstance(one.settled_at, dt.datetime)
    assert two is not None and two.settled_at is None


def test_upgrade_from_version_3_adds_settled_at_and_keeps_the_placements(store_url: str) -> None:
    opened = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    engine = store_of_version(store_url, 3)  # a store written by the previous release (schema 3)
    with engine.begin() as conn:  # ... which had no settled_at
        conn.execute(sa.text("ALTER TABLE vobiz_placements DROP COLUMN settled_at"))
        conn.execute(
            sa.text(
                "INSERT INTO vobiz_placements (ti_key, try_number, opened_at, expires_at, destinations) "
                "VALUES ('alerts/r1/call/-1', 1, :t, :t, 1)"
            ),
            {"t": opened.replace(tzinfo=None)},
        )
    engine.dispose()

    store = CallLedger(store_url)
    try:
        assert store.upgrade() == SCHEMA_VERSION
        assert store.upgrade() == SCHEMA_VERSION  # idempotent
        state = store.last_placement("alerts/r1/call/-1", before_try=2)
        assert state is not None and state.try_number == 1 and state.settled_at is None
        with store.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(placements.name)}
        assert "settled_at" in columns
    finally:
        store.dispose()
