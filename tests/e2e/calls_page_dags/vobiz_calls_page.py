"""The DAGs whose calls ``tests/e2e/test_calls_page.py`` looks at in the browser.

``vobiz_calls_page_a`` calls three numbers (a mapped task): the test's emulator scripts make one answer and
press 1, one busy, one never answer, so the run's chart has three outcomes; every outcome counts as done for
the task. ``vobiz_calls_page_b`` calls one number: the DAG a restricted user may not read.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from vobiz_provider.operators.call import VobizCallOperator

NUMBERS_A = ["+14155550111", "+14155550112", "+14155550113"]
NUMBER_B = "+14155550121"

for dag_id, numbers in (("vobiz_calls_page_a", NUMBERS_A), ("vobiz_calls_page_b", [NUMBER_B])):
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
        VobizCallOperator.partial(
            task_id="call",
            from_number="+14155550100",
            message="This is the calls page test of the Vobiz provider.",
            gather={"prompt": "Press 1 to confirm.", "num_digits": 1, "timeout": 5},
            success_statuses=("completed", "busy", "no-answer"),
            ring_timeout=30,
            time_limit=60,
            timeout=120,
            poll_interval=1,
            deferrable=True,
            retries=0,
        ).expand(to=numbers)
