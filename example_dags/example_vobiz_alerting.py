"""
### Phone the on-call engineer when a data-quality check fails, and escalate until someone acknowledges

`check_orders` checks today's orders file (the demo file `data/orders.csv`, shipped next to this DAG, has
two bad rows, so the check fails every time). When it fails:

1. **Notifier.** Its `on_failure_callback`, a `VobizNotifier`, phones the team's on-call line at once and
   reads out a spoken summary: which check failed, in which DAG, and why. The notifier does not wait for
   the call: it is a heads-up, and Airflow callbacks should not block. If Airflow runs the callback twice,
   the line is still phoned once (the notifier deduplicates its calls in the callback store).
2. **Escalation.** `page_primary` (`trigger_rule="one_failed"`) phones the primary engineer, says what
   failed and asks them to **press 1 to acknowledge**, or **press 2 to be connected to the secondary
   on-call** at once (a `<Dial>`, recorded). With `expected_digits=["1", "2"]` the task succeeds when they
   acknowledge, or when they pressed 2 and the secondary answered; no answer, a busy line, another key, no
   key at all, or a secondary who did not pick up fails it. Its result (XCom) says how the connection went:
   `dial_status`, `dial_b_leg_uuid`, `dial_hangup_cause` and the bridge's `recording_url`.
3. `page_secondary` (`trigger_rule="one_failed"`, downstream of `page_primary`) then phones the secondary
   engineer the same way. When the primary acknowledged, it is skipped.

Neither paging task retries: the escalation moves on to the next person instead of ringing the same one
again. When the check passes, both paging tasks are skipped and nobody is phoned.

**The run still fails.** `publish_orders` is the real consumer of the checked data and depends on the check
(`all_success`). When the check fails it is `upstream_failed`, and since it is a leaf task the DAG run ends
`failed`, whether or not someone acknowledged the page: the data problem is still there. (Had the paging
tasks been the only leaves, an acknowledged page would have made the run look successful.)

The spoken messages need the Vobiz callback receiver (`callback_base_url` of the `vobiz_default` connection
or `[vobiz] callback_base_url`): it serves the message and the keypad prompt and records the key pressed.
Phone numbers are DAG params with demo defaults. Nothing here talks to Vobiz or reads the connection while
the DAG file is parsed.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException

from vobiz_provider.notifications.vobiz import VobizNotifier
from vobiz_provider.operators.call import VobizCallOperator

#: The demo orders file, shipped next to this file (two of its rows are bad).
ORDERS_CSV = Path(__file__).resolve().parent / "data" / "orders.csv"

#: Said to the primary and the secondary engineer; ``{{ ... }}`` is rendered when the task runs.
PAGE_MESSAGE = (
    "This is Airflow. The data quality check check orders failed in {{ dag.dag_id }}, "
    "run {{ dag_run.logical_date.strftime('%B %d') if dag_run.logical_date else run_id }}."
)
ACKNOWLEDGE = {
    "prompt": "Press 1 to acknowledge and take the incident.",
    "num_digits": 1,
    "timeout": 15,
    "no_input_message": "No acknowledgement received. Escalating. Goodbye.",
}
#: The primary may also hand over at once: 2 connects them to the secondary (the call is recorded).
ACKNOWLEDGE_OR_CONNECT = {
    **ACKNOWLEDGE,
    "prompt": "Press 1 to acknowledge and take the incident, or 2 to be connected to the secondary on-call.",
    "connect": {
        "2": {
            "to": "{{ params.secondary }}",
            "message": "Connecting you to the secondary on-call engineer.",
            "timeout": 30,
            "record": True,
        }
    },
}

with DAG(
    dag_id="example_vobiz_alerting",
    description="Phone on-call when a data-quality check fails; escalate until someone presses 1",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "vobiz", "alerting"],
    doc_md=__doc__,
    params={
        "orders_file": Param(str(ORDERS_CSV), type="string", description="Orders CSV to check"),
        "from_number": Param("+14155550100", type="string", description="Caller ID (E.164)"),
        "oncall_line": Param("+14155550120", type="string", description="Team on-call line (notifier)"),
        "primary": Param("+14155550121", type="string", description="Primary on-call engineer"),
        "secondary": Param("+14155550122", type="string", description="Secondary on-call engineer"),
    },
) as dag:

    @task(
        retries=0,
        on_failure_callback=VobizNotifier(
            to="{{ params.oncall_line }}",
            from_number="{{ params.from_number }}",
            message=(
                "Data quality check {{ ti.task_id }} failed in {{ dag.dag_id }}. "
                "{{ (exception | default('', true) | string)[:300] }}"
            ),
            ring_timeout=30,
            time_limit=120,
        ),
    )
    def check_orders(params: dict[str, Any]) -> int:
        """Fail when any order has a missing or non-positive amount."""
        path = Path(params["orders_file"])
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        bad = []
        for row in rows:
            try:
                ok = float(row["amount"]) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                bad.append(row["order_id"])
        if bad:
            # AirflowFailException: retrying would not fix the data.
            raise AirflowFailException(
                f"{len(bad)} of {len(rows)} orders have a missing or negative amount: "
                f"orders {', '.join(bad)}."
            )
        print(f"All {len(rows)} orders passed the check")
        return len(rows)

    @task
    def publish_orders(checked: int) -> None:
        """The consumer of the checked data; runs only when the check passed."""
        print(f"Publishing {checked} orders")

    page_primary = VobizCallOperator(
        task_id="page_primary",
        to="{{ params.primary }}",
        from_number="{{ params.from_number }}",
        message=PAGE_MESSAGE,
        gather=ACKNOWLEDGE_OR_CONNECT,
        expected_digits=["1", "2"],
        ring_timeout=30,
        time_limit=120,
        deferrable=True,
        retries=0,
        trigger_rule="one_failed",
    )
    page_secondary = VobizCallOperator(
        task_id="page_secondary",
        to="{{ params.secondary }}",
        from_number="{{ params.from_number }}",
        message=PAGE_MESSAGE + " The primary on-call engineer did not acknowledge.",
        gather=ACKNOWLEDGE,
        expected_digits="1",
        ring_timeout=30,
        time_limit=120,
        deferrable=True,
        retries=0,
        trigger_rule="one_failed",
    )

    checked = check_orders()
    publish_orders(checked)
    checked >> page_primary >> page_secondary
