"""``kill -9`` of the real ``airflow triggerer`` while many deferred calls wait, then a restart.

One Airflow deployment of separate processes (``tests/faults/_airflow_processes.py``: API server, DAG
processor, scheduler with the LocalExecutor, triggerer; SQLite metadata DB), the emulator as a process, and
``vobiz-callbacks serve`` as the receiver, per store (a SQLite file, a PostgreSQL schema). Per store:

1. The emulator holds every call ``queued`` (:meth:`RemoteEmulator.hold_calls`), so that no call can end
   before all of them are placed. ``tests/faults/dags/vobiz_faults_triggerer.py`` maps one deferrable
   ``VobizCallOperator`` task over :data:`CALLS` destinations; every task places its call and defers.
2. Once the metadata DB shows every task DEFERRED, each with its ``VobizCallHangupTrigger`` row, the
   triggerer's whole process group gets SIGKILL.
3. The calls are released: they ring, and are answered, busy or unanswered after realistic delays; the
   receiver stores their callbacks while no triggerer runs.
4. Once half of the calls have hung up, a new ``airflow triggerer`` starts. It takes over the dead one's
   triggers (after ``[triggerer] triggerer_health_check_threshold``); they read the store.

Then every task must end as its call did: a completed call makes the task succeed with the call record in
XCom (status and hangup cause as the emulator ended the call, read from the store's callbacks); a busy or
unanswered line fails it with that status and cause. Each destination is dialled exactly once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa
from _airflow_processes import AirflowProcesses, airflow_processes
from _callee_mix import realistic_script
from _figures import Figures, record, size
from _processes import EmulatorProcess, emulator_subprocess, free_port
from _receiver_server import serve_subprocess
from _waiting import wait_until

from vobiz_provider.ledger import get_ledger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _receiver_server import ServedReceiver

DAGS_DIR = Path(__file__).resolve().parent / "dags"
DAG_ID = "vobiz_faults_triggerer"
TRIGGER_CLASSPATH = "vobiz_provider.triggers.hangup.VobizCallHangupTrigger"
#: Deferred calls per store.
CALLS = size(ci=12, full=200)
TERMINAL_CALL_STATUSES = {"completed", "busy", "no-answer", "failed", "timeout", "cancel", "canceled"}
#: Seconds per task (placing its call, or resuming) allowed on top of a fixed allowance: 2 busy cores.
SECONDS_PER_TASK = 6.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.airflow_db,
    pytest.mark.timeout(int(900 + CALLS * 4 * SECONDS_PER_TASK)),
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with emulator_subprocess("--cps", "100", "--concurrency", "5000", "--log-level", "warning") as process:
        yield process


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorProcess
) -> Iterator[AirflowProcesses]:
    home = tmp_path_factory.mktemp("faults-airflow-home")
    with airflow_processes(home, dags=DAGS_DIR, connection=emulator.connection) as processes:
        yield processes


def _store_env(store_url: str, port: int) -> dict[str, str]:
    """The store and the receiver's URL, shared by the receiver, the scheduler's workers and the triggerer."""
    return {
        "AIRFLOW__VOBIZ__CALLBACK_STORE": store_url,
        "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": f"http://127.0.0.1:{port}/vobiz",
    }


def _wait_for_dag(airflow: AirflowProcesses) -> None:
    def parsed() -> bool:
        if airflow.api.get(f"/dags/{DAG_ID}").status_code == 200:
            return True
        errors = airflow.get("/importErrors")
        assert not errors.get("total_entries"), f"the DAG failed to import: {json.dumps(errors, indent=1)}"
        return False

    wait_until(
        parsed, timeout=180, interval=1.0, message=lambda: f"{DAG_ID} not parsed\n{airflow.describe()}"
    )


def _deferred(airflow: AirflowProcesses, run_id: str) -> tuple[int, int]:
    """(call tasks DEFERRED, Vobiz hangup triggers of this run's DEFERRED tasks) in the metadata DB."""
    ((tasks,),) = airflow.query(
        "SELECT COUNT(*) FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = 'call' "
        "AND state = 'deferred'",
        DAG_ID,
        run_id,
    )
    ((triggers,),) = airflow.query(
        "SELECT COUNT(DISTINCT t.id) FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.dag_id = ? AND ti.run_id = ? AND ti.task_id = 'call' AND ti.state = 'deferred' "
        "AND t.classpath = ?",
        DAG_ID,
        run_id,
        TRIGGER_CLASSPATH,
    )
    return int(tasks), int(triggers)


def _task_instances(airflow: AirflowProcesses, run_id: str) -> dict[int, dict[str, Any]]:
    body = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
    return {ti["map_index"]: ti for ti in body["task_instances"] if ti["task_id"] == "call"}


def _xcom(airflow: AirflowProcesses, run_id: str, map_index: int) -> Any:
    response = airflow.api.get(
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/call/xcomEntries/return_value",
        params={"map_index": map_index},
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    value = response.json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def _failure(airflow: AirflowProcesses, run_id: str, map_index: int) -> str:
    """The exception(s) the task's log reports (``exc_type: exc_value``), from its log file."""
    folder = airflow.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=call"
    found = []
    for path in sorted((folder / f"map_index={map_index}").glob("attempt=*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            for error in entry.get("error_detail") or () if isinstance(entry, dict) else ():
                if isinstance(error, dict):
                    found.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
    return "\n".join(found)


def _outcome_matches(ti: dict[str, Any], call: dict[str, Any], xcom: Any, failure: str) -> tuple[bool, str]:
    """Whether the task ended as its call did: (right, what was seen)."""
    status, code = call["status"], call["hangup_cause_code"]
    if status == "completed":
        right = (
            ti["state"] == "success"
            and isinstance(xcom, dict)
            and xcom.get("call_uuid") == call["call_uuid"]
            and xcom.get("status") == "completed"
            and xcom.get("hangup_cause_code") == code
            and xcom.get("source") == "callback"
        )
        return right, f"state {ti['state']}, XCom {xcom}"
    expected = f"ended with status '{status}' (hangup cause {code} "
    right = ti["state"] == "failed" and "VobizCallFailedError" in failure and expected in failure
    return right, f"state {ti['state']}, error {failure!r}"


def _store_figures(store_url: str, calls: list[dict[str, Any]]) -> tuple[int, int]:
    """(calls whose hangup the store holds, from a callback, with the emulator's status; calls whose hangup
    callback is stored more than once)."""
    ledger = get_ledger(store_url)
    records = {r.call_uuid: r for r in ledger.lookup(call_uuids=[c["call_uuid"] for c in calls])}
    stored = sum(
        1
        for call in calls
        if (found := records.get(call["call_uuid"])) is not None
        and found.status == call["status"]
        and found.hangup_cause_code == call["hangup_cause_code"]
        and found.source == "callback"
    )
    with ledger.engine.connect() as db:
        rows = db.execute(
            sa.text(
                "SELECT call_uuid, COUNT(*) FROM vobiz_callback_events WHERE kind = 'hangup' "
                "GROUP BY call_uuid"
            )
        ).all()
    duplicated = sum(1 for _, count in rows if count > 1)
    return stored, duplicated


def test_triggerer_kill_9_with_deferred_calls_waiting(
    store_kind: str, fault_store_url: str, airflow: AirflowProcesses, emulator: EmulatorProcess
) -> None:
    began = time.monotonic()
    remote = emulator.remote
    prefix = "+91981" if store_kind == "sqlite" else "+91982"
    destinations = [f"{prefix}{index:07d}" for index in range(CALLS)]
    remote.reset()
    for index, destination in enumerate(destinations):
        remote.script(destination, realistic_script(index))
    remote.hold_calls()

    port = free_port()
    store_env = _store_env(fault_store_url, port)
    receiver: ServedReceiver
    with serve_subprocess({**airflow.env, **store_env}, "--port", str(port)) as receiver:
        try:
            _run_scenario(
                airflow, emulator, receiver, store_env, store_kind, fault_store_url, destinations, began
            )
        finally:
            airflow.stop("triggerer", grace=5)
            airflow.stop("scheduler", grace=5)
            remote.release_calls()


def _run_scenario(
    airflow: AirflowProcesses,
    emulator: EmulatorProcess,
    receiver: ServedReceiver,
    store_env: dict[str, str],
    store_kind: str,
    store_url: str,
    destinations: list[str],
    began: float,
) -> None:
    remote = emulator.remote
    calls_n = len(destinations)
    airflow.start("scheduler", "scheduler", env=store_env)
    airflow.start("triggerer", "triggerer", env=store_env)
    airflow.wait_for_job("scheduler", "SchedulerJob")
    first_triggerer = airflow.wait_for_job("triggerer", "TriggererJob")
    _wait_for_dag(airflow)
    airflow.api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()

    response = airflow.api.post(
        f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"destinations": destinations}}
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]

    def diagnostics() -> str:
        try:
            states = Counter(ti["state"] for ti in _task_instances(airflow, run_id).values())
        except httpx.HTTPError as exc:
            states = Counter({f"unreadable: {exc}": 1})
        return (
            f"task states: {dict(states)}\nreceiver stderr (tail):\n{receiver.stderr[-3000:]}\n"
            f"{airflow.describe()}\n{emulator.describe()[-6000:]}"
        )

    # 1. Every task has placed its call (held queued at the emulator) and deferred.
    def all_deferred() -> tuple[int, int] | None:
        try:
            tasks, triggers = _deferred(airflow, run_id)
        except Exception:  # the metadata DB is being written; look again
            return None
        return (tasks, triggers) if tasks >= calls_n and triggers >= calls_n else None

    deferred_tasks, waiting_triggers = wait_until(
        all_deferred,
        timeout=120 + calls_n * SECONDS_PER_TASK,
        interval=1.0,
        message=lambda: f"not all {calls_n} call tasks deferred\n{diagnostics()}",
    )
    held = [call for call in remote.calls() if call["to"] in set(destinations)]
    assert len(held) == calls_n and all(call["status"] == "queued" for call in held), diagnostics()

    # 2. kill -9 the triggerer (its supervisor and trigger runner), mid-wait.
    airflow.kill("triggerer")
    killed_at = time.time()
    deferred_at_kill = time.monotonic() - began

    # 3. The calls go on without a triggerer; the receiver stores their callbacks.
    remote.release_calls()

    def ended() -> list[dict[str, Any]]:
        return [c for c in remote.calls() if c["status"] in TERMINAL_CALL_STATUSES]

    wait_until(
        lambda: len(ended()) >= calls_n / 2,
        timeout=180,
        interval=0.5,
        message=lambda: f"half of the calls did not end\n{diagnostics()}",
    )

    # 4. A new triggerer takes over the dead one's triggers.
    airflow.start("triggerer", "triggerer", env=store_env)
    restarted_at = time.time()
    airflow.wait_for_job("triggerer", "TriggererJob", newer_than=first_triggerer)

    def run_ended() -> str | None:
        try:
            state: str = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        except httpx.HTTPError:
            return None
        return state if state in ("success", "failed") else None

    wait_until(
        run_ended,
        timeout=300 + calls_n * SECONDS_PER_TASK,
        interval=2.0,
        message=lambda: f"the run did not end after the triggerer restart\n{diagnostics()}",
    )
    finished_after_restart = time.time() - restarted_at

    # What the emulator did, per destination.
    calls = {call["to"]: call for call in remote.calls() if call["to"] in set(destinations)}
    posts = Counter(
        (request.get("body") or {}).get("to")
        for request in remote.requests()
        if request["method"] == "POST" and request["path"].endswith("/Call/")
    )
    double_dials = sum(max(0, posts[destination] - 1) for destination in destinations)
    callbacks = [c for c in remote.callbacks() if c["call_uuid"] in {c["call_uuid"] for c in calls.values()}]
    unexpected_5xx = sum(1 for c in callbacks if (c["status"] or 0) >= 500)
    hangups_while_down = sum(
        1
        for c in callbacks
        if c["kind"] == "hangup"
        and c["status"] == 200
        and killed_at <= datetime.fromisoformat(c["sent_at"]).timestamp() < restarted_at
    )

    # What every task ended with.
    tis = _task_instances(airflow, run_id)
    wrong = []
    for index, destination in enumerate(destinations):
        ti, call = tis.get(index), calls.get(destination)
        if ti is None or call is None:
            wrong.append(f"{destination}: task {ti is not None}, call {call is not None}")
            continue
        xcom = _xcom(airflow, run_id, index) if ti["state"] == "success" else None
        failure = _failure(airflow, run_id, index) if ti["state"] != "success" else ""
        right, seen = _outcome_matches(ti, call, xcom, failure)
        if not right or ti["try_number"] != 1:
            wrong.append(
                f"{destination}: the call ended {call['status']} ({call['hangup_cause_code']}); "
                f"the task: {seen}, try {ti['try_number']}"
            )
    stored, duplicated = _store_figures(store_url, list(calls.values()))
    outcomes = Counter(call["status"] for call in calls.values())

    figures = record(
        Figures(
            scenario="triggerer kill -9",
            store=store_kind,
            sent=calls_n,
            acknowledged=calls_n - len(wrong),
            stored=stored,
            lost=len(wrong),
            duplicated=duplicated,
            double_dials=double_dials,
            unexpected_5xx=unexpected_5xx,
            note=(
                f"{waiting_triggers} triggers waiting at the kill ({deferred_at_kill:.0f} s in); "
                f"{hangups_while_down} hangups stored while down ({restarted_at - killed_at:.0f} s); "
                f"all tasks done {finished_after_restart:.0f} s after the restart; "
                + ", ".join(f"{n} {s}" for s, n in sorted(outcomes.items()))
            ),
        )
    )
    assert deferred_tasks >= calls_n and waiting_triggers >= calls_n
    assert not wrong, "tasks whose outcome is not their call's:\n" + "\n".join(wrong) + f"\n{diagnostics()}"
    assert figures.clean, figures
    assert stored == calls_n, f"{calls_n - stored} hangups are not in the store\n{diagnostics()}"
    assert duplicated == 0
    assert hangups_while_down > 0, "no hangup callback arrived while the triggerer was down"
    assert set(outcomes) == {"completed", "busy", "no-answer"}, outcomes
