"""VobizCallSensor: poke, reschedule and deferrable modes, against a real store and the emulator."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from _ledger_helpers import store_callback
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.exceptions import VobizCallFailedFinalError
from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.sensors.call import VobizCallSensor
from vobiz_provider.testing import CallScript
from vobiz_provider.triggers.hangup import VobizCallHangupTrigger

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

CALLER = "14155550100"
DESTINATION = "14155550199"
_NONCES = itertools.count(1)


def hangup_fields(
    call_uuid: str, *, status: str = "completed", code: int = 4000, name: str = "Normal Hangup"
):
    return {
        "From": CALLER,
        "To": DESTINATION,
        "CallUUID": call_uuid,
        "RequestUUID": call_uuid,
        "Direction": "outbound",
        "Event": "Hangup",
        "CallStatus": status,
        "Duration": "9",
        "BillDuration": "60",
        "HangupCauseCode": str(code),
        "HangupCauseName": name,
        "HangupSource": "Callee",
    }


def deliver(store: CallLedger, kind: str, fields: dict[str, str]) -> None:
    """What the receiver does with a callback."""
    correlation = CorrelationToken(dag_id="d", run_id="r", task_id="fire")
    store_callback(store, kind, fields, correlation=correlation, replay_keys=(f"n-{next(_NONCES)}",))


def fire(answer_url: str, **fields: Any) -> str:
    """Place a call on the emulator; its callbacks go to the answer server, not the store."""
    with VobizHook() as hook:
        fired = hook.make_call(
            MakeCallRequest.build(**{"from": CALLER, "to": DESTINATION, "answer_url": answer_url, **fields})
        )
    [request_uuid] = fired.request_uuids
    return request_uuid


def api_gets(emulator: Any, call_uuid: str) -> list[Any]:
    return [r for r in emulator.requests if r.method == "GET" and call_uuid in r.path]


class _TI:
    """The one task-instance method reschedule mode reads."""

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


# ------------------------------------------------------------------------------------------ arguments


def test_exactly_one_uuid_is_required() -> None:
    with pytest.raises(ValueError, match="exactly one of call_uuid or request_uuid"):
        VobizCallSensor(task_id="s")
    with pytest.raises(ValueError, match="exactly one of call_uuid or request_uuid"):
        VobizCallSensor(task_id="s", call_uuid="a", request_uuid="b")


def test_success_statuses_must_be_final_statuses() -> None:
    with pytest.raises(ValueError, match=r"success_statuses .* got \['answered'\]"):
        VobizCallSensor(task_id="s", call_uuid="a", success_statuses=("completed", "answered"))


def test_defaults_and_templates() -> None:
    sensor = VobizCallSensor(task_id="s", request_uuid="{{ ti.xcom_pull('fire')['request_uuid'] }}")
    assert sensor.deferrable is True  # [operators] default_deferrable is unset in the tests
    assert set(sensor.template_fields) == {"call_uuid", "request_uuid"}
    assert sensor.success_statuses == ("completed",)


def test_an_explicit_default_deferrable_setting_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from vobiz_provider.sensors.call import _default_deferrable

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    assert _default_deferrable() is False
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
    assert _default_deferrable() is True


# ------------------------------------------------------------------------------------------ poke


def test_poke_finishes_from_the_store_without_asking_vobiz(store: CallLedger, vobiz_emulator: Any) -> None:
    call_uuid = str(uuid.uuid4())
    deliver(store, "hangup", hangup_fields(call_uuid))
    sensor = VobizCallSensor(task_id="s", call_uuid=call_uuid, deferrable=False)
    result = sensor.poke({})
    assert result.is_done
    assert (result.xcom_value["call_uuid"], result.xcom_value["status"]) == (call_uuid, "completed")
    assert api_gets(vobiz_emulator, call_uuid) == []


def test_failed_call_raises_naming_status_and_cause(store: CallLedger) -> None:
    call_uuid = str(uuid.uuid4())
    deliver(store, "hangup", hangup_fields(call_uuid, status="busy", code=3010, name="Busy Line"))
    sensor = VobizCallSensor(task_id="s", call_uuid=call_uuid, deferrable=False)
    with pytest.raises(
        VobizCallFailedFinalError, match=r"busy, Busy Line \(3010\), hung up by Callee"
    ) as err:
        sensor.poke({})
    assert err.value.calls[0]["status"] == "busy"
    # ... unless busy counts as success for this task
    ok = VobizCallSensor(task_id="s", call_uuid=call_uuid, deferrable=False, success_statuses=["busy"])
    assert ok.poke({}).is_done


def test_soft_fail_skips_a_failed_call(store: CallLedger) -> None:
    call_uuid = str(uuid.uuid4())
    deliver(store, "hangup", hangup_fields(call_uuid, status="no-answer", code=3000, name="No Answer"))
    sensor = VobizCallSensor(
        task_id="s", call_uuid=call_uuid, deferrable=False, soft_fail=True, poke_interval=0.01
    )
    with pytest.raises(AirflowSkipException):
        sensor.execute({})
    hard = VobizCallSensor(task_id="s", call_uuid=call_uuid, deferrable=False, poke_interval=0.01)
    with pytest.raises(VobizCallFailedFinalError, match="no-answer"):
        hard.execute({})


def test_poke_mode_asks_the_api_when_the_store_has_nothing(
    store: CallLedger, vobiz_emulator: Any, answer_url: str
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript(outcome="completed", answer_after=0.05, talk_for=0.3))
    call_uuid = fire(answer_url)
    sensor = VobizCallSensor(
        task_id="s", request_uuid=call_uuid, deferrable=False, poke_interval=0.1, timeout=20
    )
    record = sensor.execute({})
    assert (record["call_uuid"], record["status"], record["source"]) == (call_uuid, "completed", "api")
    assert api_gets(vobiz_emulator, call_uuid)  # it asked Vobiz (live/queued/CDR)
    [stored] = store.lookup(call_uuids=[call_uuid])  # and wrote the answer back for others
    assert stored.terminal


def test_reschedule_mode_frees_the_slot_until_the_call_ends(
    store: CallLedger, vobiz_emulator: Any, answer_url: str
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript(outcome="completed", talk_for=None))  # stays up
    call_uuid = fire(answer_url)
    sensor = VobizCallSensor(
        task_id="s", call_uuid=call_uuid, deferrable=False, mode="reschedule", poke_interval=60
    )
    with pytest.raises(AirflowRescheduleException):
        sensor.execute({"ti": _TI()})
    deliver(store, "hangup", hangup_fields(call_uuid))  # the receiver stores the hangup meanwhile
    rescheduled = VobizCallSensor(
        task_id="s", call_uuid=call_uuid, deferrable=False, mode="reschedule", poke_interval=60
    )
    assert rescheduled.execute({"ti": _TI()})["status"] == "completed"


def test_unreadable_store_falls_back_to_the_api(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, vobiz_emulator: Any, answer_url: str
) -> None:
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{tmp_path / 'no' / 'such.db'}")
    vobiz_emulator.script(DESTINATION, CallScript.busy())
    call_uuid = fire(answer_url)
    vobiz_emulator.wait_for_call(call_uuid)
    sensor = VobizCallSensor(task_id="s", call_uuid=call_uuid, deferrable=False)
    with pytest.raises(VobizCallFailedFinalError, match="busy"):
        sensor.poke({})


# ------------------------------------------------------------------------------------------ deferrable


def test_deferrable_defers_with_an_absolute_deadline(
    store: CallLedger, vobiz_emulator: Any, answer_url: str
) -> None:
    vobiz_emulator.script(DESTINATION, CallScript(outcome="completed", talk_for=None))
    call_uuid = fire(answer_url)
    sensor = VobizCallSensor(task_id="s", call_uuid=call_uuid, timeout=600, poke_interval=5)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    exc = deferred.value
    assert exc.method_name == "execute_complete"
    assert exc.timeout == dt.timedelta(seconds=600)
    assert isinstance(exc.trigger, VobizCallHangupTrigger)
    _, kwargs = exc.trigger.serialize()
    assert kwargs["call_uuids"] == [call_uuid] and kwargs["request_uuids"] == []
    assert before + 600 <= kwargs["deadline"] <= time.time() + 600

    # The trigger (as the triggerer runs it) ends when the receiver stores the hangup...
    def receiver() -> None:
        time.sleep(0.3)
        deliver(store, "hangup", hangup_fields(call_uuid))

    threading.Thread(target=receiver, daemon=True).start()
    trigger = VobizCallHangupTrigger(**{**kwargs, "poll_interval": 0.05})

    async def first_event() -> dict[str, Any]:
        events = trigger.run()
        try:
            return (await asyncio.wait_for(anext(events), 10)).payload
        finally:
            await events.aclose()

    event = asyncio.run(first_event())
    # ... and the resumed sensor returns the record.
    resumed = VobizCallSensor(task_id="s", call_uuid=call_uuid)
    assert resumed.resume_execution("execute_complete", {"event": event}, {})["status"] == "completed"


def test_deferrable_returns_at_once_when_the_call_already_ended(store: CallLedger) -> None:
    call_uuid = str(uuid.uuid4())
    deliver(store, "hangup", hangup_fields(call_uuid))
    assert VobizCallSensor(task_id="s", call_uuid=call_uuid).execute({})["status"] == "completed"


@pytest.mark.parametrize("event", [None, {}, {"status": "weird"}, "hangup"])
def test_execute_complete_refuses_unexpected_events(event: Any) -> None:
    sensor = VobizCallSensor(task_id="s", call_uuid="c")
    with pytest.raises(AirflowException, match="unexpected trigger event"):
        sensor.execute_complete({}, event)


def test_timeout_event_is_a_sensor_timeout_or_a_skip() -> None:
    event = {"status": "timeout", "request_uuids": [], "calls": [], "message": "Deadline passed"}
    with pytest.raises(AirflowSensorTimeout, match="Deadline passed"):
        VobizCallSensor(task_id="s", call_uuid="c").resume_execution("execute_complete", {"event": event}, {})
    soft = VobizCallSensor(task_id="s", call_uuid="c", soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": event}, {})


def test_failed_call_after_deferral_fails_or_skips() -> None:
    call = {
        "call_uuid": "c",
        "request_uuid": "c",
        "to": DESTINATION,
        "status": "failed",
        "terminal": True,
        "hangup_cause_code": 2000,
        "hangup_cause_name": "Invalid Destination Address",
        "source": "callback",
    }
    event = {"status": "hangup", "request_uuids": [], "calls": [call], "message": "hung up"}
    with pytest.raises(VobizCallFailedFinalError, match="Invalid Destination Address"):
        VobizCallSensor(task_id="s", call_uuid="c").resume_execution("execute_complete", {"event": event}, {})
    soft = VobizCallSensor(task_id="s", call_uuid="c", soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": event}, {})


def test_trigger_timeout_from_the_scheduler_is_a_sensor_timeout() -> None:
    """The defer(timeout=...) safety net: the scheduler fails the deferral; soft_fail still skips."""
    from airflow.sdk.bases.operator import TriggerFailureReason

    failure = {"error": TriggerFailureReason.TRIGGER_TIMEOUT}
    with pytest.raises(AirflowSensorTimeout):
        VobizCallSensor(task_id="s", call_uuid="c").resume_execution("__fail__", failure, {})
    with pytest.raises(AirflowSkipException):
        VobizCallSensor(task_id="s", call_uuid="c", soft_fail=True).resume_execution("__fail__", failure, {})


def test_a_hostile_hangup_cause_cannot_forge_lines_in_the_failure(capsys: pytest.CaptureFixture[str]) -> None:
    forged = "\n[2026-01-01, 09:00:00 UTC] {call.py:1} INFO - Done. Returned value was: completed"
    call = {
        "call_uuid": "c",
        "request_uuid": "c",
        "to": DESTINATION + "\r\n",
        "status": "busy",
        "terminal": True,
        "hangup_cause_code": 3010,
        "hangup_cause_name": "Busy" + forged,
        "hangup_source": "Callee" + forged,
        "source": "callback",
    }
    event = {"status": "hangup", "request_uuids": [], "calls": [call], "message": "hung up"}
    with pytest.raises(VobizCallFailedFinalError) as err:
        VobizCallSensor(task_id="s", call_uuid="c").resume_execution("execute_complete", {"event": event}, {})
    message = str(err.value)
    assert "\n" not in message and "\r" not in message
    assert "busy, Busy\\n[2026-01-01, 09:00:00 UTC]" in message
    out = capsys.readouterr().out  # the sensor's timeline line
    assert "cause=Busy\\n[2026-01-01" in out
    assert not [line for line in out.splitlines() if line.startswith("[2026-01-01")]
