"""
### Retrying a phone call: automatic retries and clearing in the UI

`call_customer` phones a customer and says that their parcel arrives tomorrow, then waits (deferred) for
the hangup. `log_delivery_notice` records how the call went.

**A call that is not answered fails its task.** Busy, no answer, rejected or failed calls raise
`VobizCallFailedError`, naming the status and the hangup cause. With `retries=2` Airflow dials again after
`retry_delay`; when the retries are used up the task stays failed, and **clearing it in the UI** (Grid view,
select the task instance, *Clear*) dials again, as a fresh try.

**A call that succeeded is never dialled twice.** Every call the operator places is recorded in the Vobiz
callback store under its task instance and try. Airflow 3 clears XCom before each new try, so a later try
(a retry, or a clear) looks in the store first:

* the earlier try's call **succeeded** (for example you cleared `call_customer` together with its
  downstream task, or the worker died after the call ended): the task returns that call's record without
  dialling (`redial="always"` would call again);
* the earlier call is **still up** (the worker was lost mid-call): the task waits for that call instead of
  ringing the customer a second time;
* the earlier call **failed**: the task dials again.

So clearing a whole DAG run to rerun a downstream task is safe for the customer. The message and the
numbers come from DAG params (demo defaults); the spoken message is served by the Vobiz callback receiver
(`callback_base_url` of the `vobiz_default` connection or `[vobiz] callback_base_url`). Nothing here talks
to Vobiz or reads the connection while the DAG file is parsed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from vobiz_provider.operators.call import VobizCallOperator

with DAG(
    dag_id="example_vobiz_retry",
    description="Phone a customer; retry or clear re-dials an unanswered call, never a successful one",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "vobiz"],
    doc_md=__doc__,
    params={
        "to": Param("+14155550181", type="string", description="Customer to call (E.164)"),
        "from_number": Param("+14155550100", type="string", description="Caller ID (E.164)"),
        "shop": Param("Example Shop", type="string", description="Who is calling"),
    },
) as dag:
    call_customer = VobizCallOperator(
        task_id="call_customer",
        to="{{ params.to }}",
        from_number="{{ params.from_number }}",
        message=(
            "Hello, this is {{ params.shop }}. Your parcel will be delivered tomorrow between nine and noon. "
            "Goodbye."
        ),
        ring_timeout=30,
        time_limit=120,
        deferrable=True,
        retries=2,
        retry_delay=timedelta(minutes=2),
    )

    @task
    def log_delivery_notice(call: dict[str, Any]) -> str:
        """Record that the customer was told (the final call record comes from XCom)."""
        notice = (
            f"Delivery notice given to {call['to']} by phone (try {call.get('try_number')}, "
            f"{call.get('duration')} s, call {call.get('call_uuid')})"
        )
        print(notice)
        return notice

    log_delivery_notice(call_customer.output)
