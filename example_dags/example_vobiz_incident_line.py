"""
### The incident line: call in, press 1, the incident is acknowledged

The on-call engineer phones the incident line (a Vobiz number whose application's answer URL is the
callback receiver's `/inbound/incident-line`). The receiver answers with the application's VobizXML, "press
1 to acknowledge the incident", and stores the call and the key pressed. The triggerer's
`VobizInboundCallTrigger`, watching the asset `vobiz://inbound/incident-line`, turns each press of **1**
into an asset event, and this DAG runs for it and acknowledges the incident.

**Set up**

1. Configure the application (`airflow.cfg` `[vobiz]` or the environment, on the API server / receiver):

   ```bash
   export AIRFLOW__VOBIZ__INBOUND_APPLICATIONS='{"incident-line": {
     "message": "This is the incident line.",
     "gather": {"prompt": "Press 1 to acknowledge the incident.", "num_digits": 1,
                "reply_message": "The incident is acknowledged. Goodbye."}}}'
   ```

2. Print the URLs and paste them into the Vobiz console (Applications → your application: answer URL and
   hangup URL, method POST), then attach the incident number to the application:

   ```bash
   vobiz-callbacks inbound-url incident-line
   ```

The asset event's payload (`triggering_asset_events[...][i].extra["payload"]`) holds the call's
`call_uuid`, the masked caller number, the `digits` and `event_id`. A run can carry several events (Airflow
gives an event that arrives while the previous one's run is being queued to the next run): `acknowledge`
handles every event of the run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from vobiz_provider.triggers.inbound import VobizInboundCallTrigger

#: Updated once for each press of 1 on the incident line.
INCIDENT_ACKNOWLEDGED = Asset(
    "vobiz://inbound/incident-line",
    watchers=[
        AssetWatcher(
            name="incident_line_pressed_1",
            trigger=VobizInboundCallTrigger(application="incident-line", kinds=["digits"], digits=["1"]),
        )
    ],
)


def acknowledgements(extras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One acknowledgement per key press event (an event delivered twice after a crash counts once)."""
    seen: dict[str, dict[str, Any]] = {}
    for extra in extras:
        payload = extra.get("payload") or {}
        if payload.get("digits") == "1" and payload.get("call_uuid"):
            seen.setdefault(
                payload["call_uuid"],
                {"call_uuid": payload["call_uuid"], "caller": payload.get("from_number")},
            )
    return list(seen.values())


with DAG(
    dag_id="example_vobiz_incident_line",
    description="Acknowledge the incident when the on-call engineer calls the incident line and presses 1",
    schedule=[INCIDENT_ACKNOWLEDGED],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "vobiz"],
    doc_md=__doc__,
) as dag:

    @task
    def acknowledge(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Acknowledge the incident for each press of 1 (here: print it; call your incident tool)."""
        events = (triggering_asset_events or {}).get(INCIDENT_ACKNOWLEDGED, [])
        acks = acknowledgements([dict(event.extra or {}) for event in events])
        for ack in acks:
            print(f"Incident acknowledged by {ack['caller']} (call {ack['call_uuid']})")
        return acks

    acknowledge()
