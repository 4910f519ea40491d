"""The callback store, on SQLite and (when configured) on PostgreSQL.

Every behavioural test runs against both backends through the ``store`` fixture; the PostgreSQL variant
uses a fresh schema per test, dropped afterwards, because CI shares one database between test runs.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from _ledger_helpers import store_callback, store_of_version

from vobiz_provider.config import VobizSettings
from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.exceptions import LedgerUnavailableError
from vobiz_provider.ledger import CallLedger, dispose_ledgers, get_ledger, schema
from vobiz_provider.ledger.binding import load_tries
from vobiz_provider.ledger.callback_columns import dedupe_key
from vobiz_provider.ledger.schema import (
    FIRED_OF_TRY_INDEX,
    SCHEMA_VERSION,
    STEPS,
    calls,
    events,
    nonces,
    placements,
    schema_version,
)
from vobiz_provider.models.record import CallRecord

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def _token(try_number: int = 1, map_index: int = -1, task_id: str = "ring") -> CorrelationToken:
    return CorrelationToken(
        dag_id="calls",
        run_id="manual__2026-11-27T00:00:00+00:00",
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        conn_id="vobiz_default",
    )


def ring(call_uuid: str, request_uuid: str | None = None, to: str = "919000000001") -> dict[str, str]:
    return {
        "CallUUID": call_uuid,
        "RequestUUID": request_uuid or call_uuid,
        "ALegRequestUUID": request_uuid or call_uuid,
        "From": "918000000000",
        "To": to,
        "Direction": "outbound",
        "Event": "Ring",
        "CallStatus": "ringing",
        "SessionStart": "2026-11-27 04:30:00.123456",
    }


def answer(call_uuid: str, request_uuid: str | None = None, to: str = "919000000001") -> dict[str, str]:
    return {**ring(call_uuid, request_uuid, to), "Event": "StartApp", "CallStatus": "in-progress"}


def hangup(
    call_uuid: str,
    request_uuid: str | None = None,
    to: str = "919000000001",
    *,
    status: str | None = "completed",
    code: str = "4000",
    **extra: str,
) -> dict[str, str]:
    fields = {
        **ring(call_uuid, request_uuid, to),
        "Event": "Hangup",
        "HangupCause": "NORMAL_CLEARING",
        "HangupCauseCode": code,
        "HangupCauseName": "Normal Hangup",
        "Duration": "42",
        "BillDuration": "60",
        "StartTime": "2026-11-27 10:00:00",
        "AnswerTime": "2026-11-27 10:00:05",
        "EndTime": "2026-11-27 10:00:47",
        **extra,
    }
    if status is None:
        fields.pop("CallStatus")
    else:
        fields["CallStatus"] = status
    return fields


def _count(store: CallLedger, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _one(store: CallLedger, **kwargs: list[str]) -> CallRecord:
    records = store.lookup(**kwargs)
    assert len(records) == 1, records
    return records[0]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'callbacks.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_schema_url")


class GroupCommitLedger(CallLedger):
    """A ledger whose callbacks :func:`store_callback` writes through the group-commit writer."""

    via_group_commit = True


@pytest.fixture(params=["transaction", "group-commit"])
def store(store_url: str, request: pytest.FixtureRequest) -> Iterator[CallLedger]:
    """Every behaviour holds whether a callback is written in its own transaction or in a batch."""
    store = (GroupCommitLedger if request.param == "group-commit" else CallLedger)(store_url)
    yield store
    store.dispose()


# -- schema ------------------------------------------------------------------------------------------------


def test_upgrade_is_idempotent_and_records_the_version(store: CallLedger, store_url: str) -> None:
    assert store.upgrade() == SCHEMA_VERSION
    assert store.upgrade() == SCHEMA_VERSION
    other = CallLedger(store_url)  # another process arriving later
    assert other.upgrade() == SCHEMA_VERSION
    other.dispose()
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(schema_version.c.id, schema_version.c.version)).all()
        tables = set(sa.inspect(conn).get_table_names())
    assert rows == [(1, SCHEMA_VERSION)]
    assert {"vobiz_callback_events", "vobiz_calls", "vobiz_nonces", "vobiz_schema_version"} <= tables


def test_schema_is_created_lazily_on_first_use(store: CallLedger) -> None:
    assert store.lookup(call_uuids=["nothing"]) == []
    assert _count(store, calls) == 0


def test_newer_schema_is_refused(store: CallLedger, store_url: str) -> None:
    store.upgrade()
    with store.engine.begin() as conn:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(RuntimeError, match="newer than this provider"):
        CallLedger(store_url).upgrade()


def test_upgrade_indexes_the_fired_calls_of_a_try_and_keeps_counting_them(store_url: str) -> None:
    engine = store_of_version(store_url, STEPS.index(schema._step_9))  # a store of the release before
    with engine.connect() as conn:
        assert FIRED_OF_TRY_INDEX[0] not in {i["name"] for i in sa.inspect(conn).get_indexes(calls.name)}
    engine.dispose()
    store = CallLedger(store_url)
    try:
        owner = _token(try_number=2)
        store.register_fired_calls(
            request_uuids=["r-1", "r-2"], destinations=["919000000001", "919000000002"], correlation=owner
        )
        assert store.upgrade() == SCHEMA_VERSION
        with store.engine.connect() as conn:
            assert FIRED_OF_TRY_INDEX[0] in {i["name"] for i in sa.inspect(conn).get_indexes(calls.name)}
            known = load_tries(conn, [(owner.ti_key, 2), (owner.ti_key, 1)], [])
        assert (known[(owner.ti_key, 2)].destinations, known[(owner.ti_key, 1)].destinations) == (2, 0)
    finally:
        store.dispose()


def test_the_fired_calls_of_a_try_are_counted_from_the_index_alone(sqlite_url: str) -> None:
    """SQLite's plan for the binding query reads no call row: a try that dialled many destinations costs
    every batch of its callbacks an index range, not a row lookup per call."""
    from vobiz_provider.ledger.binding import _PLACEMENTS_OF

    store = CallLedger(sqlite_url)
    try:
        store.upgrade()
        with store.engine.connect() as conn:
            query = _PLACEMENTS_OF.params(b_ti_keys=["calls/run/ring/-1"])
            sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
            plan = [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    finally:
        store.dispose()
    [calls_step] = [step for step in plan if "vobiz_calls" in step]
    assert calls_step.startswith(f"SEARCH vobiz_calls USING COVERING INDEX {FIRED_OF_TRY_INDEX[0]} "), plan


# -- callbacks ---------------------------------------------------------------------------------------------


def test_duplicate_callbacks_store_one_event(store: CallLedger) -> None:
    first = store_callback(store, "hangup", hangup("c1"), correlation=_token(), replay_keys=("n-1",))
    again = store_callback(store, "hangup", hangup("c1"), correlation=_token(), replay_keys=("n-2",))
    assert (first.stored, first.duplicate) == (True, False)
    assert (again.stored, again.duplicate, again.replayed) == (False, True, False)
    assert _count(store, events) == 1
    assert _one(store, call_uuids=["c1"]).status == "completed"


def test_dedupe_key_ignores_volatile_fields_only() -> None:
    fields = hangup("c1")
    assert dedupe_key("hangup", fields) == dedupe_key("hangup", {**fields, "timestamp": "1764201600"})
    assert dedupe_key("hangup", fields) != dedupe_key("hangup", {**fields, "Duration": "43"})
    assert dedupe_key("hangup", fields) != dedupe_key("ring", fields)


def test_late_ring_after_hangup_does_not_regress(store: CallLedger) -> None:
    store_callback(store, "answer", answer("c1"), correlation=_token())
    store_callback(store, "hangup", hangup("c1"), correlation=_token())
    late = store_callback(store, "ring", ring("c1"), correlation=_token())
    assert late.stored  # kept as an event ...
    record = _one(store, call_uuids=["c1"])
    assert (record.status, record.terminal) == ("completed", True)  # ... but the call stays ended
    assert record.duration == 42
    assert _count(store, events) == 3


def test_out_of_order_answer_then_ring(store: CallLedger) -> None:
    store_callback(store, "answer", answer("c1"), correlation=_token())
    store_callback(store, "ring", ring("c1"), correlation=_token())
    assert _one(store, call_uuids=["c1"]).status == "in-progress"


def test_terminal_state_absorbs_and_only_fills_gaps(store: CallLedger) -> None:
    first = hangup("c1")
    first.pop("HangupSource", None)
    store_callback(store, "hangup", first, correlation=_token())
    second = hangup("c1", status="busy", code="3010", Duration="7", HangupSource="Callee")
    result = store_callback(store, "hangup", second, correlation=_token())
    assert result.stored
    record = _one(store, call_uuids=["c1"])
    assert record.status == "completed"
    assert record.hangup_cause_code == 4000
    assert record.duration == 42
    assert record.hangup_source == "Callee"  # was empty: filled


def test_hangup_without_call_status_is_terminal_by_cause(store: CallLedger) -> None:
    store_callback(store, "hangup", hangup("c1", status=None, code="3010", AnswerTime=""))
    store_callback(store, "hangup", hangup("c2", status=None, code="6000"))  # answered, then time limit
    assert (_one(store, call_uuids=["c1"]).status, _one(store, call_uuids=["c1"]).terminal) == ("busy", True)
    assert _one(store, call_uuids=["c2"]).status == "completed"


def test_times_are_converted_from_the_account_timezone(store: CallLedger) -> None:
    store_callback(store, "hangup", hangup("c1"), correlation=_token(), timezone="Asia/Kolkata")
    record = _one(store, call_uuids=["c1"])
    assert record.start_time == "2026-11-27T04:30:00Z"
    assert record.answer_time == "2026-11-27T04:30:05Z"
    assert record.end_time == "2026-11-27T04:30:47Z"
    with store.engine.connect() as conn:
        raw = conn.execute(sa.select(calls.c.start_time)).scalar_one()
    assert raw == "2026-11-27 10:00:00"


def test_unanswered_call_has_no_answer_time(store: CallLedger) -> None:
    store_callback(store, "hangup", hangup("c1", status="no-answer", code="3000", AnswerTime=""))
    record = _one(store, call_uuids=["c1"])
    assert (record.status, record.answer_time) == ("no-answer", None)


def test_machine_detection_and_gather_only_add_their_fields(store: CallLedger) -> None:
    store_callback(store, "ring", ring("c1"), correlation=_token())
    machine = {**answer("c1"), "Event": "MachineDetection", "Machine": "true", "IfMachine": "continue"}
    store_callback(store, "machine-detection", machine, correlation=_token())
    record = _one(store, call_uuids=["c1"])
    assert (record.status, record.machine) == ("ringing", True)
    store_callback(store, "hangup", hangup("c1"), correlation=_token())
    gather = {"CallUUID": "c1", "RequestUUID": "c1", "Digits": "42", "InputType": "dtmf"}
    store_callback(store, "gather", gather, correlation=_token())
    record = _one(store, call_uuids=["c1"])
    assert (record.status, record.terminal, record.digits, record.machine) == ("completed", True, "42", True)


def test_oversized_fields_are_left_empty_and_the_callback_stored(store: CallLedger) -> None:
    """Lenient ingest (was VobizValidationError, 422): the value stays whole in the event row."""
    store.upgrade()
    assert store_callback(store, "hangup", hangup("c1", HangupCause="X" * 129)).stored
    record = _one(store, call_uuids=["c1"])
    assert (record.status, record.hangup_cause) == ("completed", None)
    with store.engine.connect() as conn:
        [form] = conn.execute(sa.select(events.c.fields)).scalars()
    assert form["HangupCause"] == "X" * 129
    assert store_callback(store, "ring", ring("c" * 65, "r1")).stored  # bound by its RequestUUID
    assert _one(store, request_uuids=["r1"]).call_uuid is None
    store_callback(store, "hangup", hangup("c2", Duration="99999999999", BillDuration="abc"))
    record = _one(store, call_uuids=["c2"])
    assert (record.status, record.duration, record.bill_duration) == ("completed", None, None)


def test_a_large_form_is_stored_capped_to_the_fields_the_ledger_reads(store: CallLedger) -> None:
    junk = {f"Junk{index}": "x" * 600 for index in range(60)}  # ~36 KiB of fields no callback has
    assert store_callback(store, "ring", {**ring("c1"), **junk, "HangupCauseName": "y" * 1000}).stored
    with store.engine.connect() as conn:
        [form] = conn.execute(sa.select(events.c.fields)).scalars()
    assert (form["CallUUID"], form["To"], form["Event"]) == ("c1", "919000000001", "Ring")
    assert form["_dropped_fields"] == "62"  # the junk, Direction and SessionStart (not read either)
    assert len(form["HangupCauseName"]) == 256
    assert sum(len(key) + len(value) for key, value in form.items()) < 2048
    assert store_callback(store, "ring", {**ring("c2"), "Extra": "kept"}).stored  # a normal form: whole
    with store.engine.connect() as conn:
        forms = conn.execute(sa.select(events.c.fields).order_by(events.c.id)).scalars().all()
    assert forms[1]["Extra"] == "kept" and "_dropped_fields" not in forms[1]


def test_unknown_kind_is_refused(store: CallLedger) -> None:
    with pytest.raises(ValueError, match="unknown callback kind"):
        store_callback(store, "status", ring("c1"))


# -- fired calls -------------------------------------------------------------------------------------------


def test_fired_row_is_matched_by_its_callbacks(store: CallLedger) -> None:
    store.register_fired_calls(
        request_uuids=["r1"], destinations=["+919000000001"], from_number="918000000000", correlation=_token()
    )
    queued = _one(store, request_uuids=["r1"])
    assert (queued.status, queued.call_uuid, queued.task_id) == ("queued", None, "ring")
    # Vobiz reports its own CallUUID, and the destination without "+".
    store_callback(store, "ring", ring("c1", "r1", to="919000000001"), correlation=_token())
    store_callback(store, "hangup", hangup("c1", "r1", to="919000000001"), correlation=_token())
    record = _one(store, request_uuids=["r1"])
    assert (record.call_uuid, record.status, record.to) == ("c1", "completed", "+919000000001")
    assert (record.dag_id, record.try_number) == ("calls", 1)
    assert _one(store, call_uuids=["c1"]) == record


def test_record_fired_is_idempotent(store: CallLedger) -> None:
    for _ in range(2):
        store.register_fired_calls(
            request_uuids=["r1"], destinations=["919000000001"], from_number="91800", correlation=_token()
        )
    assert _count(store, calls) == 1


def test_callback_before_record_fired_waits_for_it_then_gives_one_row(store: CallLedger) -> None:
    token = _token(try_number=2)
    store.open_placement(token, destinations=1, expires_at=time.time() + 3600)
    early = store_callback(store, "ring", ring("c1", "r1", to="919000000001"), correlation=token, bind=False)
    # Vobiz called back before the task recorded its call: deferred (503, Vobiz retries), nothing stored.
    assert early.refusal is not None and early.refusal.pending
    assert (early.stored, _count(store, events), _count(store, calls)) == (False, 0, 0)
    store.register_fired_calls(
        request_uuids=["r1"], destinations=["+919000000001"], from_number="91800", correlation=token
    )
    retried = store_callback(
        store, "ring", ring("c1", "r1", to="919000000001"), correlation=token, bind=False
    )
    assert retried.stored and retried.refusal is None
    record = _one(store, request_uuids=["r1"])
    assert (record.status, record.call_uuid, record.try_number) == ("ringing", "c1", 2)
    assert _count(store, calls) == 1


def test_bulk_request_one_uuid_several_destinations(store: CallLedger) -> None:
    destinations = ["+919000000001", "+919000000002", "sip:alice@example.com"]
    store.register_fired_calls(
        request_uuids=["bulk"], destinations=destinations, from_number="91800", correlation=_token()
    )
    assert [r.to for r in store.lookup(request_uuids=["bulk"])] == destinations
    legs = [
        ("hangup", hangup("leg-2", "bulk", to="919000000002", status="busy", code="3010")),
        ("ring", ring("leg-1", "bulk", to="919000000001")),
        ("answer", answer("leg-3", "bulk", to="SIP:alice@example.com")),
    ]
    for kind, fields in legs:
        assert store_callback(store, kind, fields, correlation=_token(), bind=False).stored
    records = {record.to: record for record in store.lookup(request_uuids=["bulk"])}
    assert len(records) == 3
    assert (records["+919000000001"].call_uuid, records["+919000000001"].status) == ("leg-1", "ringing")
    assert (records["+919000000002"].call_uuid, records["+919000000002"].status) == ("leg-2", "busy")
    assert records["sip:alice@example.com"].call_uuid == "leg-3"
    assert all(record.task_id == "ring" for record in records.values())


def test_one_request_uuid_per_destination_is_paired(store: CallLedger) -> None:
    store.register_fired_calls(request_uuids=["r1", "r2"], destinations=["911", "912"], from_number="91800")
    assert {(r.request_uuid, r.to) for r in store.lookup(request_uuids=["r1", "r2"])} == {
        ("r1", "911"),
        ("r2", "912"),
    }
    with pytest.raises(ValueError, match="2 request_uuids for 3 destinations"):
        store.register_fired_calls(request_uuids=["r1", "r2"], destinations=["1", "2", "3"], from_number="9")


def test_api_result_follows_the_same_rules(store: CallLedger) -> None:
    store.register_fired_calls(
        request_uuids=["c1"], destinations=["919000000001"], from_number="91800", correlation=_token()
    )
    cdr = {
        "uuid": "c1",
        "destination_number": "919000000001",
        "caller_id_number": "91800",
        "hangup_cause": "USER_BUSY",
        "hangup_cause_code": 3010,
        "hangup_cause_name": "Busy Line",
        "duration": 5,
        "billsec": 0,
        "start_time": "2026-11-27T04:30:00Z",
        "end_time": "2026-11-27T04:30:05Z",
    }
    store.cache_api_result(CallRecord.from_cdr(cdr))
    record = _one(store, request_uuids=["c1"])
    assert (record.status, record.terminal, record.source, record.call_uuid) == ("busy", True, "api", "c1")
    assert (record.task_id, record.end_time) == ("ring", "2026-11-27T04:30:05Z")
    # A later live-call answer (lower rank) does not reopen the call; a late hangup callback only fills gaps.
    store.cache_api_result(CallRecord(call_uuid="c1", request_uuid="c1", status="in-progress"))
    store_callback(store, "hangup", hangup("c1", status="completed"))
    record = _one(store, call_uuids=["c1"])
    assert (record.status, record.source, record.hangup_cause_code) == ("busy", "api", 3010)


# -- nonces ------------------------------------------------------------------------------------------------


def test_a_nonce_is_refused_within_its_window_and_accepted_after_it(store: CallLedger) -> None:
    first = store_callback(store, "ring", ring("c1"), replay_keys=("n1",), nonce_window=300)
    replayed = store_callback(store, "answer", answer("c1"), replay_keys=("n1",), nonce_window=300)
    expired = store_callback(
        store, "answer", answer("c1"), replay_keys=("n1",), nonce_window=0
    )  # accepted again
    other = store_callback(store, "ring", ring("c2"), replay_keys=("n2",), nonce_window=300)
    assert (first.stored, replayed.stored, replayed.replayed) == (True, False, True)
    assert (expired.stored, other.stored) == (True, True)
    assert _one(store, call_uuids=["c1"]).status == "in-progress"


def test_nonce_is_claimed_with_the_callback(store: CallLedger) -> None:
    stored = store_callback(store, "ring", ring("c1"), replay_keys=("n1",))
    resent = store_callback(store, "ring", ring("c1"), replay_keys=("n1",))  # Vobiz retrying, same signature
    forged = store_callback(
        store, "hangup", hangup("c1"), replay_keys=("n1",)
    )  # captured signature, new body
    assert (stored.stored, stored.replayed) == (True, False)
    assert (resent.stored, resent.duplicate, resent.replayed) == (False, True, False)
    assert (forged.stored, forged.replayed) == (False, True)
    assert _one(store, call_uuids=["c1"]).status == "ringing"
    assert _count(store, events) == 1
    assert _count(store, nonces) == 1  # claimed once, still claimed


# -- reads -------------------------------------------------------------------------------------------------


def test_lookup_returns_many_calls_in_one_query(store: CallLedger) -> None:
    store.register_fired_calls(
        request_uuids=[f"r{i}" for i in range(150)],
        destinations=[f"9190000{i:05d}" for i in range(150)],
        from_number="91800",
    )
    for i in range(0, 150, 3):
        store_callback(store, "hangup", hangup(f"c{i}", f"r{i}", to=f"9190000{i:05d}"))
    store.lookup(call_uuids=["warm-up"])  # the lazy schema check is done
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        records = store.lookup(
            request_uuids=[f"r{i}" for i in range(100)], call_uuids=[f"c{i}" for i in range(102, 150, 3)]
        )
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert len(records) == 100 + len(range(102, 150, 3))
    assert sum(record.terminal for record in records) == len(range(0, 150, 3))


def test_lookup_of_nothing_queries_nothing(store: CallLedger) -> None:
    assert store.lookup() == []
    assert store.lookup(request_uuids=["unknown"]) == []


def test_find_attempts_newest_try_first(store: CallLedger) -> None:
    for try_number in (1, 3, 2):
        store.register_fired_calls(
            request_uuids=[f"r{try_number}"],
            destinations=["919000000001"],
            from_number="91800",
            correlation=_token(try_number=try_number),
        )
    store.register_fired_calls(
        request_uuids=["other"], destinations=["91"], from_number="9", correlation=_token(map_index=0)
    )
    attempts = store.find_attempts(
        dag_id="calls", run_id="manual__2026-11-27T00:00:00+00:00", task_id="ring", map_index=-1
    )
    assert [record.try_number for record in attempts] == [3, 2, 1]
    earlier = store.find_attempts(
        dag_id="calls", run_id="manual__2026-11-27T00:00:00+00:00", task_id="ring", map_index=-1, before_try=3
    )
    assert [record.request_uuid for record in earlier] == ["r2", "r1"]
    mapped = store.find_attempts(
        dag_id="calls", run_id="manual__2026-11-27T00:00:00+00:00", task_id="ring", map_index=0
    )
    assert [record.request_uuid for record in mapped] == ["other"]


def test_last_callback_at(store: CallLedger) -> None:
    assert store.last_callback_at() is None
    before = dt.datetime.now(dt.timezone.utc)
    store_callback(store, "ring", ring("c1"))
    last = store.last_callback_at()
    assert last is not None and last.tzinfo is not None
    assert last >= before - dt.timedelta(seconds=1)


# -- maintenance -------------------------------------------------------------------------------------------


def test_prune_deletes_old_events_and_ended_calls_and_keeps_nonces_for_their_window(
    store: CallLedger,
) -> None:
    store_callback(store, "hangup", hangup("ended"), replay_keys=("n1",))
    store_callback(store, "ring", ring("ringing"), replay_keys=("n2",))
    assert store.prune(older_than=dt.timedelta(days=1)) == 0
    deleted = store.prune(older_than=dt.timedelta(0))
    assert deleted == 2 + 1  # events, the ended call
    assert [record.call_uuid for record in store.lookup(call_uuids=["ended", "ringing"])] == ["ringing"]
    # The replay keys outlive the events: a forgotten one would let its signature be replayed.
    assert (_count(store, events), _count(store, nonces)) == (0, 2)
    forged = store_callback(store, "hangup", hangup("ringing"), replay_keys=("n2",))
    assert forged.replayed


def test_prune_deletes_stale_live_calls_expired_placements_and_old_nonces(store_url: str) -> None:
    store = CallLedger(store_url, nonce_window=60)
    try:
        store_callback(store, "ring", ring("planted"), replay_keys=("n1",))
        store_callback(store, "ring", ring("fresh"), replay_keys=("n2",))
        long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
        with store.engine.begin() as conn:
            conn.execute(calls.update().where(calls.c.call_uuid == "planted").values(updated_at=long_ago))
            conn.execute(nonces.update().values(seen_at=long_ago))
            conn.execute(placements.update().values(expires_at=long_ago))
        # A day's worth of pruning keeps a live call heard of three days ago? No: nobody waits that long.
        deleted = store.prune(older_than=dt.timedelta(days=1))
        assert deleted == 1 + 2 + 1  # the stale live call, both nonces, the expired placement
        assert [record.call_uuid for record in store.lookup(call_uuids=["planted", "fresh"])] == ["fresh"]
        assert (_count(store, nonces), _count(store, placements)) == (0, 0)
    finally:
        store.dispose()


# -- concurrency -------------------------------------------------------------------------------------------


def test_concurrent_writers_on_one_file(sqlite_url: str) -> None:
    stores = [CallLedger(sqlite_url) for _ in range(4)]  # four "processes", lazily upgrading at once
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for i in range(25):
                call = f"c{(index * 7 + i) % 20}"
                store = stores[index]
                store_callback(store, "ring", ring(call))
                store_callback(store, "hangup", hangup(call))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _count(stores[0], events) == 40
    records = stores[0].lookup(call_uuids=[f"c{i}" for i in range(20)])
    assert len(records) == 20 and all(record.status == "completed" for record in records)
    for store in stores:
        store.dispose()


# -- availability ------------------------------------------------------------------------------------------


def test_unreachable_sqlite_store_is_unavailable(tmp_path: Path) -> None:
    store = CallLedger(f"sqlite:///{tmp_path / 'missing-dir' / 'callbacks.db'}")
    with pytest.raises(LedgerUnavailableError, match="unavailable"):
        store_callback(store, "ring", ring("c1"))
    with pytest.raises(LedgerUnavailableError):
        store.lookup(call_uuids=["c1"])


def test_unreachable_postgres_store_is_unavailable() -> None:
    store = CallLedger("postgresql://vobiz:hunter2@127.0.0.1:1/none", busy_timeout=1)
    with pytest.raises(LedgerUnavailableError) as info:
        store.lookup(call_uuids=["c1"])
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(store)


def test_unsupported_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported callback store"):
        CallLedger("mysql://u@h/db")


def test_get_store_shares_one_store_per_url(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", sqlite_url)
    monkeypatch.setenv("AIRFLOW__VOBIZ__NONCE_WINDOW", "200000")
    monkeypatch.setenv("AIRFLOW__VOBIZ__MAX_CALLBACKS_PER_CALL", "7")
    try:
        shared = get_ledger()
        assert get_ledger(sqlite_url) is shared
        assert (shared.nonce_window, shared.max_callbacks_per_call) == (200000, 7)
        fresh = CallLedger.from_settings(VobizSettings(callback_store=sqlite_url, nonce_window=300000))
        assert fresh is not shared and fresh.nonce_window == 300000
    finally:
        dispose_ledgers()
    assert get_ledger(sqlite_url) is not shared
    dispose_ledgers()


# -- CallRecord (the store's row model, also built from the Vobiz API) --------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (4000, "completed"),
        (4010, "completed"),
        (4030, "completed"),
        (3010, "busy"),
        (3100, "busy"),
        (3000, "no-answer"),
        (6010, "timeout"),
        (1000, "cancel"),
        (2000, "failed"),
        (3020, "busy"),
        (3040, "failed"),
        (5000, "failed"),
    ],
)
def test_cdr_status_is_derived_from_the_hangup_cause_code(code: int, status: str) -> None:
    record = CallRecord.from_cdr({"data": {"uuid": "c1", "hangup_cause_code": str(code)}, "success": True})
    assert (record.call_uuid, record.status, record.terminal, record.source) == ("c1", status, True, "api")


def test_cdr_status_agrees_with_the_emulator_outcomes() -> None:
    from vobiz_provider.models.hangup_causes import OUTCOMES

    for name, preset in OUTCOMES.items():
        cdr = {
            "uuid": name,
            "hangup_cause_code": preset.cause.code,
            "answer_time": "2026-11-27T04:30:06Z" if preset.answered else None,
        }
        assert CallRecord.from_cdr(cdr).status == preset.status, name


def test_cdr_fields_are_mapped() -> None:
    record = CallRecord.from_cdr(
        {
            "uuid": "c1",
            "destination_number": "919000000001",
            "caller_id_number": "918000000000",
            "hangup_cause": "NORMAL_CLEARING",
            "hangup_cause_code": 4000,
            "hangup_cause_name": "Normal Hangup",
            "hangup_source": "Caller",
            "duration": "66",
            "billsec": 120,
            "start_time": "2026-11-27T10:00:00+05:30",
            "answer_time": "2026-11-27T04:30:06Z",
            "end_time": "2026-11-27T04:31:06Z",
        },
        dag_id="calls",
        try_number=2,
    )
    assert record.to_event() == {
        "call_uuid": "c1",
        "request_uuid": "c1",
        "to": "919000000001",
        "from_number": "918000000000",
        "status": "completed",
        "terminal": True,
        "hangup_cause": "NORMAL_CLEARING",
        "hangup_cause_code": 4000,
        "hangup_cause_name": "Normal Hangup",
        "hangup_source": "Caller",
        "duration": 66,
        "bill_duration": 120,
        "start_time": "2026-11-27T04:30:00Z",
        "answer_time": "2026-11-27T04:30:06Z",
        "end_time": "2026-11-27T04:31:06Z",
        "machine": None,
        "digits": None,
        "dial_status": None,
        "dial_b_leg_uuid": None,
        "dial_hangup_cause": None,
        "recording_url": None,
        "dag_id": "calls",
        "run_id": None,
        "task_id": None,
        "map_index": None,
        "try_number": 2,
        "conn_id": None,
        "source": "api",
        "updated_at": record.updated_at,
    }


def test_cause_name_in_hangup_cause_gives_the_status() -> None:
    record = CallRecord.from_cdr({"uuid": "c1", "hangup_cause": "End Of XML Instructions"})
    assert record.status == "completed"
    assert CallRecord.from_cdr({"uuid": "c2", "hangup_cause": "USER_BUSY"}).status == "busy"
    assert CallRecord.from_cdr({"uuid": "c3"}).status == "failed"


@pytest.mark.parametrize(
    "body",
    [
        {"call_uuid": "c1", "request_uuid": "r1", "call_status": "in-progress", "from": "9180", "to": "9190"},
        {
            "api_id": "x",
            "calls": [
                {"call_uuid": "c1", "call_state": "ACTIVE", "from_number": "9180", "to_number": "9190"}
            ],
        },
    ],
)
def test_live_call_is_an_in_progress_record(body: dict[str, object]) -> None:
    record = CallRecord.from_live(body, request_uuid="r1")
    assert (record.call_uuid, record.request_uuid, record.status, record.terminal) == (
        "c1",
        "r1",
        "in-progress",
        False,
    )
    assert (record.from_number, record.to) == ("9180", "9190")


def test_event_round_trip_is_json_and_deterministic() -> None:
    import json

    record = CallRecord(call_uuid="c1", status="Completed", terminal=True, duration=3, updated_at=None)
    event = record.to_event()
    assert record.status == "completed"
    assert json.loads(json.dumps(event)) == event
    assert list(event) == list(CallRecord.model_fields)
    assert CallRecord.from_event({**event, "unknown": 1}) == record


def test_queued_call_model_gives_a_queued_record() -> None:
    from vobiz_provider.models.responses import QueuedCall

    queued = QueuedCall.model_validate(
        {"call_uuid": "c1", "request_uuid": "r1", "to": "9190", "from": "9180"}
    )
    record = CallRecord.from_live(queued, dag_id="calls")
    assert (record.status, record.terminal, record.from_number, record.dag_id) == (
        "queued",
        False,
        "9180",
        "calls",
    )
