"""The example DAG ``example_vobiz_call``: it parses with no connection and no network, and runs end to end
against the emulator."""

from __future__ import annotations

import re

import pytest
from _dagtest import load_example_dag

from vobiz_provider.testing import CallScript

DAG_ID = "example_vobiz_call"


def test_parses_without_a_connection_or_the_network(no_network):
    dag = load_example_dag(DAG_ID)

    assert sorted(dag.task_ids) == ["remind", "report"]
    assert dag.get_task("report").upstream_task_ids == {"remind"}
    remind = dag.get_task("remind")
    assert remind.deferrable is True
    assert remind.retries == 2


@pytest.mark.airflow_db
def test_runs_end_to_end_against_the_emulator(vobiz_emulator, answer_url, dag_runner, monkeypatch, tmp_path):
    from vobiz_provider.ledger import dispose_ledgers

    # No receiver here: the wait asks the emulator's API (the operator tests cover the callback path).
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{tmp_path / 'callbacks.db'}")
    monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", raising=False)
    vobiz_emulator.script("+14155550101", CallScript.answered(after=0.05, talk_for=0.1))
    dag = load_example_dag(DAG_ID)
    remind = dag.get_task("remind")
    remind.answer_url = answer_url  # the example's URL is not reachable from the test
    remind.poll_interval = 0.05

    try:
        dag_run = dag_runner.run(dag)
    finally:
        dispose_ledgers()

    [summary] = dag_runner.xcoms(dag_run, "report").values()
    assert re.match(r"Call to \+?14155550101 ended with status completed after \d+ s", summary)
    [post] = dag_runner.call_requests(vobiz_emulator)
    assert post.body["to"] == "+14155550101"
    assert post.body["caller_name"] == "Example Clinic"
