"""The call's outcome as the extra of the task's asset events (``outlets=[Asset(...)]``).

Unit: what the extra holds and that numbers are masked. End to end (``dag.test()``, the emulator over
loopback HTTP, the standalone receiver): the asset event Airflow stores carries the outcome, deferrable
(resumed in ``execute_complete``) and in-worker alike, and a retry that returns an earlier try's call
carries it too.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from airflow.sdk import DAG, Asset, AssetAlias

from vobiz_provider.calls.asset_extra import (
    EXTRA_FORMAT,
    attach_outcome,
    call_extra,
    check_outlet_extra,
    outcome_extra,
)
from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.testing import CallScript

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLER = "+14155550100"
TO = "+919876543210"
ANSWERS = Asset("vobiz://tests/answers")


def _record(**fields: Any) -> dict[str, Any]:
    return {
        "call_uuid": "c-1",
        "request_uuid": "r-1",
        "to": TO,
        "from_number": CALLER,
        "status": "completed",
        "hangup_cause_code": 4000,
        "hangup_cause_name": "Normal Hangup",
        "duration": 12,
        "digits": "2",
        "dag_id": "d",
        "run_id": "r",
        "task_id": "call",
        "map_index": 3,
        "try_number": 1,
        "start_time": "2025-01-01T00:00:00Z",
        **fields,
    }


def test_call_extra_masks_numbers_and_keeps_the_outcome():
    extra = call_extra(_record())

    assert extra == {
        "status": "completed",
        "hangup_cause_code": 4000,
        "hangup_cause_name": "Normal Hangup",
        "duration": 12,
        "digits": "2",
        "call_uuid": "c-1",
        "request_uuid": "r-1",
        "to": "+91******3210",
        "from_number": "+1******0100",
    }


def test_call_extra_shows_numbers_whole_when_masking_is_off(monkeypatch):
    monkeypatch.setenv("AIRFLOW__VOBIZ__MASK_PHONE_NUMBERS", "False")

    assert call_extra(_record())["to"] == TO


def test_outcome_extra_names_the_task_instance_lists_every_call_and_merges_the_authors_keys():
    second = _record(call_uuid="c-2", to="+14155550199", status="busy", digits=None, map_index=None)
    extra = outcome_extra(
        [_record(map_index=None, try_number=None), second],
        identity={"dag_id": "x", "run_id": "y", "task_id": "z", "map_index": 7, "try_number": 2},
        outlet_extra={"patient_id": "P-17", "status": "author wins"},
    )

    assert extra["vobiz"] == EXTRA_FORMAT
    assert (extra["dag_id"], extra["run_id"], extra["task_id"]) == ("d", "r", "call")
    assert (extra["map_index"], extra["try_number"]) == (7, 2)  # from the task instance where missing
    assert [call["call_uuid"] for call in extra["calls"]] == ["c-1", "c-2"]
    assert extra["calls"][1]["to"] == "+1******0199"
    assert extra["patient_id"] == "P-17"
    assert extra["status"] == "author wins"
    with pytest.raises(ValueError, match="at least one call"):
        outcome_extra([], identity={})


def test_outlet_extra_is_checked_when_the_dag_is_parsed():
    assert check_outlet_extra("t", None) is None
    assert check_outlet_extra("t", {"k": "{{ params.p }}"}) == {"k": "{{ params.p }}"}
    with pytest.raises(ValueError, match=r"Task 't': outlet_extra must be a dict with string keys, got list"):
        check_outlet_extra("t", ["k"])
    with pytest.raises(ValueError, match="outlet_extra must be a dict with string keys"):
        VobizCallOperator(task_id="t", to=TO, from_number=CALLER, message="Hi", outlet_extra={1: "x"})


def test_attach_outcome_writes_assets_only():
    from airflow.sdk.execution_time.context import OutletEventAccessors

    events = OutletEventAccessors()
    alias = AssetAlias("vobiz-alias")
    written = attach_outcome({"outlet_events": events}, [ANSWERS, alias], [_record()])

    assert written is not None
    assert events[ANSWERS].extra == written
    assert events[alias].extra == {}
    assert attach_outcome({"outlet_events": events}, [alias], [_record()]) is None
    assert attach_outcome({"outlet_events": events}, [ANSWERS], []) is None


def _asset_events(dag_run: Any) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id
            )
        ).all()
        return [dict(row.extra) for row in rows]


@pytest.fixture
def fast_gather(vobiz_emulator: Any) -> Any:
    vobiz_emulator.configure(time_scale=0.01)
    return vobiz_emulator


@pytest.mark.airflow_db
@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "in-worker"])
def test_outcome_reaches_the_asset_event(deferrable, fast_gather, callback_receiver, dag_runner):
    fast_gather.script(TO, CallScript.answered(after=0.05, talk_for=None, digits="2"))
    with DAG(dag_id=f"vobiz_outlets_{deferrable}", schedule=None, start_date=START, catchup=False) as dag:
        VobizCallOperator(
            task_id="call",
            to=TO,
            from_number=CALLER,
            message="Your appointment is tomorrow.",
            gather={"prompt": "Press 1 to confirm, 2 to reschedule.", "num_digits": 1, "timeout": 5},
            expected_digits=["1", "2"],
            outlets=[ANSWERS],
            outlet_extra={"patient_id": "{{ dag_run.conf.get('patient', 'P-1') }}"},
            deferrable=deferrable,
            poll_interval=0.05,
            timeout=30,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 1)
    [extra] = _asset_events(dag_run)
    record = dag_runner.xcoms(dag_run, "call")[-1]
    assert extra["status"] == "completed"
    assert extra["digits"] == "2"
    assert extra["hangup_cause_code"] == record["hangup_cause_code"]
    assert extra["hangup_cause_name"] == record["hangup_cause_name"]
    assert extra["duration"] == record["duration"]
    assert extra["call_uuid"] == record["call_uuid"]
    assert extra["to"] == "+91******3210"
    assert TO not in str(extra)
    assert (extra["dag_id"], extra["run_id"], extra["task_id"], extra["map_index"]) == (
        dag.dag_id,
        dag_run.run_id,
        "call",
        -1,
    )
    assert extra["patient_id"] == "P-1"


@pytest.mark.airflow_db
def test_failed_call_emits_no_asset_event(fast_gather, callback_receiver, dag_runner):
    fast_gather.script(TO, CallScript.busy())
    with DAG(dag_id="vobiz_outlets_busy", schedule=None, start_date=START, catchup=False) as dag:
        VobizCallOperator(
            task_id="call",
            to=TO,
            from_number=CALLER,
            message="Hello",
            outlets=[ANSWERS],
            deferrable=True,
            poll_interval=0.05,
            timeout=30,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)][0] == "failed"
    assert _asset_events(dag_run) == []
