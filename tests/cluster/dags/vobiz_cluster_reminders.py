"""The DAG of ``tests/cluster``: a reminder call to every recipient of the run's conf, one mapped task each.

Each mapped ``call`` task places its call through ``vobiz_default`` (the emulator, ``cps`` 10: every
Celery worker paces its calls through the account's budget in the store) and defers to
``VobizCallHangupTrigger`` until the callee hangs up. A reminder has done its job when the phone rang:
answered, busy and unanswered calls all succeed (``success_statuses``), with the call record in XCom. Two
retries cover a worker killed mid-task; a retry finds the call its earlier try placed and does not dial
again (``redial="failed"``, the default).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from vobiz_provider.operators.call import VobizCallOperator

with DAG(
    dag_id="vobiz_cluster_reminders",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_tasks=1000,
    params={"recipients": Param([], type="array")},
) as dag:

    @task(retries=0)
    def recipients(**context: Any) -> list[str]:
        """The numbers to remind, from the run's conf."""
        return [str(number) for number in context["params"]["recipients"]]

    VobizCallOperator.partial(
        task_id="call",
        from_number="+14155550100",
        message="This is your appointment reminder from the Vobiz provider's scale test.",
        ring_timeout=60,
        time_limit=600,
        timeout=1800,
        poll_interval=1,
        deferrable=True,
        success_statuses=("completed", "busy", "no-answer"),
        retries=2,
        retry_delay=timedelta(seconds=2),
    ).expand(to=recipients())
