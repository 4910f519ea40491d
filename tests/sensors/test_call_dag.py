"""VobizCallSensor in a real DAG run (``dag.test()``): templated request UUID, deferral, inline trigger."""

from __future__ import annotations

import datetime
import os
import threading
from typing import TYPE_CHECKING, Any

import pytest
from _ledger_helpers import store_callback
from airflow.sdk import DAG, task

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.sensors.call import VobizCallSensor
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

pytestmark = pytest.mark.airflow_db

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLER = "14155550100"
DESTINATION = "14155550177"
SEEN: list[Any] = []


def run_dag(dag: DAG) -> Any:
    """Register ``dag`` in the metadata DB (as the DAG processor would) and run it with ``dag.test()``."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test()


def forward_hangup(emulator: Any, store: CallLedger) -> threading.Thread:
    """Stand in for the receiver: store the emulator's real hangup callback once the call ends."""

    def forward() -> None:
        [hangup] = emulator.wait_for_callbacks("hangup", timeout=120)
        correlation = CorrelationToken(dag_id="sensor_dag", run_id="r", task_id="fire")
        store_callback(store, "hangup", hangup.fields, correlation=correlation, replay_keys=("hangup-nonce",))

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    return thread


def test_deferrable_sensor_with_a_templated_request_uuid(
    airflow_db: Any, store: CallLedger, vobiz_emulator: Any, answer_url: str, capfd: Any
) -> None:
    # Still up at the sensor's first poke, so it defers; the inline trigger then sees the stored hangup.
    vobiz_emulator.script(DESTINATION, CallScript(outcome="completed", answer_after=0.05, talk_for=1.5))
    forwarder = forward_hangup(vobiz_emulator, store)
    SEEN.clear()
    with DAG(dag_id="vobiz_sensor_templated", schedule=None, start_date=START, catchup=False) as dag:

        @task
        def fire() -> dict[str, str]:
            with VobizHook() as hook:
                fired = hook.make_call(
                    MakeCallRequest.build(
                        **{
                            "from": CALLER,
                            "to": DESTINATION,
                            "answer_url": answer_url,
                            "hangup_url": answer_url,
                        }
                    )
                )
            return {"request_uuid": fired.request_uuids[0]}

        wait = VobizCallSensor(
            task_id="wait",
            request_uuid="{{ ti.xcom_pull('fire')['request_uuid'] }}",
            poke_interval=1,
            timeout=60,
        )

        @task
        def after(record: dict[str, Any]) -> None:
            SEEN.append(record)

        fire() >> wait
        after(wait.output)

    dag_run = run_dag(dag)
    forwarder.join(timeout=5)

    assert str(dag_run.state) == "success"
    [emulated] = vobiz_emulator.calls.values()
    [record] = SEEN
    assert (record["call_uuid"], record["status"], record["source"]) == (
        emulated.call_uuid,
        "completed",
        "callback",
    )
    log = "".join(capfd.readouterr())
    assert "has not ended yet" in log  # the first poke found it up ...
    assert "hung up (status=completed" in log  # ... and the deferred trigger logged the hangup
