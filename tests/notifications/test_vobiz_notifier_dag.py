"""VobizNotifier as a real ``on_failure_callback``: ``dag.test()`` runs the task, Airflow's task runner calls
the notifier with the real context, the emulator is Vobiz and the receiver speaks the message."""

from __future__ import annotations

import datetime
import os
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import pytest

from vobiz_provider.notifications.vobiz import VobizNotifier
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from vobiz_provider.testing import EmulatorHandle

pytestmark = pytest.mark.airflow_db

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLEE = "919876543210"


def _run(dag: DAG) -> Any:
    """Register ``dag`` in the metadata DB (as the DAG processor would) and run it with ``dag.test()``."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test()


def test_a_failing_task_phones_once_and_the_callee_hears_the_rendered_message(
    vobiz_emulator: EmulatorHandle, receiver: Any, airflow_db: Any
) -> None:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    def fail() -> None:
        raise RuntimeError("the load broke")

    vobiz_emulator.script(CALLEE, CallScript.answered(talk_for=None, digits="1"))
    notifier = VobizNotifier(
        to=CALLEE,
        from_number="918000000000",
        message="Task {{ ti.task_id }} of {{ dag.dag_id }} failed on try {{ ti.try_number }}.",
        gather={"prompt": "Press 1 to acknowledge.", "num_digits": 1},
    )
    with DAG("vobiz_notify_on_failure", schedule=None, start_date=START, catchup=False) as dag:
        PythonOperator(task_id="load", python_callable=fail, on_failure_callback=[notifier, notifier])

    _run(dag)

    posts = [r for r in vobiz_emulator.requests if r.method == "POST" and r.path.endswith("/Call/")]
    assert len(posts) == 1  # the callback list holds the notifier twice: one call
    (call,) = vobiz_emulator.calls.values()
    deadline = time.monotonic() + 10
    records = receiver.store.lookup(request_uuids=[call.request_uuid])
    while not records or not records[0].terminal:
        assert time.monotonic() < deadline, "the call never ended at the receiver"
        time.sleep(0.05)
        records = receiver.store.lookup(request_uuids=[call.request_uuid])
    (answer,) = [cb for cb in vobiz_emulator.callbacks if cb.kind == "answer"]
    speak = ET.fromstring(answer.body.split("\n", 1)[1])[0]
    assert speak.text == "Task load of vobiz_notify_on_failure failed on try 1."
    assert records[0].digits == "1"
    assert records[0].task_id is not None and records[0].task_id.startswith("load.vobiz_notify.")
