"""Inbound calls start DAG runs, under real Airflow (the session's ``airflow standalone``, shared with
``test_standalone_airflow.py``).

The flow checked: a call to the incident line's answer URL (the plugin receiver on the API server, the URL as
``vobiz-callbacks inbound-url`` prints it) is answered with the application's Gather; the caller presses 1
and hangs up; the receiver stores the call and the key press; the triggerer's two ``VobizInboundCallTrigger``
watchers (one shared poll) turn them into asset events; ``vobiz_e2e_inbound_calls`` runs for the call and
``vobiz_e2e_inbound_ack`` for the press of 1, each exactly once, and a press of 2 starts no acknowledgement.
Then the stream's cursor in the callback store is past both calls' events.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from _standalone import CALLBACK_SECRET

from vobiz_provider.ledger import CallLedger
from vobiz_provider.models.inbound import inbound_url
from vobiz_provider.testing import place_inbound_call

if TYPE_CHECKING:
    from _processes import EmulatorProcess
    from _standalone import StandaloneAirflow

pytestmark = [pytest.mark.slow, pytest.mark.airflow_db, pytest.mark.timeout(420)]

ACK_DAG, CALLS_DAG = "vobiz_e2e_inbound_ack", "vobiz_e2e_inbound_calls"
CALLER = "+14155550177"
LINE = "+14155550199"
PARSE_TIMEOUT = 90.0
RUN_TIMEOUT = 120.0


def _wait_for_dags(airflow: StandaloneAirflow) -> None:
    deadline = time.monotonic() + PARSE_TIMEOUT
    while time.monotonic() < deadline:
        if all(airflow.api.get(f"/dags/{dag}").status_code == 200 for dag in (ACK_DAG, CALLS_DAG)):
            return
        errors = airflow.get("/importErrors")
        if errors.get("total_entries"):
            pytest.fail(f"the e2e DAG failed to import: {json.dumps(errors, indent=1)}", pytrace=False)
        time.sleep(1.0)
    pytest.fail(f"the inbound DAGs were not registered within {PARSE_TIMEOUT:.0f} s", pytrace=False)


def _runs(airflow: StandaloneAirflow, dag_id: str) -> list[dict[str, Any]]:
    return airflow.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "start_date"})["dag_runs"]


def _payloads(airflow: StandaloneAirflow, dag_id: str, task_id: str) -> list[dict[str, Any]]:
    """The payloads every successful run of ``dag_id`` received, from its task's XCom."""
    found = []
    for run in _runs(airflow, dag_id):
        if run["state"] != "success":
            continue
        entry = airflow.get(
            f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/{task_id}/xcomEntries/return_value"
        )
        value = entry["value"]
        found.extend(json.loads(value) if isinstance(value, str) else value)
    return found


def _wait_for(airflow: StandaloneAirflow, what: Any, message: str) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        result = what()
        if result:
            return result
        time.sleep(1.0)
    seen = {dag: (_runs(airflow, dag), _payloads(airflow, dag, task)) for dag, task in _TASKS.items()}
    trigger_lines = [line for line in airflow.log_tail(4000).splitlines() if "triggerer" in line][-60:]
    pytest.fail(
        f"{message} within {RUN_TIMEOUT:.0f} s\nruns and payloads: {json.dumps(seen, indent=1)}\n"
        + "\n".join(trigger_lines),
        pytrace=False,
    )


_TASKS = {ACK_DAG: "acknowledge", CALLS_DAG: "record"}


def test_inbound_calls_and_key_presses_start_one_dag_run_each(
    standalone_airflow: StandaloneAirflow, emulator_process: EmulatorProcess
) -> None:
    airflow = standalone_airflow
    auth_token = emulator_process.connection["password"]
    _wait_for_dags(airflow)
    # The watchers start once the DAGs are registered: give the triggerer a moment to pick them up.
    time.sleep(5)
    answer_url = inbound_url(airflow.callback_base_url, "e2e-line", CALLBACK_SECRET)
    hangup_url = inbound_url(airflow.callback_base_url, "e2e-line", CALLBACK_SECRET, kind="hangup")

    def call(digits: str) -> Any:
        result = place_inbound_call(
            answer_url,
            auth_token=auth_token,
            from_number=CALLER,
            to_number=LINE,
            digits=digits,
            hangup_url=hangup_url,
        )
        assert [(step.kind, step.status) for step in result.steps] == [
            ("answer", 200),
            ("gather", 200),
            ("hangup", 200),
        ], [step.body for step in result.steps]
        assert "Press 1 to acknowledge the incident." in result.spoken
        return result

    def calls_seen(count: int) -> Any:
        found = _payloads(airflow, CALLS_DAG, "record")
        return found if len(found) >= count else None

    # The on-call engineer calls and presses 1: one acknowledgement run, one run for the call.
    pressed_1 = call("1")
    acks = _wait_for(
        airflow, lambda: _payloads(airflow, ACK_DAG, "acknowledge"), "no acknowledgement DAG run succeeded"
    )
    _wait_for(airflow, lambda: calls_seen(1), "the calls DAG did not run for the first call")
    # A second call, where 2 is pressed: a run for the call, none for an acknowledgement. (Calls are a few
    # seconds apart: Airflow gives an asset event that arrives while the run of the one before is being
    # queued to the next run, not its own; see docs/events.md.)
    pressed_2 = call("2")
    _wait_for(airflow, lambda: calls_seen(2), "the calls DAG did not run for the second call")
    # Long enough for a duplicate to show: several polls and scheduler loops.
    time.sleep(8)
    acks = _payloads(airflow, ACK_DAG, "acknowledge")
    calls = _payloads(airflow, CALLS_DAG, "record")
    call_runs = _runs(airflow, CALLS_DAG)

    assert [(p["call_uuid"], p["digits"]) for p in acks] == [(pressed_1.call_uuid, "1")]
    assert len(_runs(airflow, ACK_DAG)) == 1
    assert [p["call_uuid"] for p in calls] == [pressed_1.call_uuid, pressed_2.call_uuid]
    assert len(call_runs) == 2  # one run per call, none twice
    assert all(p["kind"] == "call" and p["application"] == "e2e-line" for p in calls)
    assert CALLER not in json.dumps(acks + calls)  # masked in asset events
    assert acks[0]["from_number"] == "+1******0177"
    assert all(run["state"] == "success" for run in _runs(airflow, ACK_DAG) + call_runs)

    store = CallLedger(airflow.callback_store)
    try:
        events = store.inbound_events_after(0)
        assert {(e.kind, e.call_uuid) for e in events} >= {
            ("call", pressed_1.call_uuid),
            ("digits", pressed_1.call_uuid),
            ("hangup", pressed_2.call_uuid),
        }
        ack_event = next(e for e in events if e.kind == "digits" and e.call_uuid == pressed_1.call_uuid)
        assert store.inbound_cursor("default") >= ack_event.id
    finally:
        store.dispose()
