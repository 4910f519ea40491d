"""Inbound calls under a real triggerer: two watchers of one shared stream (one poll), two DAGs.

* ``vobiz_e2e_inbound_ack`` runs for each press of 1 on ``e2e-line`` (the incident line);
* ``vobiz_e2e_inbound_calls`` runs for each call to ``e2e-line``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from vobiz_provider.triggers.inbound import VobizInboundCallTrigger

PRESSED_1 = Asset(
    "vobiz://e2e/pressed-1",
    watchers=[
        AssetWatcher(
            name="e2e_pressed_1",
            trigger=VobizInboundCallTrigger(
                application="e2e-line", kinds=["digits"], digits=["1"], poll_interval=1.0
            ),
        )
    ],
)
CALLED = Asset(
    "vobiz://e2e/called",
    watchers=[
        AssetWatcher(
            name="e2e_called",
            trigger=VobizInboundCallTrigger(application="e2e-line", kinds=["call"], poll_interval=1.0),
        )
    ],
)


def _payloads(events: Any, asset: Asset) -> list[dict[str, Any]]:
    return [dict((event.extra or {}).get("payload") or {}) for event in (events or {}).get(asset, [])]


with DAG(
    dag_id="vobiz_e2e_inbound_ack", schedule=[PRESSED_1], start_date=datetime(2025, 1, 1), catchup=False
):

    @task
    def acknowledge(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        return _payloads(triggering_asset_events, PRESSED_1)

    acknowledge()


with DAG(dag_id="vobiz_e2e_inbound_calls", schedule=[CALLED], start_date=datetime(2025, 1, 1), catchup=False):

    @task
    def record(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        return _payloads(triggering_asset_events, CALLED)

    record()
