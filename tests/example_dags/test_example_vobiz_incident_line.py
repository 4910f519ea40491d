"""The example DAGs ``example_vobiz_incident_line`` (an inbound call starts it) and
``example_vobiz_reschedule`` (scheduled on the reminder calls' answers): they parse with no connection and no
network, and pick the right events. The inbound chain under a real triggerer runs in
``tests/e2e/test_standalone_inbound.py``."""

from __future__ import annotations

from types import SimpleNamespace

from _dagtest import load_example_dag

from vobiz_provider.triggers.inbound import VobizInboundCallTrigger


def test_incident_line_parses_and_watches_presses_of_1(no_network):
    dag = load_example_dag("example_vobiz_incident_line")

    [asset] = dag.timetable.asset_condition.objects
    assert asset.uri == "vobiz://inbound/incident-line"
    [watcher] = asset.watchers
    assert isinstance(watcher.trigger, VobizInboundCallTrigger)
    assert watcher.trigger.serialize()[1] == {
        "application": "incident-line",
        "kinds": ["digits"],
        "digits": ["1"],
        "stream": "default",
        "poll_interval": 2.0,
    }
    assert set(dag.task_ids) == {"acknowledge"}
    assert "example" in dag.tags and dag.doc_md


def test_incident_line_acknowledges_each_call_once(no_network):
    dag = load_example_dag("example_vobiz_incident_line")
    [asset] = dag.timetable.asset_condition.objects
    acknowledge = dag.get_task("acknowledge").python_callable

    def event(call_uuid: str, digits: str) -> SimpleNamespace:
        payload = {"call_uuid": call_uuid, "digits": digits, "from_number": "+91******3210"}
        return SimpleNamespace(extra={"from_trigger": True, "payload": payload})

    # The same press delivered twice (after a triggerer crash), and a press of 2: one acknowledgement.
    events = [event("c-1", "1"), event("c-1", "1"), event("c-2", "2")]
    assert acknowledge(triggering_asset_events={asset: events}) == [
        {"call_uuid": "c-1", "caller": "+91******3210"}
    ]
    assert acknowledge(triggering_asset_events={}) == []


def test_reschedule_parses_without_a_connection_or_the_network(no_network):
    dag = load_example_dag("example_vobiz_reschedule")

    [asset] = dag.timetable.asset_condition.objects
    assert asset.uri == "vobiz://example/reminder-answers"
    assert set(dag.task_ids) == {"pick_patients", "book_new_slot"}
    reminders = load_example_dag("example_vobiz_reminders")
    assert [outlet.uri for outlet in reminders.get_task("call").partial_kwargs["outlets"]] == [asset.uri]
