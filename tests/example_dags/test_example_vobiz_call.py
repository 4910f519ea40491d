"""The example DAG ``example_vobiz_call``: it parses with no connection and no network, and runs end to end
against the emulator."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from vobiz_provider.testing import CallScript

EXAMPLE = Path(__file__).resolve().parents[2] / "example_dags" / "example_vobiz_call.py"
HOLD_XML = '<?xml version="1.0" encoding="UTF-8"?><Response><Wait length="3600"/></Response>'


def _load() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE))
    assert bag.import_errors == {}
    return bag


def test_parses_without_a_connection_or_the_network(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_VOBIZ_DEFAULT", raising=False)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the example DAG opened a network connection while being parsed")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)

    dag = _load().dags["example_vobiz_call"]

    assert sorted(dag.task_ids) == ["remind", "report"]
    assert dag.get_task("report").upstream_task_ids == {"remind"}
    remind = dag.get_task("remind")
    assert remind.deferrable is True
    assert remind.retries == 2


@pytest.fixture
def answer_url() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from vobiz_provider.testing.emulator.server import serve_in_thread

    async def answer(request: Any) -> Response:
        return Response(HOLD_XML, media_type="application/xml")

    app = Starlette(routes=[Route("/answer.xml", answer, methods=["GET", "POST"])])
    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}/answer.xml"


@pytest.mark.airflow_db
def test_runs_end_to_end_against_the_emulator(airflow_db, vobiz_emulator, answer_url, monkeypatch, tmp_path):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from vobiz_provider.callbacks.store import dispose_stores

    # No receiver here: the wait asks the emulator's API (the operator tests cover the callback path).
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{tmp_path / 'callbacks.db'}")
    monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", raising=False)
    vobiz_emulator.script("+14155550101", CallScript.answered(after=0.05, talk_for=0.1))
    dag = _load().dags["example_vobiz_call"]
    remind = dag.get_task("remind")
    remind.answer_url = answer_url  # the example's URL is not reachable from the test
    remind.poll_interval = 0.05

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    try:
        dag_run = dag.test()
    finally:
        dispose_stores()

    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id, dag_ids=dag.dag_id, task_ids="report", key="return_value"
            )
        ).all()
        [summary] = [XComModel.deserialize_value(row) for row in rows]
    assert re.match(r"Call to \+?14155550101 ended with status completed after \d+ s", summary)
    [post] = [r for r in vobiz_emulator.requests if r.method == "POST" and r.path.endswith("/Call/")]
    assert post.body["to"] == "+14155550101"
    assert post.body["caller_name"] == "Example Clinic"
