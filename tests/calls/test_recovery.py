"""A retry after a try that died around ``POST /Call/``: it finds the call instead of dialling again.

Regression tests of the crash fault scenario (``tests/faults/test_task_crash.py``), against the emulator over
loopback HTTP and a SQLite ledger, with the operator run in-process. The dead try is reproduced by doing
exactly what it did before dying: opening its placement, and (or not) ``POST /Call/`` through the hook,
without recording the call. Before the fix, the retry dialled a second time in each case: it only looked
for calls an earlier try had recorded.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from _waiting import wait_until

from vobiz_provider.calls.outcome import SuccessRule
from vobiz_provider.calls.recovery import CLOCK_SLACK, find_placed_calls, recover_unrecorded_calls
from vobiz_provider.calls.resumption import decide_fired_resume, decide_resume
from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.exceptions import LedgerUnavailableError, VobizCallFailedError, VobizError
from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.ledger import dispose_ledgers, get_ledger
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.models.record import CallRecord
from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.testing import EmulatorHandle

CALLER = "+14155550100"
TO = "+14155550177"
ANSWER_URL = "https://example.com/answer.xml"
log = logging.getLogger("test_recovery")


@pytest.fixture
def ledger(
    vobiz_emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CallLedger]:
    """The ledger the operator uses (``[vobiz] callback_store``), no receiver; the emulator is Vobiz."""
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{tmp_path / 'callbacks.db'}")
    monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "true")
    ledger = get_ledger()
    ledger.upgrade()
    yield ledger
    dispose_ledgers()


def _token(try_number: int, run_id: str = "r1") -> CorrelationToken:
    return CorrelationToken(dag_id="alerts", run_id=run_id, task_id="call", try_number=try_number)


def _run(try_number: int, run_id: str = "r1", **kwargs: Any) -> Any:
    """Run the task's ``execute`` as try ``try_number`` waits in the worker (as a retry would)."""
    operator = VobizCallOperator(
        task_id="call",
        to=TO,
        from_number=CALLER,
        answer_url=ANSWER_URL,
        deferrable=False,
        poll_interval=0.05,
        timeout=60,
        **kwargs,
    )
    ti = SimpleNamespace(dag_id="alerts", run_id=run_id, task_id="call", map_index=-1, try_number=try_number)
    return operator.execute({"ti": ti})  # type: ignore[arg-type]


