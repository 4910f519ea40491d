"""The DAG that ``tests/e2e/test_standalone_airflow.py`` runs under a real scheduler, worker and triggerer.

``call`` places a call through ``vobiz_default`` (the emulator) and defers until the callee hangs up; the
hangup reaches it through the receiver that ``VobizPlugin`` mounts on the API server. ``report`` reads the
final call record from XCom and fails unless the call completed. The test passes the destination and the
answer URL as run conf.
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
        "answer_url": Param("http://127.0.0.1:9/answer.xml", type="string"),
    },
) as dag:
    call = VobizCallOperator(
        task_id="call",
        to="{{ params.to }}",
        from_number="+14155550100",
        answer_url="{{ params.answer_url }}",
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
        if record.get("status") != "completed":
            raise ValueError(f"the call did not complete: {record!r}")
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
            )
        }
        print(f"Call summary: {summary}")
        return summary

    report(call.output)
