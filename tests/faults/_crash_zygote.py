"""The task processes of the crash scenario (``test_task_crash.py``): one fork per try, killed where asked.

Run as a script, this is a *zygote*: it imports Airflow's task SDK and the provider once, with no thread
running, then reads one job per line on stdin (JSON ``{"env", "job", "out"}``), forks a child per job, waits
for it and prints one line: ``{"signal": n}`` when the child died of a signal, else ``{"exit": code}``. The
child is a task process as Airflow's worker would run it - a fresh process holding no state of an earlier
try - and it writes what happened to the file ``out``.

Jobs (``job["phase"]``):

* ``execute``: build the ``VobizCallOperator`` (``deferrable``; ``wait`` false: ``wait_for_completion=False``)
  and run ``execute`` with the context of try ``try_number``
  (the operator reads only ``context["ti"]``: dag_id, run_id, task_id, map_index, try_number). Writes
  ``returned`` (the XCom value), ``failed`` (``VobizCallFailedError``: its calls), ``error`` (any other
  exception) or ``deferred`` (the trigger, serialised as the triggerer receives it).
* ``trigger``: the triggerer's part: rebuild the trigger from its serialised form and run it until its
  first event (in this separate process); writes ``event``.
* ``resume``: a new task process resuming after the deferral: ``execute_complete(context, event)``.

The crash (``job["crash"]``) is installed in the child only, by wrapping the function at that point; the
child then sends itself SIGKILL - a real process death, nothing runs after it (no ``finally``, no
``on_kill``, no ledger write):

============== =========================================================================================
``before-open`` before the try opens its placement in the ledger (``CallPlacer._open``)
``before-post`` placement opened, before ``POST /Call/`` (``VobizHook.make_call``)
``after-post``  Vobiz accepted the call, before the fired call is recorded (after ``make_call`` returned)
``after-record`` the fired call is recorded, before waiting, deferring or (fire and forget) returning
              (after ``register_fired_calls``)
``deferring``   in ``defer`` (deferrable): the deferral never reaches Airflow
``waiting``     while waiting in the worker (``deferrable=False``): at the trigger's first look at the call
``resuming``    in the task process resuming after the deferral, at ``execute_complete``
``after-outcome`` the call's end is known and written to the ledger, before the task reports it
              (after ``cache_api_outcomes``): the retry finds the call ended, outcome unreported
``after-settle`` ``wait_for_completion=False``: the fired call is recorded and the try marked as about to
              return it, before it returns (after ``settle_calls``)
============== =========================================================================================
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import traceback
from typing import Any

# Everything a task process imports, loaded once here (the children are forks: they start warm).
import airflow.sdk  # noqa: F401
import httpx  # noqa: F401
import sqlalchemy  # noqa: F401
from airflow.sdk.exceptions import TaskDeferred

import vobiz_provider.calls.outcome
import vobiz_provider.calls.recovery
import vobiz_provider.ledger
import vobiz_provider.models.record
from vobiz_provider.calls.placement import CallPlacer
from vobiz_provider.exceptions import VobizCallFailedError
from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.triggers.hangup import VobizCallHangupTrigger

with contextlib.suppress(ImportError):  # without it, the PostgreSQL rows skip
    import psycopg2  # noqa: F401

#: Where each crash point is injected: (class, method name, die before the original runs?).
POINTS: dict[str, tuple[Any, str, bool]] = {
    "before-open": (CallPlacer, "_open", True),
    "before-post": (VobizHook, "make_call", True),
    "after-post": (VobizHook, "make_call", False),
    "after-record": (vobiz_provider.ledger.CallLedger, "register_fired_calls", False),
    "deferring": (VobizCallOperator, "defer", True),
    "waiting": (VobizCallHangupTrigger, "_observe", True),
    "resuming": (VobizCallOperator, "execute_complete", True),
    "after-outcome": (vobiz_provider.calls.outcome, "cache_api_outcomes", False),
    "after-settle": (vobiz_provider.ledger.CallLedger, "settle_calls", False),
}


def die() -> None:
    """Kill this process as ``kill -9`` would."""
    os.kill(os.getpid(), signal.SIGKILL)


def install_crash(point: str) -> None:
    """Wrap the function at ``point`` so that this process dies there (in this child only)."""
    owner, name, before = POINTS[point]
    original = getattr(owner, name)

    def crashing(*args: Any, **kwargs: Any) -> Any:
        if before:
            die()
        result = original(*args, **kwargs)
        die()
        return result

    setattr(owner, name, crashing)


def _operator(job: dict[str, Any]) -> VobizCallOperator:
    return VobizCallOperator(
        task_id=job["task_id"],
        to=job["to"],
        from_number=job["from_number"],
        answer_url=job["answer_url"],
        deferrable=job["deferrable"],
        wait_for_completion=job.get("wait", True),
        poll_interval=0.05,
        timeout=job.get("timeout", 60),
    )


def _context(job: dict[str, Any]) -> dict[str, Any]:
    from types import SimpleNamespace

    ti = SimpleNamespace(
        dag_id=job["dag_id"],
        run_id=job["run_id"],
        task_id=job["task_id"],
        map_index=-1,
        try_number=job["try_number"],
    )
    return {"ti": ti}


def _outcome(call: Any) -> dict[str, Any]:
    try:
        return {"kind": "returned", "value": call()}
    except TaskDeferred as deferred:
        classpath, kwargs = deferred.trigger.serialize()
        return {"kind": "deferred", "trigger": [classpath, kwargs]}
    except VobizCallFailedError as err:
        return {"kind": "failed", "calls": list(err.calls or ()), "message": str(err)}
    except Exception as err:
        return {
            "kind": "error",
            "type": type(err).__name__,
            "message": str(err),
            "trace": traceback.format_exc(),
        }


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in this (child) process; see the module docstring."""
    phase = job["phase"]
    if phase == "trigger":
        classpath, kwargs = job["trigger"]
        assert classpath.endswith(".VobizCallHangupTrigger"), classpath
        return {"kind": "event", "event": VobizCallHangupTrigger(**kwargs).run_in_process()}
    if job.get("crash"):
        install_crash(job["crash"])
    operator = _operator(job)
    context = _context(job)
    if phase == "execute":
        return _outcome(lambda: operator.execute(context))
    if phase == "resume":
        return _outcome(lambda: operator.execute_complete(context, job["event"]))
    raise ValueError(f"unknown phase {phase!r}")


def _child(request: dict[str, Any]) -> None:
    os.dup2(2, 1)  # stdout is the zygote's answer channel: whatever the task prints goes to stderr
    os.environ.update({k: v for k, v in request["env"].items() if v is not None})
    for name in [k for k, v in request["env"].items() if v is None]:
        os.environ.pop(name, None)
    result = run_job(request["job"])
    with open(request["out"], "w", encoding="utf-8") as out:
        json.dump(result, out, default=str)


def main() -> int:
    """Fork one child per job line; print how each ended."""
    assert threading.active_count() == 1, "the zygote must fork with no other thread running"
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the task process
            code = 0
            try:
                _child(request)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            print(json.dumps({"signal": os.WTERMSIG(status)}), flush=True)
        else:
            print(json.dumps({"exit": os.WEXITSTATUS(status)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
