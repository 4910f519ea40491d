"""The example DAG ``example_vobiz_retry``: it parses with no connection and no network; end to end, an
unanswered call fails its try and the retry dials again, while a try that follows a successful call (a
retry or a clear: Airflow runs the same code with a higher try number) never rings the customer twice."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from _dagtest import clear_and_rerun, load_example_dag

from vobiz_provider.testing import CallScript

DAG_ID = "example_vobiz_retry"
CUSTOMER = "+14155550181"


def test_parses_without_a_connection_or_the_network(no_network):
    dag = load_example_dag(DAG_ID)

    assert set(dag.task_ids) == {"call_customer", "log_delivery_notice"}
    call = dag.get_task("call_customer")
    assert (call.retries, call.deferrable, call.redial) == (2, True, "failed")
    assert call.speaks_message
    assert dag.get_task("log_delivery_notice").upstream_task_ids == {"call_customer"}


def _fast(dag: Any, **changes: Any) -> Any:
    call = dag.get_task("call_customer")
    call.poll_interval = 0.05
    call.retry_delay = datetime.timedelta(0)  # the example waits two minutes between tries
    for name, value in changes.items():
        setattr(call, name, value)
    return call


@pytest.mark.airflow_db
def test_unanswered_call_fails_its_try_and_the_retry_dials_again(
    vobiz_emulator, callback_receiver, dag_runner, capfd
):
    vobiz_emulator.script(CUSTOMER, CallScript.no_answer(after=0.05))

    def customer_picks_up_next_time(context: Any) -> None:
        vobiz_emulator.script(CUSTOMER, CallScript.answered(after=0.05, talk_for=None))

    dag = load_example_dag(DAG_ID)
    _fast(dag, on_retry_callback=[customer_picks_up_next_time])

    dag_run = dag_runner.run(dag)

    states = dag_runner.states(dag_run)
    assert states[("call_customer", -1)] == ("success", 2)
    assert states[("log_delivery_notice", -1)][0] == "success"
    assert len(dag_runner.call_requests(vobiz_emulator)) == 2
    assert sorted(call.status for call in vobiz_emulator.calls.values()) == ["completed", "no-answer"]
    [fetch] = [r for r in vobiz_emulator.callbacks if r.kind == "answer" and r.ok]
    [speak] = ET.fromstring(fetch.body).iter("Speak")
    assert speak.text.startswith("Hello, this is Example Shop. Your parcel will be delivered tomorrow")
    record = dag_runner.xcoms(dag_run, "call_customer")[-1]
    assert (record["status"], record["try_number"]) == ("completed", 2)
    log = "".join(capfd.readouterr())
    assert "ended with status 'no-answer' (hangup cause 3000 No Answer" in log
    assert "did not succeed" in log


def _lose_the_worker_after_try_1(context: Any, result: Any) -> None:
    if context["ti"].try_number == 1:
        raise RuntimeError("the worker was lost after the call ended")


@pytest.mark.airflow_db
def test_a_later_try_never_redials_a_successful_call(vobiz_emulator, callback_receiver, dag_runner, capfd):
    vobiz_emulator.script(CUSTOMER, CallScript.answered(after=0.05, talk_for=None))
    dag = load_example_dag(DAG_ID)
    # What post_execute=... would have set; fails try 1 after its call ended successfully.
    _fast(dag, _post_execute_hook=_lose_the_worker_after_try_1)

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call_customer", -1)] == ("success", 2)
    assert len(dag_runner.call_requests(vobiz_emulator)) == 1
    record = dag_runner.xcoms(dag_run, "call_customer")[-1]
    assert (record["status"], record["try_number"]) == ("completed", 1)
    notice = dag_runner.xcoms(dag_run, "log_delivery_notice")[-1]
    assert notice.startswith(f"Delivery notice given to {record['to']} by phone (try 1,")
    assert "without dialling again" in "".join(capfd.readouterr())


@pytest.mark.airflow_db
def test_clearing_in_the_ui_redials_a_failed_call_but_not_a_successful_one(
    vobiz_emulator, callback_receiver, dag_runner, capfd
):
    vobiz_emulator.script(CUSTOMER, CallScript.busy(after=0.05))
    dag = load_example_dag(DAG_ID)
    _fast(dag, retries=0)

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call_customer", -1)] == ("failed", 1)
    assert len(dag_runner.call_requests(vobiz_emulator)) == 1

    # The line is free now; clearing the failed call task dials again, as try 2.
    vobiz_emulator.script(CUSTOMER, CallScript.answered(after=0.05, talk_for=None))
    assert clear_and_rerun(dag, dag_run, {"call_customer", "log_delivery_notice"}) == "success"

    states = dag_runner.states(dag_run)
    assert states[("call_customer", -1)] == ("success", 2)
    assert states[("log_delivery_notice", -1)][0] == "success"
    assert len(dag_runner.call_requests(vobiz_emulator)) == 2

    # Clearing the successful call (say, to rerun its downstream task) returns the same call, as try 3.
    assert clear_and_rerun(dag, dag_run, {"call_customer", "log_delivery_notice"}) == "success"

    assert dag_runner.states(dag_run)[("call_customer", -1)] == ("success", 3)
    assert len(dag_runner.call_requests(vobiz_emulator)) == 2
    record = dag_runner.xcoms(dag_run, "call_customer")[-1]
    assert (record["status"], record["try_number"]) == ("completed", 2)
    assert "without dialling again" in "".join(capfd.readouterr())
