"""End to end under real Airflow: ``airflow standalone`` (scheduler, DAG processor, API server with the
``VobizPlugin`` receiver, triggerer, LocalExecutor) runs ``tests/e2e/dags/vobiz_e2e_call.py`` against the
emulator, a separate process on loopback.

The flow checked: the ``call`` task stores its message, fires the call at the emulator and defers; while the
phone rings the task instance is DEFERRED; the emulator posts the ring callback, fetches the answer XML,
posts the pressed key (gather) and the hangup to ``/vobiz`` on the API server (the plugin), which serves the
message the worker stored and stores every callback; the triggerer's ``VobizCallHangupTrigger`` follows the
call in the store (ringing, answered, digits, hangup), the task resumes and pushes the call record; ``report``
reads it from XCom; the DAG run succeeds. Everything is observed from outside, through Airflow's REST API and
the emulator's control API.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from _e2e_leak_scan import scan_for_leaks
from _ledger_helpers import bare_url

from vobiz_provider.phone_masking import mask_number
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from _processes import EmulatorProcess
    from _standalone import StandaloneAirflow

pytestmark = [pytest.mark.slow, pytest.mark.airflow_db, pytest.mark.timeout(420)]

DAG_ID = "vobiz_e2e_call"
TO = "+14155550101"
BUSY_TO = "+14155550102"
#: Seconds the phone rings before the callee answers: the window in which the task must be seen DEFERRED.
RING_SECONDS = 12.0
#: Seconds each spoken text takes (message, prompt, reply): long enough for the trigger's 1 s polls to see
#: "answered" before the key is pressed.
SPEAK_SECONDS = 2.0
#: Seconds the DAG processor gets to register the DAG file.
PARSE_TIMEOUT = 90.0
#: Seconds from triggering the runs to their end (the answered call lasts ~20 s; the rest is scheduling).
RUN_TIMEOUT = 180.0
KINDS = ("ring", "answer", "gather", "hangup")
TERMINAL_RUN_STATES = {"success", "failed"}


def _value(entry: dict[str, Any]) -> Any:
    """The value of an XCom entry returned by the REST API (native JSON, or a JSON string)."""
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def _wait_for_dag(airflow: StandaloneAirflow) -> None:
    deadline = time.monotonic() + PARSE_TIMEOUT
    while time.monotonic() < deadline:
        response = airflow.api.get(f"/dags/{DAG_ID}")
        if response.status_code == 200:
            return
        errors = airflow.get("/importErrors")
        if errors.get("total_entries"):
            pytest.fail(f"the e2e DAG failed to import: {json.dumps(errors, indent=1)}", pytrace=False)
        time.sleep(1.0)
    pytest.fail(
        f"the DAG processor did not register {DAG_ID} within {PARSE_TIMEOUT:.0f} s\n"
        f"{airflow.describe_run(DAG_ID, None)}",
        pytrace=False,
    )


def _trigger(airflow: StandaloneAirflow, conf: dict[str, Any]) -> str:
    response = airflow.api.post(f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    assert response.status_code == 200, response.text
    return response.json()["dag_run_id"]


def _watch(
    airflow: StandaloneAirflow, emulator: EmulatorProcess, run_ids: list[str], *, sampled: str, to: str
) -> tuple[dict[str, str], list[tuple[float, str | None, str | None]]]:
    """Poll the runs to their end.

    Returns each run's last state, and samples ``(seconds, state of the call task, emulator status of the
    call to ``to``)`` of the ``sampled`` run, the phone's status taken only while the task is DEFERRED.
    """
    started = time.monotonic()
    states = dict.fromkeys(run_ids, "queued")
    samples: list[tuple[float, str | None, str | None]] = []
    while time.monotonic() - started < RUN_TIMEOUT:
        try:
            for run_id in run_ids:
                states[run_id] = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
            tis = airflow.get(f"/dags/{DAG_ID}/dagRuns/{sampled}/taskInstances")["task_instances"]
            call_state = next((ti["state"] for ti in tis if ti["task_id"] == "call"), None)
            phone = None
            if call_state == "deferred":
                phone = next((c["status"] for c in emulator.remote.calls() if c["to"] == to), None)
        except httpx.TimeoutException:
            continue  # a busy API server; the runs' deadline still applies
        if not samples or samples[-1][1:] != (call_state, phone):
            samples.append((round(time.monotonic() - started, 1), call_state, phone))
        if all(state in TERMINAL_RUN_STATES for state in states.values()):
            break
        time.sleep(0.5)
    return states, samples


def _call_to(emulator: EmulatorProcess, to: str) -> dict[str, Any]:
    calls = [call for call in emulator.remote.calls() if call["to"] == to]
    assert len(calls) == 1, f"expected one call to {to}, got {calls}"
    return calls[0]


def test_deferred_call_resumes_from_the_plugin_receiver_under_a_real_triggerer(
    standalone_airflow: StandaloneAirflow, emulator_process: EmulatorProcess
) -> None:
    airflow, emulator = standalone_airflow, emulator_process
    # The callee answers after RING_SECONDS, listens, presses 1; the receiver's reply XML hangs up.
    answered = CallScript(
        outcome="completed",
        ring_after=0.2,
        answer_after=RING_SECONDS,
        talk_for=None,
        digits="1",
        media_seconds=SPEAK_SECONDS,
    )
    emulator.remote.reset()
    emulator.remote.script(TO, answered)
    emulator.remote.script(BUSY_TO, CallScript.busy(1.0))
    _wait_for_dag(airflow)
    airflow.api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()

    # A second run, at the same time, calls a busy line: its task must fail (no retries are configured).
    run_id = _trigger(airflow, {"to": TO})
    busy_run_id = _trigger(airflow, {"to": BUSY_TO})
    states, samples = _watch(airflow, emulator, [run_id, busy_run_id], sampled=run_id, to=TO)
    state = states[run_id]

    def diagnostics(run: str = run_id) -> str:
        return (
            f"runs: {states}\n(seconds, call task state, phone) samples: {samples}\n"
            f"{emulator.describe()}\n{airflow.describe_run(DAG_ID, run)}"
        )

    assert state == "success", f"the DAG run did not succeed\n{diagnostics()}"

    # The task gave up its worker slot while the phone rang.
    assert any(task_state == "deferred" and phone == "ringing" for _, task_state, phone in samples), (
        f"the call task was never seen DEFERRED while the phone rang\n{diagnostics()}"
    )

    # One call, placed once, answered, and ended by the receiver's reply XML after the key was pressed.
    call = _call_to(emulator, TO)
    assert call["status"] == "completed", diagnostics()
    posts = [
        r for r in emulator.remote.requests() if r["method"] == "POST" and (r["body"] or {}).get("to") == TO
    ]
    assert len(posts) == 1, f"expected exactly one POST /Call/ to {TO}\n{diagnostics()}"

    # Every callback went to the plugin's receiver on the API server, which stored it (it answers 200 only
    # after committing; signatures are required) and served the message the worker had stored.
    callbacks = [c for c in emulator.remote.callbacks() if c["call_uuid"] == call["call_uuid"]]
    by_kind = {kind: [c for c in callbacks if c["kind"] == kind] for kind in KINDS}
    for kind in KINDS:
        attempts = by_kind[kind]
        assert attempts, f"no {kind} callback was sent\n{diagnostics()}"
        # Issued with credentials, so the emulator signed them as Vobiz does, and the receiver checked that.
        assert all(
            bare_url(c["url"]).startswith(f"{airflow.callback_base_url}/callbacks/{kind}?") for c in attempts
        )
        assert all("X-Vobiz-Signature-V3" in c["headers"] for c in attempts), attempts
        assert attempts[-1]["status"] == 200, f"the receiver refused the {kind} callback\n{diagnostics()}"
    answer_xml = by_kind["answer"][-1]["body"] or ""
    assert f"Hello {TO}, this is the end-to-end test" in answer_xml, answer_xml
    assert "<Gather" in answer_xml and "Press 1 to confirm." in answer_xml, answer_xml
    assert by_kind["gather"][-1]["fields"]["Digits"] == "1"

    # The call task resumed without using up a try and pushed the final call record.
    tis = {
        ti["task_id"]: ti
        for ti in airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    }
    assert tis["call"]["state"] == "success" and tis["call"]["try_number"] == 1, diagnostics()
    assert tis["report"]["state"] == "success", diagnostics()
    record = _value(
        airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/call/xcomEntries/return_value")
    )
    assert record["call_uuid"] == call["call_uuid"], diagnostics()
    assert record["request_uuid"] == call["request_uuid"]
    assert record["status"] == "completed"
    assert record["hangup_cause_code"] == call["hangup_cause_code"]
    assert record["digits"] == "1"
    assert record["source"] == "callback", f"the outcome did not come from the stored callbacks: {record}"

    # The downstream task read it from XCom.
    summary = _value(
        airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/report/xcomEntries/return_value")
    )
    assert summary == {
        key: record.get(key)
        for key in (
            "call_uuid",
            "request_uuid",
            "to",
            "status",
            "hangup_cause_code",
            "hangup_cause_name",
            "hangup_source",
            "duration",
            "digits",
        )
    }

    # The task's log holds the call's timeline: fired and deferred (worker), then ringing, answered, the key
    # and the hangup cause (written by the trigger in the triggerer; Airflow serves its trigger log file as
    # part of the task's log).
    log = airflow.task_log(DAG_ID, run_id, "call", 1)
    assert re.search(r"attempt=1\.log\.trigger\.\d+\.log", log), f"no trigger log among the sources:\n{log}"
    leg = re.escape(f"({call['call_uuid']})")
    to = re.escape(mask_number(TO))  # logs show numbers masked ([vobiz] mask_phone_numbers, on by default)
    timeline = {
        "fired": rf"Vobiz accepted the call to {to}: request_uuid {re.escape(call['request_uuid'])}",
        "deferred": rf"Deferring until the call to {to} hangs up",
        "waiting": r"Waiting for the Vobiz call .* reading the callback store",
        "ringing": rf"Call to {to} {leg}: ringing \(via callback\)",
        "answered": rf"Call to {to} {leg}: answered \(via callback\)",
        "hangup cause": (
            rf"Call to {to} {leg}: hung up \(status=completed, "
            rf"cause={re.escape(record['hangup_cause_name'])} {call['hangup_cause_code']}, .*"
            rf"duration=\d+s, .*via=callback\)"
        ),
    }
    expected = {**timeline, "digits": rf"Call to {to} {leg}: digits received: 1$"}
    lines = log.splitlines()
    found = {
        name: next((i for i, line in enumerate(lines) if re.search(pattern, line)), None)
        for name, pattern in expected.items()
    }
    missing = [name for name, index in found.items() if index is None]
    assert not missing, f"the task log lacks the {', '.join(missing)} line(s):\n{log}\n{diagnostics()}"
    order = [found[name] for name in timeline]
    assert order == sorted(order), f"the timeline is out of order:\n{log}"

    # No secret leaked anywhere Airflow wrote: the auth token (the connection's password) and the correlation
    # token (it lets anyone post callbacks for this task instance) are in no log of any component, no XCom
    # and no rendered template field.
    tokens = {t for c in emulator.remote.callbacks() for t in parse_qs(urlsplit(c["url"]).query).get("t", ())}
    assert tokens
    secrets = {"auth token": emulator.connection["password"], **{f"token {t[:8]}...": t for t in tokens}}
    call_ti = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/call")
    written = {
        str(path.relative_to(airflow.home)): path.read_text(encoding="utf-8", errors="replace")
        for path in [airflow.log_path, *(airflow.home / "logs").rglob("*.log")]
    }
    written["XCom call"] = json.dumps(record)
    written["XCom report"] = json.dumps(summary)
    written["rendered fields of call"] = json.dumps(call_ti.get("rendered_fields"))
    leaks = [
        f"{name} in {where}"
        for where, text in written.items()
        for name, secret in secrets.items()
        if secret in text
    ]
    assert not leaks, f"secrets leaked: {leaks}"
    assert TO not in log, "the task log shows the destination whole (it must be masked)"
    assert record["to"] == TO, "XCom keeps the destination whole"

    # The busy line failed its run: the trigger saw the busy hangup, and the resumed task raised
    # VobizCallFailedError naming the cause, in its first and only try.
    busy = _call_to(emulator, BUSY_TO)
    assert states[busy_run_id] == "failed", f"the busy run did not fail\n{diagnostics(busy_run_id)}"
    busy_tis = {
        ti["task_id"]: ti
        for ti in airflow.get(f"/dags/{DAG_ID}/dagRuns/{busy_run_id}/taskInstances")["task_instances"]
    }
    assert busy_tis["call"]["state"] == "failed" and busy_tis["call"]["try_number"] == 1, diagnostics(
        busy_run_id
    )
    assert busy_tis["report"]["state"] == "upstream_failed", diagnostics(busy_run_id)
    busy_log = airflow.task_log(DAG_ID, busy_run_id, "call", 1)
    code = busy["hangup_cause_code"]
    busy_to = re.escape(mask_number(BUSY_TO))
    for pattern in (
        rf"Call to {busy_to} \(\S+\): hung up \(status=busy, cause=[^,]* {code}, .*via=callback\)",
        rf"VobizCallFailedError: .*ended with status 'busy' \(hangup cause {code} ",
    ):
        assert re.search(pattern, busy_log), f"the busy task's log lacks {pattern!r}:\n{busy_log}"

    # Nothing the run wrote holds the callback secret or the auth token, in any encoding: the AIRFLOW_HOME
    # (task and trigger logs, standalone.log, the metadata DB table by table, the callback store) and the
    # emulator's output (tests/e2e/conftest.py::scan_for_leaks).
    scan = scan_for_leaks(airflow, emulator)
    counts = scan.counts
    print(
        f"e2e leak scan: {counts.files} files ({counts.bytes} bytes), {counts.tables} tables ({counts.rows} "
        f"rows; {scan.metadata_rows}), {counts.texts} texts: {len(scan.findings)} finding(s)"
    )
    assert all(
        scan.metadata_rows[table] for table in ("xcom", "rendered_task_instance_fields", "task_instance")
    )
    assert not scan.findings, "secrets found after the run:\n" + "\n".join(map(str, scan.findings))
