"""Crash of the task process at each point of ``VobizCallOperator.execute``, then the retry: no double dial.

Each injected crash is one task instance: try 1 runs in a process of its own and dies by SIGKILL at one point
(``_crash_zygote.POINTS``): before the placement, before ``POST /Call/``, after it before the fired call
is recorded, after that before waiting or deferring, in ``defer``, while waiting in the worker, in the
process resuming after the deferral, and once the call's end is in the ledger but not yet reported; with
``wait_for_completion=False`` (fire and forget), before ``POST /Call/``, after it, after the record and
after marking the try as returning its call, before it returns. Try 2,
the retry Airflow runs (same dag/run/task/map index, try number + 1), then runs in a new process, through
its own deferral if it defers. The emulator (real HTTP on loopback, in this process) and the real store
(SQLite file or PostgreSQL schema) are shared by both tries, as Vobiz and the callback store are in
production.

Checked per task instance: the emulator received exactly one ``POST /Call/`` for its destination (more is a
double dial), and the retry ended with the real outcome of that one call - its XCom value names the call and
``completed``, or it failed with ``VobizCallFailedError`` carrying the call's ``busy``/``no-answer`` status
- and the ledger holds that call with that status. Fire and forget, the retry returns the value a try
returns once Vobiz accepted the call, naming that one call, and the ledger holds it. Outcomes, crash
points and the three modes (waiting in the worker, deferrable, fire and forget) rotate over the crashes.

The operator runs as Airflow's worker runs it - a fresh process per try, ``execute`` with a context whose
``ti`` names the try, the trigger in another process (the triggerer's part), ``execute_complete`` in a third
- but without the Airflow task runner and metadata DB: the operator reads nothing else of the context. No
receiver: the wait polls the Vobiz API, and the store holds the placements and fired calls the retry
resumes from.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _dagtest import answer_url  # noqa: F401 (fixture)
from _figures import Figures, record, size

from vobiz_provider.ledger import CallLedger
from vobiz_provider.models.record import normalise_destination
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vobiz_provider.testing import EmulatorHandle

ZYGOTE = Path(__file__).with_name("_crash_zygote.py")
CALLER = "+14155550100"
DAG_ID = "crash_faults"
TASK_ID = "call"
#: Longest a single try (or trigger) may take: generous for a loaded 2-core machine.
JOB_TIMEOUT = 120.0

IN_WORKER, DEFERRABLE, FIRE = "in-worker", "deferrable", "fire-and-forget"
#: (mode, crash point): every point of execute, in each mode (waiting in the worker, deferring, or
#: ``wait_for_completion=False``) where it exists.
COMBOS: tuple[tuple[str, str], ...] = (
    (IN_WORKER, "before-open"),
    (IN_WORKER, "before-post"),
    (IN_WORKER, "after-post"),
    (IN_WORKER, "after-record"),
    (IN_WORKER, "waiting"),
    (DEFERRABLE, "before-post"),
    (DEFERRABLE, "after-post"),
    (DEFERRABLE, "after-record"),
    (DEFERRABLE, "deferring"),
    (DEFERRABLE, "resuming"),
    (IN_WORKER, "after-outcome"),
    (DEFERRABLE, "after-outcome"),
    (FIRE, "before-post"),
    (FIRE, "after-post"),
    (FIRE, "after-record"),
    (FIRE, "after-settle"),
)
#: The callee's behaviour: answered and hung up (task succeeds), busy and no answer (task fails).
OUTCOMES: dict[str, CallScript] = {
    "completed": CallScript.answered(after=0.05, talk_for=0.2),
    "busy": CallScript.busy(after=0.2),
    "no-answer": CallScript.no_answer(after=0.2),
}


class Zygote:
    """``_crash_zygote.py`` as a subprocess: runs each job in a forked task process (see its docstring)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.jobs = itertools.count()
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(workdir / "zygote.log", "w", encoding="utf-8"),  # noqa: SIM115 (closed by the child)
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert self._line(timeout=JOB_TIMEOUT) == {"ready": True}

    def _line(self, *, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"no answer from the task process within {timeout} s: {self.log_tail()}")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the zygote exited: {self.log_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def log_tail(self) -> str:
        return (self.workdir / "zygote.log").read_text(encoding="utf-8")[-4000:]

    def run(self, job: dict[str, Any], env: dict[str, str | None]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run ``job`` in a new task process; returns (how it ended, what it wrote)."""
        out = self.workdir / f"job-{next(self.jobs)}.json"
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"env": env, "job": job, "out": str(out)}) + "\n")
        self.process.stdin.flush()
        ended = self._line(timeout=JOB_TIMEOUT)
        result = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
        return ended, result

    def stop(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    """One zygote for both stores (its imports take seconds); its process group is killed should it
    outlive the module."""
    started = Zygote(tmp_path_factory.mktemp("task-processes"))
    try:
        yield started
    finally:
        try:
            started.stop()
        finally:
            if started.process.poll() is None:
                os.killpg(started.process.pid, signal.SIGKILL)


def run_try(
    zyg: Zygote, job: dict[str, Any], env: dict[str, str | None], *, crash: str | None
) -> tuple[bool, dict[str, Any]]:
    """Run one try as Airflow would: execute, and when it defers, the trigger then the resumption, each in a
    process of its own. Returns (killed, final result)."""
    ended, result = zyg.run({**job, "phase": "execute", "crash": crash}, env)
    if "signal" in ended:
        return True, result
    assert ended == {"exit": 0}, f"task process failed: {ended} {zyg.log_tail()}"
    if result["kind"] != "deferred":
        return False, result
    ended, fired = zyg.run({"phase": "trigger", "trigger": result["trigger"]}, env)
    assert ended == {"exit": 0} and fired["kind"] == "event", f"trigger failed: {ended} {zyg.log_tail()}"
    ended, result = zyg.run({**job, "phase": "resume", "crash": crash, "event": fired["event"]}, env)
    if "signal" in ended:
        return True, result
    assert ended == {"exit": 0}, f"resuming task process failed: {ended} {zyg.log_tail()}"
    return False, result


def real_outcome_matches(result: dict[str, Any], call: Any, *, fire: bool) -> bool:
    """Whether the retry's result is the outcome the emulator gave ``call`` (fire and forget: that the
    call was placed - the value a try returns once Vobiz accepted it, naming that call)."""
    if fire:
        value = result.get("value")
        return (
            result.get("kind") == "returned"
            and isinstance(value, dict)
            and value.get("request_uuid") == call.request_uuid
            and value.get("request_uuids") == [call.request_uuid]
            and normalise_destination(str(value.get("to"))) == normalise_destination(call.to)
            and value.get("from_number") == CALLER
        )
    if result.get("kind") == "returned":
        value = result["value"]
        return (
            isinstance(value, dict)
            and call.status == "completed"
            and value.get("status") == "completed"
            and value.get("call_uuid") == call.call_uuid
        )
    if result.get("kind") == "failed":
        calls = result["calls"]
        return (
            call.status != "completed"
            and len(calls) == 1
            and calls[0].get("status") == call.status
            and calls[0].get("call_uuid") == call.call_uuid
        )
    return False


@dataclass
class Tally:
    """What the crashes of one store came to (the row's figures)."""

    killed: int = 0
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    double_dials: int = 0
    wrong: list[str] = field(default_factory=list)


def crash_and_retry(
    i: int,
    *,
    store_kind: str,
    zyg: Zygote,
    emulator: EmulatorHandle,
    ledger: CallLedger,
    answer: str,
    env: dict[str, str | None],
    tally: Tally,
) -> None:
    """Crash #``i``: try 1 killed at its point, the retry run to its end, the outcome checked."""
    mode, point = COMBOS[i % len(COMBOS)]
    fire = mode == FIRE
    outcomes = list(OUTCOMES)
    outcome = outcomes[(i + i // len(COMBOS)) % len(outcomes)]
    to = f"+1415666{i:04d}"
    emulator.script(to, OUTCOMES[outcome])
    job = {
        "dag_id": DAG_ID,
        "run_id": f"{store_kind}-{i}",
        "task_id": TASK_ID,
        "to": to,
        "from_number": CALLER,
        "answer_url": answer,
        "deferrable": mode == DEFERRABLE,
        "wait": not fire,
    }
    was_killed, _ = run_try(zyg, {**job, "try_number": 1}, env, crash=point)
    assert was_killed, f"crash {i} ({point}, {mode}) was not injected"
    tally.killed += 1
    retry_killed, result = run_try(zyg, {**job, "try_number": 2}, env, crash=None)
    assert not retry_killed

    posts = [
        r
        for r in emulator.requests
        if r.method == "POST"
        and r.path.endswith("/Call/")
        and normalise_destination(str(r.body.get("to"))) == normalise_destination(to)
    ]
    tally.double_dials += max(0, len(posts) - 1)
    calls = [c for c in emulator.calls.values() if normalise_destination(c.to) == normalise_destination(to)]
    if len(calls) == 1 and real_outcome_matches(result, calls[0], fire=fire):
        tally.acknowledged += 1
    else:
        tally.lost += 1
        tally.wrong.append(f"#{i} {point} {mode} {outcome}: {len(posts)} POST(s), {result}")
    attempts = ledger.find_attempts(dag_id=DAG_ID, run_id=job["run_id"], task_id=TASK_ID, before_try=3)
    tally.duplicated += max(0, len({r.call_uuid or r.request_uuid for r in attempts}) - 1)
    # Fire and forget: nothing learns how the call ends, so the ledger holds it as placed.
    if calls and any(
        (r.call_uuid or r.request_uuid) == calls[0].call_uuid and (fire or r.status == calls[0].status)
        for r in attempts
    ):
        tally.stored += 1


@pytest.mark.timeout(900)
def test_task_crash_then_retry_never_dials_twice(
    store_kind: str,
    fault_store_url: str,
    vobiz_emulator: EmulatorHandle,
    answer_url: str,  # noqa: F811 (fixture)
    zygote: Zygote,
) -> None:
    crashes = size(ci=len(COMBOS), full=4 * len(COMBOS))
    ledger = CallLedger(fault_store_url)
    ledger.upgrade()
    env: dict[str, str | None] = {
        "AIRFLOW_CONN_VOBIZ_DEFAULT": vobiz_emulator.connection_json(),
        "AIRFLOW__VOBIZ__CALLBACK_STORE": fault_store_url,
        "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": None,  # no receiver: the wait polls the Vobiz API
        "AIRFLOW__VOBIZ__REQUIRE_SIGNATURES": "true",
    }
    tally = Tally()
    started = time.monotonic()
    try:
        for i in range(crashes):
            crash_and_retry(
                i,
                store_kind=store_kind,
                zyg=zygote,
                emulator=vobiz_emulator,
                ledger=ledger,
                answer=answer_url,
                env=env,
                tally=tally,
            )
    finally:
        ledger.dispose()
    elapsed = time.monotonic() - started
    figures = record(
        Figures(
            scenario="task crash + retry",
            store=store_kind,
            sent=tally.killed,
            acknowledged=tally.acknowledged,
            stored=tally.stored,
            lost=tally.lost,
            duplicated=tally.duplicated,
            double_dials=tally.double_dials,
            note=f"{tally.killed} SIGKILLs, {len(COMBOS)} crash point x mode pairs, 3 outcomes; "
            f"{elapsed:.0f} s",
        )
    )
    assert not tally.wrong, "\n".join(tally.wrong)
    assert figures.clean and tally.killed == crashes == tally.acknowledged == tally.stored
