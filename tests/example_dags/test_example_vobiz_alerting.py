"""The example DAG ``example_vobiz_alerting``: it parses with no connection and no network; end to end, the
failing check phones the on-call line once (notifier) and the page escalates to the secondary engineer
unless the primary presses 1; the run fails either way."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from _dagtest import load_example_dag

from vobiz_provider.testing import CallScript

DAG_ID = "example_vobiz_alerting"
ONCALL, PRIMARY, SECONDARY = "+14155550120", "+14155550121", "+14155550122"


def test_parses_without_a_connection_or_the_network(no_network):
    dag = load_example_dag(DAG_ID)

    assert set(dag.task_ids) == {"check_orders", "publish_orders", "page_primary", "page_secondary"}
    assert dag.get_task("page_primary").upstream_task_ids == {"check_orders"}
    assert dag.get_task("page_secondary").upstream_task_ids == {"page_primary"}
    assert dag.get_task("publish_orders").upstream_task_ids == {"check_orders"}
    for task_id, expected in (("page_primary", ("1", "2")), ("page_secondary", ("1",))):
        page = dag.get_task(task_id)
        assert (page.trigger_rule, page.expected_digits, page.retries) == ("one_failed", expected, 0)
    [notifier] = dag.get_task("check_orders").on_failure_callback
    assert type(notifier).__name__ == "VobizNotifier"


def _spoken(vobiz_emulator, to: str) -> list[str]:
    """What the callee at ``to`` heard: the ``<Speak>`` texts of the answer XML the receiver served."""
    uuids = {
        call.call_uuid for call in vobiz_emulator.calls.values() if call.to.lstrip("+") == to.lstrip("+")
    }
    [fetch] = [r for r in vobiz_emulator.callbacks if r.kind == "answer" and r.ok and r.call_uuid in uuids]
    return [element.text or "" for element in ET.fromstring(fetch.body).iter("Speak")]


def _run_failed_check(
    vobiz_emulator: Any,
    dag_runner: Any,
    *,
    primary: CallScript,
    secondary: CallScript,
    expected_states: dict[str, str],
) -> Any:
    """Run the DAG with its quality check failing, the on-call answering and the two pagers scripted;
    checks the task states and returns the DAG run."""
    vobiz_emulator.configure(time_scale=0.01)  # the 15 s keypad timeout passes in 0.15 s
    vobiz_emulator.script(ONCALL, CallScript.answered(after=0.05, talk_for=None))
    vobiz_emulator.script(PRIMARY, primary)
    vobiz_emulator.script(SECONDARY, secondary)
    dag = load_example_dag(DAG_ID)
    for task_id in ("page_primary", "page_secondary"):
        dag.get_task(task_id).poll_interval = 0.05

    dag_run = dag_runner.run(dag)
    vobiz_emulator.wait_until_idle()

    states = {task_id: state for (task_id, _), (state, _) in dag_runner.states(dag_run).items()}
    assert states == {"check_orders": "failed", "publish_orders": "upstream_failed", **expected_states}
    return dag_run


@pytest.mark.airflow_db
@pytest.mark.parametrize(
    ("primary", "calls", "expected_states"),
    [
        (
            CallScript.answered(after=0.05, talk_for=None, digits=None),
            [ONCALL, PRIMARY, SECONDARY],
            {"page_primary": "failed", "page_secondary": "success"},
        ),
        (
            CallScript.no_answer(after=0.05),
            [ONCALL, PRIMARY, SECONDARY],
            {"page_primary": "failed", "page_secondary": "success"},
        ),
        (
            CallScript.answered(after=0.05, talk_for=None, digits="1"),
            [ONCALL, PRIMARY],
            {"page_primary": "success", "page_secondary": "skipped"},
        ),
    ],
    ids=["primary-silent", "primary-no-answer", "primary-acknowledges"],
)
def test_failed_check_phones_oncall_once_and_escalates(
    primary, calls, expected_states, vobiz_emulator, callback_receiver, dag_runner, capfd
):
    dag_run = _run_failed_check(
        vobiz_emulator,
        dag_runner,
        primary=primary,
        secondary=CallScript.answered(after=0.05, talk_for=None, digits="1"),
        expected_states=expected_states,
    )
    assert str(dag_run.state) == "failed"
    assert [post.body["to"] for post in dag_runner.call_requests(vobiz_emulator)] == calls
    assert _spoken(vobiz_emulator, ONCALL) == [
        "Data quality check check_orders failed in example_vobiz_alerting. 2 of 5 orders have a missing or "
        "negative amount: orders 1003, 1004."
    ]
    if expected_states["page_primary"] == "failed" and primary.outcome == "completed":
        heard = _spoken(vobiz_emulator, PRIMARY)
        assert heard[0].startswith("This is Airflow. The data quality check check orders failed")
        assert (
            "Press 1 to acknowledge and take the incident, or 2 to be connected to the secondary on-call."
            in heard
        )
        log = "".join(capfd.readouterr())
        assert "no digits: the callee did not answer the prompt (expected '1' or '2')" in log


@pytest.mark.airflow_db
@pytest.mark.parametrize(
    ("secondary", "expected_states", "dial_status"),
    [
        (
            CallScript.answered(after=0.05, talk_for=0.1),
            {"page_primary": "success", "page_secondary": "skipped"},
            "completed",
        ),
        (CallScript.busy(after=0.05), {"page_primary": "failed", "page_secondary": "failed"}, "busy"),
    ],
    ids=["secondary-answers", "secondary-busy"],
)
def test_primary_presses_2_and_is_connected_to_the_secondary(
    secondary, expected_states, dial_status, vobiz_emulator, callback_receiver, dag_runner, capfd
):
    dag_run = _run_failed_check(
        vobiz_emulator,
        dag_runner,
        primary=CallScript.answered(after=0.05, talk_for=None, digits="2"),
        secondary=secondary,
        expected_states=expected_states,
    )
    [dial_action] = [r for r in vobiz_emulator.callbacks if r.kind == "dial-action"]
    assert dial_action.fields["DialStatus"] == dial_status
    recordings = [r.fields["RecordUrl"] for r in vobiz_emulator.callbacks if r.kind == "record"]
    if dial_status == "completed":
        record = dag_runner.xcoms(dag_run, "page_primary")[-1]
        assert (record["digits"], record["dial_status"]) == ("2", "completed")
        assert record["recording_url"] == recordings[0]
    else:
        assert recordings == []
        log = "".join(capfd.readouterr())
        assert "the number it connects to did not answer (dial status 'busy')" in log


@pytest.mark.airflow_db
def test_passing_check_phones_nobody(vobiz_emulator, callback_receiver, dag_runner, tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,customer,amount\n1,Asha,10.00\n2,Ben,5.50\n")
    dag = load_example_dag(DAG_ID)

    dag_run = dag_runner.run(dag, run_conf={"orders_file": str(orders)})

    states = {task_id: state for (task_id, _), (state, _) in dag_runner.states(dag_run).items()}
    assert states == {
        "check_orders": "success",
        "publish_orders": "success",
        "page_primary": "skipped",
        "page_secondary": "skipped",
    }
    assert str(dag_run.state) == "success"
    assert dag_runner.call_requests(vobiz_emulator) == []