def _posts(emulator: EmulatorHandle) -> list[Any]:
    return [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/Call/")]


def _die_after_post(ledger: CallLedger, try_number: int = 1, run_id: str = "r1") -> str:
    """What a try that died right after Vobiz accepted its call did: opened its placement, POSTed."""
    ledger.open_placement(_token(try_number, run_id), destinations=1, expires_at=time.time() + 3600)
    hook = VobizHook()
    try:
        fired = hook.make_call(MakeCallRequest.build(from_number=CALLER, to=TO, answer_url=ANSWER_URL))
    finally:
        hook.close()
    return fired.request_uuids[0]


@pytest.mark.parametrize("stage", ["queued", "live", "ended"])
def test_a_retry_finds_the_call_a_dead_try_placed_and_did_not_record(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger, stage: str
) -> None:
    # Found among the queued (ringing) calls, the live calls, or the CDRs, wherever it is by then.
    talk = {"queued": 0.5, "live": 0.8, "ended": 0.05}[stage]
    vobiz_emulator.script(TO, CallScript.answered(after=0.6 if stage == "queued" else 0.05, talk_for=talk))
    uuid = _die_after_post(ledger)
    want = {"queued": ("queued", "ringing"), "live": ("in-progress",), "ended": ("completed",)}[stage]
    wait_until(lambda: vobiz_emulator.calls[uuid].status in want, what=f"the call {stage}")

    result = _run(try_number=2)

    assert len(_posts(vobiz_emulator)) == 1  # before the fix: 2, the callee rang twice
    assert result["call_uuid"] == uuid and result["status"] == "completed"
    [stored] = ledger.find_attempts(dag_id="alerts", run_id="r1", task_id="call", before_try=3)
    assert (stored.call_uuid, stored.try_number, stored.status) == (uuid, 1, "completed")


def test_the_recovery_log_lines_mask_the_numbers(
    vobiz_emulator: EmulatorHandle,
    ledger: CallLedger,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("AIRFLOW__VOBIZ__MASK_PHONE_NUMBERS", raising=False)
    vobiz_emulator.script(TO, CallScript.answered(talk_for=0.05))
    uuid = _die_after_post(ledger)
    wait_until(lambda: vobiz_emulator.calls[uuid].status == "completed", what="the call ended")
    # Another task instance (run r2) dialled the same number and died before POST /Call/: the call the
    # first recovery recorded (by its request UUID only) is not taken for r2's - r2 dials.
    ledger.open_placement(_token(3, "r2"), destinations=1, expires_at=time.time() + 3600)
    hook = VobizHook()
    try:
        with caplog.at_level(logging.INFO, logger="test_recovery"):
            found = recover_unrecorded_calls(
                hook=hook,
                ledger=ledger,
                reader=ledger,
                correlation=_token(2),
                destinations=[TO],
                from_number=CALLER,
                log=log,
            )
            none = recover_unrecorded_calls(
                hook=hook,
                ledger=ledger,
                reader=ledger,
                correlation=_token(4, "r2"),
                destinations=[TO],
                from_number=CALLER,
                log=log,
            )
    finally:
        hook.close()
    assert (found, none) == (1, 0)
    assert uuid in caplog.text  # the "found" line
    assert "knows no call" in caplog.text  # the "never dialled" line
    assert "+1******0177" in caplog.text and "+1******0100" in caplog.text
    assert TO not in caplog.text and CALLER not in caplog.text


def test_a_retry_dials_when_the_dead_try_never_reached_vobiz(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger
) -> None:
    vobiz_emulator.script(TO, CallScript.answered())
    ledger.open_placement(_token(1), destinations=1, expires_at=time.time() + 3600)  # then died

    result = _run(try_number=2)

    [post] = _posts(vobiz_emulator)
    assert post.body["to"] == TO and result["status"] == "completed" and result["to"] == TO


def test_another_tasks_call_to_the_same_number_is_not_taken_for_the_dead_trys(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger
) -> None:
    # Another task instance called the same number from the same caller ID, and recorded its call.
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=0.6))
    other = _die_after_post(ledger, run_id="other")
    ledger.register_fired_calls(
        request_uuids=[other], destinations=[TO], from_number=CALLER, correlation=_token(1, "other")
    )
    ledger.open_placement(_token(1), destinations=1, expires_at=time.time() + 3600)  # ours died before POST

    result = _run(try_number=2)

    assert len(_posts(vobiz_emulator)) == 2
    assert result["call_uuid"] != other and result["status"] == "completed"


def test_when_vobiz_cannot_be_asked_the_retry_does_not_dial(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger
) -> None:
    vobiz_emulator.script(TO, CallScript.answered())
    ledger.open_placement(_token(1), destinations=1, expires_at=time.time() + 3600)
    vobiz_emulator.inject_fault(method="GET", path_contains="/Call/", status=401, count=None)

    with pytest.raises(VobizError, match="not dialling, so that the callee is not called twice"):
        _run(try_number=2)

    assert _posts(vobiz_emulator) == []


