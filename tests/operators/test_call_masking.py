"""Phone numbers in a real task's log are masked by default and whole with ``[vobiz] mask_phone_numbers =
false``; XCom and the callback store keep them whole either way (``dag.test()``, the emulator as Vobiz, the
standalone receiver storing its callbacks)."""

from __future__ import annotations

import datetime
import json
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import DAG

from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.airflow_db

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLER = "+919800000100"
TO = "+919876543210"


@pytest.mark.parametrize(("setting", "masked"), [(None, True), ("false", False)], ids=["default", "off"])
def test_logs_mask_numbers_xcom_and_store_keep_them_whole(
    setting: str | None,
    masked: bool,
    monkeypatch: pytest.MonkeyPatch,
    vobiz_emulator: Any,
    callback_receiver: str,
    dag_runner: Any,
    answer_url: str,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    if setting is None:
        monkeypatch.delenv("AIRFLOW__VOBIZ__MASK_PHONE_NUMBERS", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__VOBIZ__MASK_PHONE_NUMBERS", setting)
    vobiz_emulator.script(TO, CallScript.busy(0.05))
    with DAG(dag_id=f"vobiz_masking_{masked}", schedule=None, start_date=START, catchup=False) as dag:
        VobizCallOperator(
            task_id="call", to=TO, from_number=CALLER, answer_url=answer_url, poll_interval=0.05, timeout=30
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("failed", 1)
    log = "".join(capfd.readouterr())
    shown_to, shown_from = ("+91******3210", "+91******0100") if masked else (TO, CALLER)
    for line in (
        f"Placing a Vobiz call from {shown_from} to {shown_to}",
        f"Vobiz accepted the call to {shown_to}",
        f"Call to {shown_to} (",  # the trigger's timeline
        f"Vobiz call to {shown_to} (",  # the exception that failed the task
    ):
        assert line in log, line
    if masked:
        assert TO not in log and CALLER not in log
    # The store keeps the numbers whole (the call's data), whatever the logs show.
    with sqlite3.connect(tmp_path / "callbacks.db") as conn:
        stored = conn.execute("SELECT destination, from_number FROM vobiz_calls").fetchall()
        forms = [json.loads(row[0]) for row in conn.execute("SELECT fields FROM vobiz_callback_events")]
    conn.close()
    assert (TO, CALLER) in stored or (TO.lstrip("+"), CALLER.lstrip("+")) in stored, stored
    assert any(form.get("To", "").lstrip("+") == TO.lstrip("+") for form in forms), forms


def test_xcom_keeps_numbers_whole(
    monkeypatch: pytest.MonkeyPatch, vobiz_emulator: Any, dag_runner: Any, answer_url: str
) -> None:
    monkeypatch.delenv("AIRFLOW__VOBIZ__MASK_PHONE_NUMBERS", raising=False)
    with DAG(dag_id="vobiz_masking_xcom", schedule=None, start_date=START, catchup=False) as dag:
        VobizCallOperator(
            task_id="call", to=TO, from_number=CALLER, answer_url=answer_url, wait_for_completion=False
        )

    dag_run = dag_runner.run(dag)

    xcom = dag_runner.xcoms(dag_run, "call")[-1]
    assert (xcom["to"], xcom["from_number"]) == (TO, CALLER)
