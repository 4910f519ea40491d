"""The DAG of ``tests/faults/test_triggerer_kill.py``: one deferrable call task per destination.

``destinations`` hands the run's ``conf["destinations"]`` to ``call``, mapped over them: each mapped task
places its call through ``vobiz_default`` (the emulator), stores its message for the receiver and defers to
``VobizCallHangupTrigger`` until the callee hangs up. A completed call makes the task succeed (XCom: the
final call record); a busy or unanswered line fails it (no retries, so the outcome stays as it was first
decided). The waits are long (``time_limit`` and ``timeout``) so that the outcome comes from the callbacks in
the store, not from the Vobiz API, however long the test keeps the triggerer down.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from vobiz_provider.operators.call import VobizCallOperator

with DAG(
    dag_id="vobiz_faults_triggerer",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_tasks=1000,
    params={"destinations": Param([], type="array")},
) as dag:

    @task(retries=0)
    def destinations(**context: Any) -> list[str]:
        """The numbers to call, from the run's conf."""
        return [str(number) for number in context["params"]["destinations"]]

    VobizCallOperator.partial(
        task_id="call",
        from_number="+14155550100",
        message="Hello, this is the triggerer fault test of the Vobiz provider.",
        ring_timeout=60,
        time_limit=1800,
        timeout=7200,
        poll_interval=1,
        deferrable=True,
        retries=0,
    ).expand(to=destinations())