def test_find_placed_calls_matches_caller_destination_and_time(vobiz_emulator: EmulatorHandle) -> None:
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=0.05))
    hook = VobizHook()
    try:
        mine = hook.make_call(MakeCallRequest.build(from_number=CALLER, to=TO, answer_url=ANSWER_URL))
        hook.make_call(MakeCallRequest.build(from_number="+14155550999", to=TO, answer_url=ANSWER_URL))
        hook.make_call(MakeCallRequest.build(from_number=CALLER, to="+14155550178", answer_url=ANSWER_URL))
        wait_until(lambda: all(c.finished for c in vobiz_emulator.calls.values()), what="calls ended")
        import datetime as dt

        now = dt.datetime.now(dt.timezone.utc)
        found = find_placed_calls(hook, destinations=[TO.lstrip("+")], from_number=CALLER, since=now)
        later = now + dt.timedelta(seconds=CLOCK_SLACK + 60)
        too_late = find_placed_calls(hook, destinations=[TO], from_number=CALLER, since=later)
    finally:
        hook.close()
    assert [(c.uuid, c.to) for c in found] == [(mine.request_uuids[0], TO.lstrip("+"))]
    assert too_late == []  # placed long before the dead try opened its placement: not its call


def test_a_failed_call_whose_try_died_is_reported_once_then_the_next_retry_dials(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger
) -> None:
    vobiz_emulator.script(TO, CallScript.busy())
    uuid = _die_after_post(ledger)
    ledger.register_fired_calls(
        request_uuids=[uuid], destinations=[TO], from_number=CALLER, correlation=_token(1)
    )
    wait_until(lambda: vobiz_emulator.calls[uuid].finished, what="the busy call ended")
    # Its end reached the ledger (the receiver stored the hangup); try 1 died before failing with it.
    ledger.cache_api_result(
        CallRecord(
            call_uuid=uuid, request_uuid=uuid, to=TO, status="busy", terminal=True, hangup_cause_code=3010
        )
    )

    with pytest.raises(VobizCallFailedError, match="busy") as failed:
        _run(try_number=2)
    assert failed.value.calls[0]["call_uuid"] == uuid
    assert len(_posts(vobiz_emulator)) == 1  # before the fix: try 2 dialled again, its outcome not the call's

    with pytest.raises(VobizCallFailedError, match="busy") as again:
        _run(try_number=3)  # the outcome was reported: a retry is for dialling again
    assert len(_posts(vobiz_emulator)) == 2
    assert again.value.calls[0]["call_uuid"] != uuid


def test_decide_resume_reports_an_unsettled_failure_and_dials_after_a_settled_one() -> None:
    busy = [CallRecord(call_uuid="c1", request_uuid="c1", to=TO, status="busy", terminal=True, try_number=1)]
    rule = SuccessRule(success_statuses=("completed",))
    unsettled = decide_resume(busy, try_number=2, rule=rule, settled=False)
    assert unsettled.action == "report" and "died before reporting it" in unsettled.message
    assert decide_resume(busy, try_number=2, rule=rule).action == "dial"
    done = [CallRecord(call_uuid="c1", to=TO, status="completed", terminal=True, try_number=1)]
    assert decide_resume(done, try_number=2, rule=rule, settled=False).action == "return"


# -- wait_for_completion=False (fire and forget) -------------------------------------------------------------
# Before the fix a fire-and-forget try recorded nothing: its retry dialled again in every case below.


def _fire(try_number: int, run_id: str = "r1", **kwargs: Any) -> Any:
    """Run the task's ``execute`` as try ``try_number`` with ``wait_for_completion=False``."""
    return _run(try_number, run_id, wait_for_completion=False, **kwargs)


def _fired_value(uuid: str) -> dict[str, Any]:
    """What a fire-and-forget try returns for the call ``uuid`` when an earlier try placed it."""
    return {"request_uuid": uuid, "request_uuids": [uuid], "to": TO, "from_number": CALLER, "api_id": None}


def test_fire_and_forget_records_and_settles_its_call(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger
) -> None:
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=0.05))

    result = _fire(try_number=1)

    [call] = vobiz_emulator.calls.values()
    assert result["request_uuid"] == call.request_uuid and result["api_id"]
    [stored] = ledger.find_attempts(dag_id="alerts", run_id="r1", task_id="call", before_try=2)
    assert (stored.request_uuid, stored.try_number) == (call.request_uuid, 1)
    state = ledger.last_placement(_token(1).ti_key, before_try=2)
    assert state is not None and state.registered_at is not None and state.settled_at is not None


