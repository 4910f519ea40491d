"""The DAG that ``tests/e2e/test_standalone_airflow.py`` runs under a real scheduler, worker and triggerer.

``call`` places a call through ``vobiz_default`` (the emulator) that says a message and asks the callee to
press 1, and defers until the callee hangs up. Everything Vobiz needs during the call comes from the receiver
that ``VobizPlugin`` mounts on the API server: the answer XML (the message the worker stored before dialling),
the digits (gather), the ring and hangup notifications. ``report`` reads the final call record from XCom and
fails unless the call completed with the expected key. The test passes the destination as run conf.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from vobiz_provider.operators.call import VobizCallOperator

with DAG(
    dag_id="vobiz_e2e_call",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={
        "to": Param("+14155550101", type="string"),
    },
) as dag:
    call = VobizCallOperator(
        task_id="call",
        to="{{ params.to }}",
        from_number="+14155550100",
        message="Hello {{ params.to }}, this is the end-to-end test of the Vobiz provider.",
        gather={"prompt": "Press 1 to confirm.", "num_digits": 1, "timeout": 10},
        expected_digits="1",
        ring_timeout=60,
        time_limit=120,
        timeout=240,
        poll_interval=1,
        deferrable=True,
        retries=0,
    )

    @task(retries=0)
    def report(record: dict[str, Any]) -> dict[str, Any]:
        """Check the call record the ``call`` task pushed to XCom and return its summary."""
        if record.get("status") != "completed" or record.get("digits") != "1":
            raise ValueError(f"the call did not complete with the key 1 pressed: {record!r}")
        summary = {
            key: record.get(key)
            for key in (
                "call_uuid",
                "request_uuid",
                "to",
                "status",
                "hangup_cause_code",
                "hangup_cause_name",
                "hangup_source",
                "duration",
                "digits",
            )
        }
        print(f"Call summary: {summary}")
        return summary

    report(call.output)
