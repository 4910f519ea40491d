"""Leaked callback URLs against real DAG runs (security review findings 1 and 2), end to end.

``dag.test()`` places the calls with the emulator (real HTTP on loopback), the emulator posts its callbacks
to the standalone receiver, and the attacker posts to the same receiver with a URL of another try, unsigned,
with ``require_signatures`` switched off (the binding must hold where signatures cannot be had). Before
the fix, the forged callbacks made a different DAG's task succeed (finding 1), and a phantom call planted
under try 1 made try 2 wait for it instead of dialling (finding 2).
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from airflow.sdk import DAG

from vobiz_provider.ledger import get_ledger
from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.testing import CallScript

pytestmark = pytest.mark.airflow_db


@pytest.fixture(autouse=True)
def _signatures_not_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker posts unsigned, which the default refuses first: switch signatures off (the documented
    setting for setups without them) so that these tests prove the binding holds on its own."""
    monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "False")


START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLER = "+14155550100"
FAST = {"poll_interval": 0.05, "timeout": 30}


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False)


def _emulated_call(emulator: Any, to: str, *, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in list(emulator.calls.values()):
            if call.to.lstrip("+") == to.lstrip("+"):
                return call
        time.sleep(0.02)
    raise AssertionError(f"no call to {to} reached the emulator")


def test_a_leaked_url_cannot_decide_another_dags_task(vobiz_emulator, callback_receiver, dag_runner):
    # Another team's DAG placed a call with a spoken message; its callback URLs leaked (an access log).
    leaky_to = "+14155550141"
    vobiz_emulator.script(leaky_to, CallScript.answered(after=0.05, talk_for=0.1))
    with _dag("security_leaky_newsletter") as leaky:
        VobizCallOperator(task_id="newsletter", to=leaky_to, from_number=CALLER, message="Our news", **FAST)
    dag_runner.run(leaky)
    [leaked] = dag_runner.call_requests(vobiz_emulator)
    answer_url, hangup_url = leaked.body["answer_url"], leaked.body["hangup_url"]
    gather_url = answer_url.replace("/callbacks/answer?", "/callbacks/gather?")

    # The victim asks the callee to confirm a payment with key 1; the callee never picks up.
    victim_to = "+14155550142"
    vobiz_emulator.script(victim_to, CallScript.no_answer(after=3.0))
    answers: list[int] = []

    def attack() -> None:
        call = _emulated_call(vobiz_emulator, victim_to)
        ledger = get_ledger()
        while not ledger.lookup(request_uuids=[call.request_uuid]):  # its task recorded the call
            time.sleep(0.02)
        # The victim's UUIDs are in its task log and XCom: the attacker knows them.
        fields = {
            "CallUUID": call.call_uuid,
            "RequestUUID": call.request_uuid,
            "To": victim_to,
            "From": CALLER,
        }
        hangup = {
            **fields,
            "Event": "Hangup",
            "CallStatus": "completed",
            "HangupCause": "NORMAL_CLEARING",
            "HangupCauseCode": "4000",
            "AnswerTime": "2025-01-01 00:00:01",
        }
        with httpx.Client(timeout=10) as client:
            answers.append(
                client.post(gather_url, data={**fields, "Digits": "1", "InputType": "dtmf"}).status_code
            )
            answers.append(client.post(hangup_url, data=hangup).status_code)

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    with _dag("security_victim_payment") as victim:
        VobizCallOperator(
            task_id="confirm_payment",
            to=victim_to,
            from_number=CALLER,
            message="Confirm the payment of 950 EUR",
            gather={"prompt": "Press 1 to confirm", "num_digits": 1},
            expected_digits=["1"],
            deferrable=True,
            **FAST,
        )
    dag_run = dag_runner.run(victim)
    attacker.join(30)

    assert answers == [403, 403]
    assert dag_runner.states(dag_run)[("confirm_payment", -1)] == ("failed", 1)
    call = _emulated_call(vobiz_emulator, victim_to)
    [record] = get_ledger().lookup(call_uuids=[call.call_uuid])
    assert (record.status, record.digits, record.task_id) == ("no-answer", None, "confirm_payment")


def test_a_phantom_call_does_not_hold_back_the_retry(vobiz_emulator, callback_receiver, dag_runner, capfd):
    to = "+14155550143"
    vobiz_emulator.script(to, CallScript.busy(after=0.05))
    answers: list[int] = []

    def plant_phantoms_then_free_the_line(context: Any) -> None:
        # Between the tries, with try 1's URLs (and its RequestUUID, from the task log).
        [post] = dag_runner.call_requests(vobiz_emulator)
        request_uuid = _emulated_call(vobiz_emulator, to).request_uuid
        answer_url = post.body["answer_url"]
        hangup_as_answer = post.body["hangup_url"].replace("/callbacks/hangup?", "/callbacks/answer?")
        phantom = {"CallUUID": "phantom-1", "To": "+10000000000", "Event": "StartApp"}
        with_own_request = {**phantom, "CallUUID": "phantom-2", "RequestUUID": request_uuid}
        with httpx.Client(timeout=10) as client:
            # Vobiz-style GETs: the fields appended to the URL, which already carries ?t=.
            for url, fields in (
                (answer_url, phantom),  # the review's repro
                (hangup_as_answer, phantom),
                (answer_url, with_own_request),
            ):
                response = client.get(f"{url}&{urlencode(fields)}")
                assert "correlation token" not in response.text or url == hangup_as_answer
                answers.append(response.status_code)
        vobiz_emulator.script(to, CallScript.answered(after=0.05, talk_for=0.1))

    with _dag("security_phantom_retry") as dag:
        VobizCallOperator(
            task_id="call",
            to=to,
            from_number=CALLER,
            message="Your parcel arrives today",
            retries=1,
            retry_delay=datetime.timedelta(0),
            on_retry_callback=plant_phantoms_then_free_the_line,
            deferrable=True,
            **FAST,
        )
    dag_run = dag_runner.run(dag)

    assert answers == [403, 403, 403]
    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 2)
    assert len(dag_runner.call_requests(vobiz_emulator)) == 2  # try 2 dialled again
    record = dag_runner.xcoms(dag_run, "call")[-1]
    assert (record["status"], record["try_number"]) == ("completed", 2)
    assert "did not succeed" in "".join(capfd.readouterr())