@pytest.mark.parametrize("recorded", [False, True], ids=["died-after-post", "died-after-record"])
def test_a_fire_and_forget_retry_returns_the_call_a_dead_try_placed(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger, recorded: bool
) -> None:
    vobiz_emulator.script(TO, CallScript.busy(after=0.05))
    uuid = _die_after_post(ledger)
    if recorded:  # died after recording the call, before returning it
        ledger.register_fired_calls(
            request_uuids=[uuid], destinations=[TO], from_number=CALLER, correlation=_token(1)
        )
    # Its end is known (busy): the dead try would still have returned the call, so the retry does.
    wait_until(lambda: vobiz_emulator.calls[uuid].finished, what="the busy call ended")
    ledger.cache_api_result(
        CallRecord(call_uuid=uuid, request_uuid=uuid, to=TO, status="busy", terminal=True)
    )

    result = _fire(try_number=2)

    assert len(_posts(vobiz_emulator)) == 1  # before the fix: 2, the callee rang twice
    assert result == _fired_value(uuid)

    # That try returned it: a clear (try 3) dials again, as the call is known to have failed.
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=0.05))
    again = _fire(try_number=3)
    assert len(_posts(vobiz_emulator)) == 2 and again["request_uuid"] != uuid


def test_a_fire_and_forget_clear_after_a_returned_call(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger
) -> None:
    # The end of the call is not known (no VobizCallSensor waited for it): it may still ring, so a clear
    # returns it.
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=0.05))
    first = _fire(try_number=1)
    uuid = first["request_uuid"]
    assert _fire(try_number=2) == _fired_value(uuid)
    assert len(_posts(vobiz_emulator)) == 1
    # Known to have succeeded (a sensor recorded it): still returned; redial="always" dials again.
    wait_until(lambda: vobiz_emulator.calls[uuid].finished, what="the call ended")
    ledger.cache_api_result(
        CallRecord(call_uuid=uuid, request_uuid=uuid, to=TO, status="completed", terminal=True)
    )
    assert _fire(try_number=3) == _fired_value(uuid)
    assert len(_posts(vobiz_emulator)) == 1
    redialled = _fire(try_number=4, redial="always")
    assert len(_posts(vobiz_emulator)) == 2 and redialled["request_uuid"] != uuid


def test_fire_and_forget_does_not_dial_when_the_ledger_is_unreachable(
    vobiz_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", "postgresql://postgres@127.0.0.1:1/nowhere")
    monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "true")
    vobiz_emulator.script(TO, CallScript.answered())
    try:
        with pytest.raises(LedgerUnavailableError):
            _fire(try_number=1)
    finally:
        dispose_ledgers()

    assert _posts(vobiz_emulator) == []  # before the fix: dialled, with nothing for a retry to find


def test_decide_fired_resume_returns_a_dead_trys_call_and_follows_redial_after_a_returned_one() -> None:
    rule = SuccessRule(success_statuses=("completed",))
    busy = [CallRecord(call_uuid="c1", request_uuid="c1", to=TO, status="busy", terminal=True, try_number=1)]
    fired = [CallRecord(request_uuid="c1", to=TO, status="queued", terminal=False, try_number=1)]
    done = [CallRecord(call_uuid="c1", to=TO, status="completed", terminal=True, try_number=1)]
    for calls in (busy, fired, done):  # died before returning: return it, whatever it became or redial says
        dead = decide_fired_resume(calls, try_number=2, rule=rule, redial="always", settled=False)
        assert dead.action == "return" and "died before returning it" in dead.message
    assert decide_fired_resume(busy, try_number=2, rule=rule).action == "dial"
    assert decide_fired_resume(fired, try_number=2, rule=rule).action == "return"
    assert decide_fired_resume(done, try_number=2, rule=rule).action == "return"
    assert decide_fired_resume(fired, try_number=2, rule=rule, redial="always").action == "dial"
    assert decide_fired_resume(done, try_number=2, rule=rule, redial="always").action == "dial"
