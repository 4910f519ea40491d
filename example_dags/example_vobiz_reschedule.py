"""
### Reschedule the patients who pressed 2

Scheduled on the asset `vobiz://example/reminder-answers`, which every reminder call of
`example_vobiz_reminders` updates when it ends: the asset event's `extra` carries the call's outcome
(`status`, `hangup_cause_code`/`_name`, `duration`, `digits`, the masked number, the `dag_id`/`run_id`/
`task_id`/`map_index` of the call) and the `outlet_extra` the reminders DAG gave each call (the patient and
the appointment).

`pick_patients` reads `triggering_asset_events` and keeps the calls where the patient pressed **2**: one
DAG run can carry several events (Airflow creates one run for the events that arrived since the last one),
so it handles a list. `book_new_slot` is where your booking system goes; here it prints the request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, task

#: The same asset as ``REMINDER_ANSWERS`` in ``example_vobiz_reminders.py`` (assets are equal by name).
REMINDER_ANSWERS = Asset("vobiz://example/reminder-answers")

#: The key that asks for a new appointment.
RESCHEDULE_KEY = "2"


def wants_new_slot(extras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls (asset-event extras) in which the patient pressed :data:`RESCHEDULE_KEY`."""
    return [
        {
            "patient": extra.get("patient"),
            "appointment": extra.get("appointment"),
            "call": extra.get("call_uuid"),
        }
        for extra in extras
        if extra.get("status") == "completed" and extra.get("digits") == RESCHEDULE_KEY
    ]


with DAG(
    dag_id="example_vobiz_reschedule",
    description="Book a new appointment for every patient who pressed 2 on a reminder call",
    schedule=[REMINDER_ANSWERS],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "vobiz"],
    doc_md=__doc__,
) as dag:

    @task
    def pick_patients(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """The patients to reschedule, from the asset events that started this run."""
        events = (triggering_asset_events or {}).get(REMINDER_ANSWERS, [])
        return wants_new_slot([dict(event.extra or {}) for event in events])

    @task
    def book_new_slot(patients: list[dict[str, Any]]) -> int:
        """Ask the booking system for a new slot for each patient (here: print it)."""
        for patient in patients:
            print(f"Reschedule {patient['patient']} (was {patient['appointment']}; call {patient['call']})")
        return len(patients)

    book_new_slot(pick_patients())
