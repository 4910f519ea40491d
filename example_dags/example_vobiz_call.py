"""Example DAG: call a customer with an appointment reminder and report how the call ended.

``remind`` places the call through the ``vobiz_default`` connection and waits (deferred, so no worker
slot is held) until the callee hangs up. A busy line or no answer fails the task, and its two retries dial
again ten minutes apart; a retry never rings someone twice for a call that already succeeded or is still
going on. ``report`` reads the final call record from XCom.

Nothing here talks to Vobiz or reads the connection while the DAG file is parsed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from vobiz_provider.operators.call import VobizCallOperator

with DAG(
    dag_id="example_vobiz_call",
    description="Call a customer with an appointment reminder and report how the call ended",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "vobiz"],
    params={
        "to": Param("+14155550101", type="string", description="Number to call (E.164)"),
        "answer_url": Param(
            # The VobizXML the callee hears, e.g. <Response><Speak>Your appointment is tomorrow at 10.</Speak>
            "https://example.com/vobiz/appointment-reminder.xml",
            type="string",
            description="URL Vobiz fetches the answer VobizXML from",
        ),
    },
) as dag:
    remind = VobizCallOperator(
        task_id="remind",
        to="{{ params.to }}",
        from_number="+14155550100",
        answer_url="{{ params.answer_url }}",
        caller_name="Example Clinic",
        ring_timeout=30,
        time_limit=300,
        deferrable=True,
        retries=2,
        retry_delay=timedelta(minutes=10),
    )

    @task
    def report(call: dict[str, Any]) -> str:
        """Print how the call ended (the final call record, pushed to XCom by ``remind``)."""
        summary = (
            f"Call to {call['to']} ended with status {call['status']} after {call.get('duration')} s "
            f"(hangup cause {call.get('hangup_cause_code')} {call.get('hangup_cause_name')}, "
            f"hung up by {call.get('hangup_source')})"
        )
        print(summary)
        return summary

    report(remind.output)
