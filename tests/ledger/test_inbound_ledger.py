"""The inbound part of the ledger on SQLite and PostgreSQL: one row per call, key press and hangup; replay
keys claimed in the same transaction; stream cursors that only move forward."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import inbound_events


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: Any, tmp_path: Any) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'inbound.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    store = CallLedger(url)
    yield store
    store.dispose()


def _store(
    ledger: CallLedger, kind: str, call_uuid: str, *, digits: str | None = None, keys: tuple = ()
) -> Any:
    return ledger.store_inbound(
        application="line",
        kind=kind,
        call_uuid=call_uuid,
        values={"from_number": "+14155550100", "to_number": "+14155550199", "digits": digits, "duration": 7},
        fields={"CallUUID": call_uuid, "Digits": digits or ""},
        replay_keys=keys,
        nonce_window=600,
    )


def test_one_row_per_call_key_press_and_hangup(ledger):
    first = _store(ledger, "call", "c-1", keys=("k1",))
    assert (first.duplicate, first.replayed) == (False, False)
    assert _store(ledger, "call", "c-1", keys=("k2",)).duplicate  # Vobiz fetched the answer URL again
    assert not _store(ledger, "digits", "c-1", digits="1").duplicate
    assert not _store(ledger, "digits", "c-1", digits="2").duplicate  # another key: another event
    assert _store(ledger, "digits", "c-1", digits="1").duplicate
    assert not _store(ledger, "hangup", "c-1").duplicate

    rows = ledger.inbound_events_after(0)
    assert [(r.kind, r.digits) for r in rows] == [
        ("call", None),
        ("digits", "1"),
        ("digits", "2"),
        ("hangup", None),
    ]
    assert (rows[0].from_number, rows[0].to_number, rows[3].duration) == ("+14155550100", "+14155550199", 7)
    assert [r.id for r in ledger.inbound_events_after(rows[1].id, limit=1)] == [rows[2].id]


def test_a_replay_key_used_on_another_body_is_refused_and_nothing_is_written(ledger):
    assert not _store(ledger, "call", "c-1", keys=("k1",)).replayed
    replay = _store(ledger, "call", "c-2", keys=("k1",))
    assert (replay.replayed, replay.event_id) == (True, None)
    again = _store(ledger, "call", "c-1", keys=("k1",))  # the same request again: Vobiz's retry
    assert again.duplicate and not again.replayed
    assert [r.call_uuid for r in ledger.inbound_events_after(0)] == ["c-1"]


def test_cursors_are_per_stream_and_never_move_back(ledger):
    assert ledger.inbound_cursor("s") == 0
    ledger.advance_inbound_cursor("s", 5)
    ledger.advance_inbound_cursor("s", 3)
    ledger.advance_inbound_cursor("t", 1)
    assert (ledger.inbound_cursor("s"), ledger.inbound_cursor("t")) == (5, 1)


def test_prune_deletes_old_inbound_events_and_a_stream_goes_on_from_its_cursor(ledger):
    _store(ledger, "call", "c-old")
    _store(ledger, "hangup", "c-old")
    with ledger.engine.begin() as conn:
        conn.execute(
            inbound_events.update().values(
                received_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8)
            )
        )
    _store(ledger, "call", "c-new")
    assert ledger.prune(older_than=dt.timedelta(days=7)) == 2
    rows = ledger.inbound_events_after(0)
    assert [(r.kind, r.call_uuid) for r in rows] == [("call", "c-new")]
    # Ids keep growing after a prune: a cursor past the deleted rows still reads only what is new.
    newest = _store(ledger, "hangup", "c-new")
    assert [r.id for r in ledger.inbound_events_after(rows[0].id)] == [newest.event_id]
