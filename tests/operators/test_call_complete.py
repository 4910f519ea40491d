"""VobizCallOperator: its own arguments, the deferral it asks for, and how it judges the trigger's event."""

from __future__ import annotations

import datetime
import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from vobiz_provider.exceptions import VobizCallFailedError
from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.testing import CallScript
from vobiz_provider.triggers.hangup import VobizCallHangupTrigger

CALLER = "+14155550100"


def _operator(**kwargs: Any) -> VobizCallOperator:
    arguments = {
        "task_id": "call",
        "to": "+14155550101",
        "from_number": CALLER,
        "answer_url": "https://example.com/answer.xml",
        **kwargs,
    }
    return VobizCallOperator(**arguments)


def _call(**fields: Any) -> dict[str, Any]:
    record = {
        "call_uuid": "c-1",
        "request_uuid": "r-1",
        "to": "+14155550101",
        "status": "completed",
        "terminal": True,
        "hangup_cause": "NORMAL_CLEARING",
        "hangup_cause_code": 4000,
        "hangup_cause_name": "Normal Hangup",
        "hangup_source": "Callee",
        "duration": 12,
        "source": "callback",
    }
    record.update(fields)
    return record


def _event(status: str = "hangup", calls: list[dict[str, Any]] | None = None, message: str = "") -> dict:
    return {"status": status, "request_uuids": ["r-1"], "calls": calls or [], "message": message}


# ------------------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"redial": "sometimes"}, "redial must be 'failed' or 'always'"),
        ({"poll_interval": 0}, "poll_interval must be positive"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"timeout": datetime.timedelta(seconds=-1)}, "timeout must be positive"),
        ({"success_statuses": ()}, "success_statuses must name at least one status"),
    ],
)
def test_bad_wait_arguments_fail_at_parse_time(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        _operator(**kwargs)


# ------------------------------------------------------------------------------------------ the deferral


def test_defers_only_the_wait_with_everything_the_trigger_needs(vobiz_emulator, callback_receiver):
    vobiz_emulator.script("+14155550101", CallScript.answered(after=0.05, talk_for=5))
    operator = _operator(
        deferrable=True, ring_timeout=30, time_limit=60, poll_interval=0.5, hangup_on_kill=True
    )
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="call", map_index=-1, try_number=1)
    before = time.time()

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": ti})

    [call] = vobiz_emulator.calls.values()
    trigger = deferred.value.trigger
    assert isinstance(trigger, VobizCallHangupTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert trigger.request_uuids == [call.request_uuid]
    assert trigger.destinations == ["+14155550101"]
    assert trigger.use_store is True
    assert trigger.hangup_on_kill is True
    assert trigger.poll_interval == 0.5
    assert before + 390 <= trigger.deadline <= time.time() + 390
    assert trigger.reconcile_after is not None
    assert trigger.reconcile_after < trigger.deadline
    assert deferred.value.timeout >= datetime.timedelta(seconds=390)
    # The call was recorded for retries before the task deferred.
    from vobiz_provider.ledger import get_ledger

    [record] = get_ledger().find_attempts(dag_id="d", run_id="r", task_id="call", map_index=-1)
    assert (record.request_uuid, record.try_number, record.terminal) == (call.request_uuid, 1, False)

    # The next try finds that call still up: it waits for it again without dialling.
    ti.try_number = 2
    with pytest.raises(TaskDeferred) as again:
        operator.execute({"ti": ti})
    assert again.value.trigger.request_uuids == [call.request_uuid]
    assert len(vobiz_emulator.calls) == 1


# ------------------------------------------------------------------------------------------ the event


@pytest.mark.parametrize(
    "event",
    [None, {}, {"status": "success"}, "hangup", {"status": None, "calls": []}],
    ids=["none", "empty", "unknown-status", "not-a-dict", "no-status"],
)
def test_malformed_event_fails_loudly(event):
    with pytest.raises(AirflowException, match="unexpected event"):
        _operator().execute_complete({}, event)


def test_completed_call_returns_its_record():
    call = _call()
    assert _operator().execute_complete({}, _event(calls=[call])) == call


def test_several_destinations_return_every_record():
    calls = [_call(), _call(call_uuid="c-2", to="+14155550102")]
    assert _operator(to=["+14155550101", "+14155550102"]).execute_complete({}, _event(calls=calls)) == calls


def test_failed_call_names_destination_status_and_cause():
    busy = _call(
        status="busy",
        hangup_cause="USER_BUSY",
        hangup_cause_code=3010,
        hangup_cause_name="Busy Line",
        hangup_source="Carrier",
    )
    with pytest.raises(VobizCallFailedError) as err:
        _operator().execute_complete({}, _event(calls=[busy]))
    message = str(err.value)
    assert "Vobiz call to +1******0101 (c-1) ended with status 'busy'" in message
    assert "hangup cause 3010 Busy Line, hung up by Carrier" in message
    assert err.value.calls == [busy]


def test_call_text_cannot_forge_lines_in_the_failure_or_the_log(capsys):
    forged = "\n[2026-01-01, 09:00:00 UTC] {call.py:1} INFO - Done. Returned value was: completed"
    busy = _call(status="busy", hangup_cause_code=3010, hangup_cause_name="Busy" + forged, to="+1415\r\n")
    with pytest.raises(VobizCallFailedError) as err:
        _operator().execute_complete({}, _event(calls=[busy]))
    message = str(err.value)
    assert "\n" not in message and "\r" not in message
    assert "hangup cause 3010 Busy\\n[2026-01-01, 09:00:00 UTC]" in message
    assert err.value.calls == [busy]  # the records themselves are not altered
    # A call that succeeded is logged with the same escaping.
    done = _call(hangup_cause_name="Normal" + forged, digits="1" + forged)
    capsys.readouterr()
    assert _operator().execute_complete({}, _event(calls=[done])) == done
    out = capsys.readouterr().out
    assert "Normal\\n[2026-01-01" in out
    assert not [line for line in out.splitlines() if line.startswith("[2026-01-01")]


def test_one_failed_destination_fails_the_task():
    calls = [_call(), _call(call_uuid="c-2", to="+14155550102", status="no-answer", hangup_cause_code=3000)]
    with pytest.raises(VobizCallFailedError, match=r"\+1\*{6}0102 \(c-2\) ended with status 'no-answer'"):
        _operator().execute_complete({}, _event(calls=calls))


def test_success_statuses_decide_what_succeeds():
    machine = _call(status="no-answer", hangup_cause_code=3000)
    operator = _operator(success_statuses=("completed", "no-answer"))
    assert operator.execute_complete({}, _event(calls=[machine])) == machine


def test_timeout_and_error_events_fail_with_their_message():
    with pytest.raises(AirflowException, match="did not hang up in time: Deadline passed"):
        _operator().execute_complete({}, _event("timeout", message="Deadline passed"))
    with pytest.raises(AirflowException, match="failed: Cannot ask the Vobiz API"):
        _operator().execute_complete({}, _event("error", message="Cannot ask the Vobiz API"))


def test_hangup_event_without_records_fails():
    with pytest.raises(AirflowException, match="no call record"):
        _operator().execute_complete({}, _event(calls=[]))
