"""End to end (``dag.test()``, the emulator over loopback HTTP, the standalone receiver): a keypad prompt that
connects the callee to another number with ``<Dial>``, as the alerting escalation does ("press 2 to be
connected to the secondary on-call"), and the call record that comes back with the B leg's outcome and the
recording's URL."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from _ledger_helpers import bare_url
from airflow.sdk import DAG

from vobiz_provider.config import get_settings
from vobiz_provider.ledger import get_ledger
from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.testing import CallScript

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLER = "+14155550100"
PRIMARY = "+14155550161"
SECONDARY = "+14155550122"
FAST = {"poll_interval": 0.05, "timeout": 30}
GATHER = {
    "prompt": "Press 1 to acknowledge, 2 to be connected to the secondary on-call.",
    "num_digits": 1,
    "timeout": 5,
    "connect": {"2": {"to": SECONDARY, "record": True, "timeout": 20}},
}


@pytest.fixture
def fast_xml(vobiz_emulator: Any) -> Any:
    """XML durations (the Dial's timeout, the Gather's) shrunk a hundredfold in the emulator."""
    vobiz_emulator.configure(time_scale=0.01)
    return vobiz_emulator


def _run(dag_runner: Any, dag_id: str, state: str = "success") -> tuple[Any, dict[str, Any] | None]:
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False) as dag:
        VobizCallOperator(
            task_id="call",
            to=PRIMARY,
            from_number=CALLER,
            message="The nightly load failed.",
            gather=GATHER,
            expected_digits=["1", "2"],
            deferrable=True,
            **FAST,
        )
    dag_run = dag_runner.run(dag)
    assert dag_runner.states(dag_run)[("call", -1)] == (state, 1)
    return dag_run, dag_runner.xcoms(dag_run, "call")[-1] if state == "success" else None


@pytest.mark.airflow_db
@pytest.mark.parametrize("signed_url_form", ["stripped", "kept"])
def test_pressing_2_connects_the_secondary_and_the_record_says_how_it_went(
    signed_url_form, fast_xml, callback_receiver, dag_runner
):
    """Both signed-URL forms pass the receiver's signature check (it accepts both)."""
    vobiz_emulator = fast_xml
    vobiz_emulator.configure(signed_url_form=signed_url_form)
    vobiz_emulator.script(PRIMARY, CallScript.answered(after=0.05, talk_for=None, digits="2"))
    vobiz_emulator.script(SECONDARY, CallScript.answered(after=0.05, talk_for=0.2))

    _, record = _run(dag_runner, f"vobiz_connect_answered_{signed_url_form}")
    assert record is not None

    [gather_reply] = [r for r in vobiz_emulator.callbacks if r.kind == "gather" and r.ok]
    root = ET.fromstring(gather_reply.body)
    [dial] = root.iter("Dial")
    assert [n.text for n in dial.iter("Number")] == [SECONDARY]
    assert bare_url(dial.get("callbackUrl", "")).startswith(f"{callback_receiver}/callbacks/dial?t=")
    assert dial.get("redirect") == "false"
    assert all(r.ok for r in vobiz_emulator.callbacks if r.kind in ("dial", "dial-action", "record"))
    [b_leg] = [r.fields["DialBLegUUID"] for r in vobiz_emulator.callbacks if r.kind == "dial-action"]
    [recording] = [r.fields["RecordUrl"] for r in vobiz_emulator.callbacks if r.kind == "record"]

    assert (record["status"], record["digits"]) == ("completed", "2")
    assert (record["dial_status"], record["dial_b_leg_uuid"]) == ("completed", b_leg)
    assert record["dial_hangup_cause"] == "NORMAL_CLEARING"
    assert record["recording_url"] == recording


@pytest.mark.airflow_db
def test_a_busy_secondary_fails_the_task_and_is_on_the_record(fast_xml, callback_receiver, dag_runner, capfd):
    """Keys that connect count only when the other number answered."""
    vobiz_emulator = fast_xml
    vobiz_emulator.script(PRIMARY, CallScript.answered(after=0.05, talk_for=None, digits="2"))
    vobiz_emulator.script(SECONDARY, CallScript.busy(after=0.05))

    _run(dag_runner, "vobiz_connect_busy", state="failed")

    assert "the number it connects to did not answer (dial status 'busy')" in "".join(capfd.readouterr())
    [call] = vobiz_emulator.calls.values()
    [stored] = get_ledger(get_settings().callback_store).lookup(call_uuids=[call.call_uuid])
    record = stored.to_event()

    assert (record["digits"], record["dial_status"], record["dial_hangup_cause"]) == (
        "2",
        "busy",
        "USER_BUSY",
    )
    # The B leg that was tried: named by the Dial's DialHangup event (the action sends it empty).
    [attempted] = [r.fields["DialBLegUUID"] for r in vobiz_emulator.callbacks if r.kind == "dial"]
    assert record["dial_b_leg_uuid"] == attempted
    assert record["recording_url"] is None  # nobody answered: nothing was recorded


@pytest.mark.airflow_db
def test_pressing_1_does_not_dial(fast_xml, callback_receiver, dag_runner):
    vobiz_emulator = fast_xml
    vobiz_emulator.script(PRIMARY, CallScript.answered(after=0.05, talk_for=None, digits="1"))

    _, record = _run(dag_runner, "vobiz_connect_acknowledged")
    assert record is not None

    assert record["digits"] == "1"
    assert record["dial_status"] is None
    assert not [r for r in vobiz_emulator.callbacks if r.kind.startswith("dial")]
