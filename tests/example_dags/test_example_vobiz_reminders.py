"""The example DAG ``example_vobiz_reminders``: it parses with no connection and no network, and runs end to
end against the emulator and the callback receiver: one mapped call per CSV row, every outcome summarised."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from _dagtest import load_example_dag
from _ledger_helpers import bare_url

from vobiz_provider.testing import CallScript

DAG_ID = "example_vobiz_reminders"
ASHA, BEN, CHEN, DANA = "+14155550171", "+14155550172", "+14155550173", "+14155550174"


def test_parses_without_a_connection_or_the_network(no_network):
    dag = load_example_dag(DAG_ID)

    assert set(dag.task_ids) == {"read_recipients", "call", "summarise"}
    call = dag.get_task("call")
    assert call.partial_kwargs["deferrable"] is True
    assert call.partial_kwargs["max_active_tis_per_dagrun"] == 5
    assert dag.get_task("summarise").trigger_rule == "all_done"
    assert dag.get_task("summarise").upstream_task_ids == {"read_recipients", "call"}
    assert "example" in dag.tags
    assert dag.doc_md


@pytest.mark.airflow_db
def test_calls_everyone_and_summarises_each_outcome(vobiz_emulator, callback_receiver, dag_runner, capfd):
    vobiz_emulator.configure(time_scale=0.01)  # the 10 s keypad timeout passes in 0.1 s
    vobiz_emulator.script(ASHA, CallScript.answered(after=0.05, talk_for=None, digits="1"))
    vobiz_emulator.script(BEN, CallScript.busy(after=0.05))
    vobiz_emulator.script(CHEN, CallScript.no_answer(after=0.05))
    vobiz_emulator.script(DANA, CallScript.answered(after=0.05, talk_for=None, digits="2"))
    dag = load_example_dag(DAG_ID)
    call = dag.get_task("call")
    call.partial_kwargs["poll_interval"] = 0.05

    dag_run = dag_runner.run(dag)

    states = dag_runner.states(dag_run)
    assert {key: state for key, (state, _) in states.items()} == {
        ("read_recipients", -1): "success",
        ("call", 0): "success",
        ("call", 1): "success",
        ("call", 2): "success",
        ("call", 3): "success",
        ("summarise", -1): "success",
    }
    posts = dag_runner.call_requests(vobiz_emulator)
    assert sorted(post.body["to"] for post in posts) == [ASHA, BEN, CHEN, DANA]
    assert all(
        bare_url(post.body["answer_url"]).startswith(f"{callback_receiver}/callbacks/answer?t=")
        for post in posts
    )
    # Asha heard her own reminder, then the prompt.
    asha = next(call.call_uuid for call in vobiz_emulator.calls.values() if call.to.lstrip("+") == ASHA[1:])
    [fetch] = [r for r in vobiz_emulator.callbacks if r.kind == "answer" and r.ok and r.call_uuid == asha]
    root = ET.fromstring(fetch.body)
    speak = next(root.iter("Speak"))
    assert (
        speak.text
        == "Hello Asha Rao. This is Example Clinic, reminding you of your appointment on Tuesday at 10:00."
    )
    [prompt] = next(root.iter("Gather")).iter("Speak")
    assert prompt.text == "Press 1 to confirm, or 2 to reschedule."

    records = dag_runner.xcoms(dag_run, "call")
    assert {index: (r["status"], r["digits"]) for index, r in records.items()} == {
        0: ("completed", "1"),
        1: ("busy", None),
        2: ("no-answer", None),
        3: ("completed", "2"),
    }
    assert dag_runner.xcoms(dag_run, "summarise")[-1] == {
        "confirmed": 1,
        "busy": 1,
        "no-answer": 1,
        "reschedule": 1,
    }
    log = "".join(capfd.readouterr())
    assert "Reminder calls:" in log
    for number, outcome in ((ASHA, "confirmed"), (BEN, "busy"), (CHEN, "no-answer"), (DANA, "reschedule")):
        assert any(line.startswith(number) and outcome in line for line in log.splitlines()), outcome


@pytest.mark.airflow_db
def test_a_call_that_cannot_be_placed_is_summarised_as_failed(
    vobiz_emulator, callback_receiver, dag_runner, tmp_path, capfd
):
    recipients = tmp_path / "recipients.csv"
    recipients.write_text(f"name,phone,appointment\nAsha,{ASHA},Monday\nEli,+14155550175,Monday\n")
    vobiz_emulator.configure(time_scale=0.01)
    vobiz_emulator.script(ASHA, CallScript.answered(after=0.05, talk_for=None, digits="2"))
    vobiz_emulator.script("+14155550175", CallScript.failed(after=0.01))
    dag = load_example_dag(DAG_ID)
    call = dag.get_task("call")
    call.partial_kwargs.update(poll_interval=0.05, retries=0)

    dag_run = dag_runner.run(dag, run_conf={"recipients_file": str(recipients)})

    states = dag_runner.states(dag_run)
    assert (states[("call", 0)][0], states[("call", 1)][0]) == ("success", "failed")
    assert states[("summarise", -1)][0] == "success"
    assert dag_runner.xcoms(dag_run, "summarise")[-1] == {"reschedule": 1, "call failed": 1}


@pytest.mark.airflow_db
def test_each_answer_is_an_asset_event_and_a_2_reschedules_that_patient(
    vobiz_emulator, callback_receiver, dag_runner, tmp_path, capfd
):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    recipients = tmp_path / "recipients.csv"
    recipients.write_text(f"name,phone,appointment\nAsha,{ASHA},Monday\nDana,{DANA},Friday\n")
    vobiz_emulator.configure(time_scale=0.01)
    vobiz_emulator.script(ASHA, CallScript.answered(after=0.05, talk_for=None, digits="1"))
    vobiz_emulator.script(DANA, CallScript.answered(after=0.05, talk_for=None, digits="2"))
    dag = load_example_dag(DAG_ID)
    dag.get_task("call").partial_kwargs["poll_interval"] = 0.05

    dag_run = dag_runner.run(dag, run_conf={"recipients_file": str(recipients)})

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).where(AssetEvent.source_run_id == dag_run.run_id).order_by(AssetEvent.id)
        ).all()
        extras = sorted((dict(event.extra) for event in events), key=lambda extra: extra["map_index"])
        assert {event.asset.uri for event in events} == {"vobiz://example/reminder-answers"}
    assert [(e["patient"], e["digits"], e["map_index"], e["task_id"]) for e in extras] == [
        ("Asha", "1", 0, "call"),
        ("Dana", "2", 1, "call"),
    ]
    assert all(ASHA not in str(e) and DANA not in str(e) for e in extras)  # numbers masked
    # The downstream DAG, as Airflow runs it when the asset is updated: fed the stored events.
    reschedule = load_example_dag("example_vobiz_reschedule")
    [asset] = reschedule.timetable.asset_condition.objects
    assert asset.uri == "vobiz://example/reminder-answers"
    pick = reschedule.get_task("pick_patients").python_callable
    triggering = {asset: events}
    assert pick(triggering_asset_events=triggering) == [
        {"patient": "Dana", "appointment": "Friday", "call": extras[1]["call_uuid"]}
    ]
