"""
### Daily appointment reminders by phone

Every morning, phone each patient who has an appointment, say when it is, and ask them to press **1** to
confirm or **2** to reschedule. A last task prints who confirmed, who wants to reschedule, who did not pick
up and whose line was busy.

**How it works**

* `read_recipients` reads a CSV file (`name,phone,appointment`; the demo file
  `data/reminders.csv` ships next to this DAG, the `recipients_file` param points elsewhere) and builds one
  entry per row: the number to call and the sentence to say.
* `call` is **one mapped task per recipient** (`VobizCallOperator.partial(...).expand_kwargs(...)`). No
  XML to host: the operator stores the message and the keypad prompt in the callback store and the Vobiz
  callback receiver serves them when the call is answered (so the `callback_base_url` of the `vobiz_default`
  connection, or `[vobiz] callback_base_url`, must be set). The wait for the hangup is **deferred**: no
  worker slot is held while phones ring.
* **Pacing:** `max_active_tis_per_dagrun` caps how many calls are in flight at once (Airflow counts deferred
  task instances against it), and the connection's `cps` extra paces `POST /Call/` within each worker
  process to the account's calls-per-second limit. To cap calls across several DAGs, add a pool with
  `include_deferred=True` and pass `pool=` to `partial()`.
* **Busy and no answer are outcomes, not failures.** For a reminder campaign, a line that was busy or a
  patient who did not pick up is something to report, not a broken pipeline, so the calls use
  `success_statuses=("completed", "busy", "no-answer")`: every call task succeeds with its call record in
  XCom and the summary sees them all. A call Vobiz could not place at all (invalid number, no balance) still
  fails its task, is retried once, and shows up in the summary as "call failed". (If you would rather have
  Airflow re-dial busy lines, leave `success_statuses` at its default and set `retries`: the summary then
  lists those as "call failed" too, since a failed task leaves no XCom.)
* **Answers as asset events:** each call task has `outlets=[REMINDER_ANSWERS]`; when it succeeds, the asset
  event's `extra` holds the call's outcome (status, hangup cause, duration, the key pressed, the masked
  number, the DAG/run/task/map index) plus the row's `outlet_extra` (the patient's name and appointment,
  never the phone number). The DAG `example_vobiz_reschedule` is scheduled on that asset: a patient who
  pressed **2** starts it, and it books them a new slot.
* `summarise` runs whatever happened (`trigger_rule="all_done"`) and prints one line per recipient; its
  return value (XCom) holds the counts.

Nothing here talks to Vobiz or reads the connection while the DAG file is parsed.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from vobiz_provider.operators.call import VobizCallOperator

#: The demo list of recipients, shipped next to this file.
RECIPIENTS_CSV = Path(__file__).resolve().parent / "data" / "reminders.csv"

#: The answers of the reminder calls, one asset event per call (``example_vobiz_reschedule`` runs on it).
REMINDER_ANSWERS = Asset("vobiz://example/reminder-answers")

#: What each key means in the summary.
ANSWERS = {"1": "confirmed", "2": "reschedule"}

with DAG(
    dag_id="example_vobiz_reminders",
    description="Phone every patient with an appointment, ask them to confirm, and summarise the answers",
    schedule="0 9 * * *",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["example", "vobiz"],
    doc_md=__doc__,
    params={
        "recipients_file": Param(
            str(RECIPIENTS_CSV),
            type="string",
            description="CSV file with the columns name, phone, appointment",
        ),
        "from_number": Param("+14155550100", type="string", description="Caller ID (E.164)"),
        "clinic": Param("Example Clinic", type="string", description="Who is calling"),
    },
) as dag:

    @task
    def read_recipients(params: dict[str, Any]) -> list[dict[str, str]]:
        """One ``{"to", "message", "outlet_extra"}`` per CSV row: the keyword arguments of one mapped call."""
        path = Path(params["recipients_file"])
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        calls = []
        for line, row in enumerate(rows, start=2):
            missing = [
                column for column in ("name", "phone", "appointment") if not (row.get(column) or "").strip()
            ]
            if missing:
                raise ValueError(f"{path}, line {line}: missing {', '.join(missing)}")
            calls.append(
                {
                    "to": row["phone"].strip(),
                    # Built here, from data: values mapped from XCom are not rendered as Jinja templates.
                    "message": (
                        f"Hello {row['name'].strip()}. This is {params['clinic']}, reminding you of your "
                        f"appointment on {row['appointment'].strip()}."
                    ),
                    # Who this call was for, in the asset event (the number there is masked).
                    "outlet_extra": {
                        "patient": row["name"].strip(),
                        "appointment": row["appointment"].strip(),
                    },
                }
            )
        print(f"{len(calls)} reminder call(s) to place")
        return calls

    recipients = read_recipients()

    calls = VobizCallOperator.partial(
        task_id="call",
        from_number="{{ params.from_number }}",
        gather={
            "prompt": "Press 1 to confirm, or 2 to reschedule.",
            "num_digits": 1,
            "timeout": 10,
            "no_input_message": "We did not get your answer. We will contact you again. Goodbye.",
        },
        success_statuses=("completed", "busy", "no-answer"),
        ring_timeout=30,
        time_limit=180,
        deferrable=True,
        max_active_tis_per_dagrun=5,
        retries=1,
        retry_delay=timedelta(minutes=5),
        outlets=[REMINDER_ANSWERS],
    ).expand_kwargs(recipients)

    @task(trigger_rule="all_done")
    def summarise(recipients: list[dict[str, str]], records: list[dict[str, Any]]) -> dict[str, int]:
        """Print one line per recipient and return how many calls ended each way.

        ``records`` holds the call record of every call task that succeeded, in map-index order; a call
        task that failed left none, and is reported as "call failed".
        """

        def number(phone: str | None) -> str:
            return "".join(char for char in phone or "" if char.isdigit())

        by_index = {record.get("map_index"): record for record in records}
        by_number = {number(record.get("to")): record for record in records}
        counts: dict[str, int] = {}
        lines = []
        for index, recipient in enumerate(recipients):
            record = by_index.get(index) or by_number.get(number(recipient["to"]))
            if record is None:
                outcome, detail = "call failed", "see the log of the call task"
            elif record["status"] == "completed":
                digits = record.get("digits")
                outcome = ANSWERS.get(
                    digits or "", f"pressed {digits}" if digits else "answered, no key pressed"
                )
                detail = f"{record.get('duration')} s"
            else:
                outcome = record["status"]
                detail = f"hangup cause {record.get('hangup_cause_code')} {record.get('hangup_cause_name')}"
            counts[outcome] = counts.get(outcome, 0) + 1
            lines.append(f"{recipient['to']:<16} {outcome:<26} {detail}")
        print("Reminder calls:\n" + "\n".join(lines))
        print("Totals: " + ", ".join(f"{outcome}: {count}" for outcome, count in sorted(counts.items())))
        return counts

    summarise(recipients, calls.output)
