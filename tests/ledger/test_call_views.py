"""The read-only queries behind the calls page and ``vobiz-callbacks calls``: pages, filters, timeline,
run summary, and the schema step that indexes them."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from _ledger_helpers import place, store_callback

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.call_views import CallFilter, outcome_of, parse_age
from vobiz_provider.ledger.schema import CALL_VIEW_INDEXES, calls


def _try(dag_id: str = "reminders", run_id: str = "run-1", task_id: str = "call", map_index: int = -1):
    return CorrelationToken(
        dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, try_number=1, conn_id="vobiz"
    )


def _hangup(call_uuid: str, request_uuid: str, to: str, *, status: str, answered: bool) -> dict[str, str]:
    return {
        "CallUUID": call_uuid,
        "RequestUUID": request_uuid,
        "From": "918000000000",
        "To": to,
        "Event": "Hangup",
        "CallStatus": status,
        "HangupCause": "NORMAL_CLEARING" if status == "completed" else "USER_BUSY",
        "Duration": "12",
        "StartTime": "2026-11-27 10:00:00",
        "AnswerTime": "2026-11-27 10:00:05" if answered else "",
        "EndTime": "2026-11-27 10:00:12",
    }


def _seed_calls(store: CallLedger, count: int, **where: str) -> list[str]:
    request_uuids = [
        f"req-{where.get('dag_id', 'reminders')}-{where.get('run_id', 'run-1')}-{i}" for i in range(count)
    ]
    for index, request_uuid in enumerate(request_uuids):
        place(store, request_uuid, [f"+9198765{index:05d}"], correlation=_try(**where))
    return request_uuids


def test_pages_are_newest_first_and_keyset_cursors_walk_them_all(store: CallLedger) -> None:
    seeded = _seed_calls(store, 7)
    seen: list[str] = []
    ids: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_calls(CallFilter(), limit=3, before=cursor)
        pages += 1
        seen += [call.record.request_uuid or "" for call in page.calls]
        ids += [call.id for call in page.calls]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(seeded))
    assert ids == sorted(ids, reverse=True)


def test_filters_by_dag_run_status_time_and_readable_dags(store: CallLedger) -> None:
    _seed_calls(store, 2, dag_id="reminders", run_id="run-1")
    _seed_calls(store, 3, dag_id="reminders", run_id="run-2")
    _seed_calls(store, 4, dag_id="payroll", run_id="run-1")
    store_callback(
        store,
        "hangup",
        _hangup("c-busy", "req-payroll-run-1-0", "+919876500000", status="busy", answered=False),
        correlation=_try(dag_id="payroll"),
    )

    def count(**kwargs: object) -> int:
        return len(store.list_calls(CallFilter(**kwargs), limit=100).calls)  # type: ignore[arg-type]

    assert count() == 9
    assert count(dag_id="reminders") == 5
    assert count(dag_id="reminders", run_id="run-2") == 3
    assert count(run_id="run-1") == 6
    assert count(status="busy") == 1
    assert count(allowed_dag_ids=frozenset({"reminders"})) == 5
    assert count(allowed_dag_ids=frozenset()) == 0
    assert count(allowed_dag_ids=frozenset({"reminders"}), dag_id="payroll") == 0
    now = dt.datetime.now(dt.timezone.utc)
    assert count(since=now - dt.timedelta(hours=1)) == 9
    assert count(since=now + dt.timedelta(hours=1)) == 0
    assert count(until=now - dt.timedelta(hours=1)) == 0
    assert count(task_id="call", map_index=-1, dag_id="payroll", run_id="run-1") == 4


def test_a_calls_detail_has_its_callbacks_and_timeline_in_order(store: CallLedger) -> None:
    correlation = _try()
    place(store, "req-1", ["+919876543210"], correlation=correlation)
    base = {"CallUUID": "call-1", "RequestUUID": "req-1", "From": "918000000000", "To": "+919876543210"}
    store_callback(store, "ring", {**base, "Event": "Ring", "CallStatus": "ringing"}, correlation=correlation)
    store_callback(
        store, "answer", {**base, "Event": "StartApp", "CallStatus": "in-progress"}, correlation=correlation
    )
    store_callback(store, "gather", {**base, "Digits": "2", "InputType": "dtmf"}, correlation=correlation)
    store_callback(
        store,
        "hangup",
        _hangup("call-1", "req-1", "+919876543210", status="completed", answered=True),
        correlation=correlation,
    )

    detail = store.call_detail("call-1")
    assert detail is not None
    assert [callback.kind for callback in detail.callbacks] == ["ring", "answer", "gather", "hangup"]
    assert detail.callbacks[2].fields["Digits"] == "2"
    assert [step.label for step in detail.steps] == [
        "queued",
        "ringing",
        "answered",
        "keys 2",
        "hangup NORMAL_CLEARING",
    ]
    assert detail.steps[0].seconds_since_previous is None
    assert all(step.seconds_since_previous >= 0 for step in detail.steps[1:])  # type: ignore[operator]
    # Found by the request UUID too; hidden from a reader of other DAGs.
    assert store.call_detail("req-1") is not None
    assert store.call_detail("call-1", allowed_dag_ids={"payroll"}) is None
    assert store.call_detail("no-such-call") is None


def test_run_summary_counts_outcomes(store: CallLedger) -> None:
    correlation = _try(run_id="run-9")
    outcomes = [("c1", "completed", True), ("c2", "completed", True), ("c3", "busy", False)]
    outcomes += [("c4", "no-answer", False), ("c5", "failed", False)]
    for call_uuid, status, answered in outcomes:
        place(store, f"r-{call_uuid}", ["+919876543210"], correlation=correlation)
        fields = _hangup(call_uuid, f"r-{call_uuid}", "+919876543210", status=status, answered=answered)
        store_callback(store, "hangup", fields, correlation=correlation)
    place(store, "r-live", ["+919876543211"], correlation=correlation)
    assert store.run_summary("reminders", "run-9") == {
        "answered": 2,
        "busy": 1,
        "no answer": 1,
        "failed": 1,
        "in progress": 1,
    }
    assert sum(store.run_summary("reminders", "other-run").values()) == 0


def test_schema_step_indexes_the_filtered_pages(store: CallLedger) -> None:
    with store.engine.connect() as conn:
        names = {index["name"] for index in sa.inspect(conn).get_indexes(calls.name)}
    assert {name for name, _ in CALL_VIEW_INDEXES} <= names


def test_outcomes_and_ages() -> None:
    assert outcome_of("completed", answered=True) == "answered"
    assert outcome_of("completed", answered=False) == "no answer"
    assert outcome_of("ringing") == "in progress"
    assert parse_age("1d") == dt.timedelta(days=1)
    assert parse_age("30m") == dt.timedelta(minutes=30)
    with pytest.raises(ValueError, match="invalid age '0d'"):
        parse_age("0d")
    with pytest.raises(ValueError, match="expected a positive number"):
        parse_age("yesterday")
    with pytest.raises(ValueError, match="limit must be from 1 to 500"):
        CallLedger("sqlite://").list_calls(CallFilter(), limit=0)
