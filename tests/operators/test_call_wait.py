"""VobizCallOperator, waiting for the hangup, end to end: ``dag.test()`` places the call with the emulator
(real HTTP on loopback), the emulator posts its callbacks to the standalone receiver, the receiver stores
them, and the hangup trigger (inline in ``dag.test()``, or in the worker) reads them from the store."""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from _ledger_helpers import bare_url
from airflow.sdk import DAG, task

from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.phone_masking import mask_number
from vobiz_provider.testing import CallScript

pytestmark = pytest.mark.airflow_db

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLER = "+14155550100"
#: Fast polling so that a test waits tens of milliseconds, not seconds, for each state change.
FAST = {"poll_interval": 0.05, "timeout": 30}

#: Records read by the downstream task (it runs in this process under dag.test()).
SEEN: list[Any] = []


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["t"][0]


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "in-worker"])
def test_completed_call_reaches_downstream_task(
    deferrable, vobiz_emulator, callback_receiver, dag_runner, answer_url, capfd
):
    to = "+14155550131"
    vobiz_emulator.script(to, CallScript.answered(after=0.05, talk_for=0.15))
    SEEN.clear()
    with _dag(f"vobiz_wait_completed_{deferrable}") as dag:
        call = VobizCallOperator(
            task_id="call", to=to, from_number=CALLER, answer_url=answer_url, deferrable=deferrable, **FAST
        )

        @task
        def outcome(record: dict[str, Any]) -> None:
            SEEN.append(record)

        outcome(call.output)

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 1)
    [post] = dag_runner.call_requests(vobiz_emulator)
    assert bare_url(post.body["hangup_url"]).startswith(f"{callback_receiver}/callbacks/hangup?t=")
    assert bare_url(post.body["ring_url"]).startswith(f"{callback_receiver}/callbacks/ring?t=")
    [emulated] = vobiz_emulator.calls.values()
    [record] = SEEN
    assert record["status"] == "completed"
    assert record["terminal"] is True
    assert record["to"].lstrip("+") == to.lstrip("+")
    assert record["call_uuid"] == emulated.call_uuid
    assert record["hangup_cause_code"] == emulated.hangup_cause_code
    assert record["source"] == "callback"
    assert (record["dag_id"], record["task_id"], record["try_number"]) == (dag.dag_id, "call", 1)
    assert dag_runner.xcoms(dag_run, "call")[-1] == record

    token = _token(post.body["hangup_url"])
    log = "".join(capfd.readouterr())
    assert f"Vobiz call to {mask_number(to)}" in log
    for secret in (token, vobiz_emulator.auth_token):
        assert secret not in log
        assert secret not in json.dumps(record)
        assert secret not in json.dumps(dag_runner.rendered_fields(dag_run))


@pytest.mark.parametrize(
    ("script", "status", "cause"),
    [
        (CallScript.busy(after=0.05), "busy", "3010 Busy Line"),
        (CallScript.no_answer(after=0.05), "no-answer", "3000 No Answer"),
    ],
    ids=["busy", "no-answer"],
)
def test_unsuccessful_call_fails_the_task_naming_status_and_cause(
    script, status, cause, vobiz_emulator, callback_receiver, dag_runner, answer_url, capfd
):
    to = "+14155550132"
    vobiz_emulator.script(to, script)
    with _dag(f"vobiz_wait_{status}") as dag:
        VobizCallOperator(
            task_id="call", to=to, from_number=CALLER, answer_url=answer_url, deferrable=True, **FAST
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("failed", 1)
    [emulated] = vobiz_emulator.calls.values()
    log = "".join(capfd.readouterr())
    assert "VobizCallFailedError" in log
    assert f"Vobiz call to {mask_number(to)}" in log
    assert f"ended with status '{status}' (hangup cause {cause}, hung up by {emulated.hangup_source})" in log


def test_retry_dials_again_after_a_busy_line(
    vobiz_emulator, callback_receiver, dag_runner, answer_url, capfd
):
    to = "+14155550133"
    vobiz_emulator.script(to, CallScript.busy(after=0.05))

    def callee_frees_the_line(context: Any) -> None:
        vobiz_emulator.script(to, CallScript.answered(after=0.05, talk_for=0.1))

    with _dag("vobiz_wait_retry_busy") as dag:
        VobizCallOperator(
            task_id="call",
            to=to,
            from_number=CALLER,
            answer_url=answer_url,
            deferrable=True,
            retries=1,
            retry_delay=datetime.timedelta(0),
            on_retry_callback=callee_frees_the_line,
            **FAST,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 2)
    assert len(dag_runner.call_requests(vobiz_emulator)) == 2
    statuses = sorted(call.status for call in vobiz_emulator.calls.values())
    assert statuses == ["busy", "completed"]
    record = dag_runner.xcoms(dag_run, "call")[-1]
    assert (record["status"], record["try_number"]) == ("completed", 2)
    assert "did not succeed" in "".join(capfd.readouterr())


def test_retry_while_the_call_is_up_waits_for_it(
    vobiz_emulator, callback_receiver, dag_runner, answer_url, capfd
):
    """Try 1 is killed (execution_timeout) while the callee is still talking; the retry must not ring
    the callee a second time but wait for the call try 1 placed."""
    to = "+14155550134"
    vobiz_emulator.script(to, CallScript.answered(after=0.05, talk_for=3.0))
    with _dag("vobiz_wait_retry_live") as dag:
        VobizCallOperator(
            task_id="call",
            to=to,
            from_number=CALLER,
            answer_url=answer_url,
            deferrable=False,
            execution_timeout=datetime.timedelta(seconds=1.5),
            retries=4,
            retry_delay=datetime.timedelta(0),
            **FAST,
        )

    dag_run = dag_runner.run(dag)

    state, try_number = dag_runner.states(dag_run)[("call", -1)]
    assert state == "success"
    assert try_number >= 2
    assert len(dag_runner.call_requests(vobiz_emulator)) == 1
    record = dag_runner.xcoms(dag_run, "call")[-1]
    assert (record["status"], record["try_number"]) == ("completed", 1)
    assert "is still up" in "".join(capfd.readouterr())


def _fail_first_try_after_execute(context: Any, result: Any) -> None:
    if context["ti"].try_number == 1:
        raise RuntimeError("the worker was lost after the call ended")


@pytest.mark.parametrize(("redial", "calls"), [("failed", 1), ("always", 2)])
def test_retry_after_a_successful_call(
    redial, calls, vobiz_emulator, callback_receiver, dag_runner, answer_url, capfd
):
    to = "+14155550135"
    vobiz_emulator.script(to, CallScript.answered(after=0.05, talk_for=0.1))
    with _dag(f"vobiz_wait_retry_after_success_{redial}") as dag:
        VobizCallOperator(
            task_id="call",
            to=to,
            from_number=CALLER,
            answer_url=answer_url,
            deferrable=True,
            redial=redial,
            retries=1,
            retry_delay=datetime.timedelta(0),
            post_execute=_fail_first_try_after_execute,
            **FAST,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 2)
    assert len(dag_runner.call_requests(vobiz_emulator)) == calls
    record = dag_runner.xcoms(dag_run, "call")[-1]
    assert record["status"] == "completed"
    assert record["try_number"] == (1 if redial == "failed" else 2)
    log = "".join(capfd.readouterr())
    assert ("without dialling again" in log) is (redial == "failed")


def test_own_hangup_url_waits_through_the_api(
    vobiz_emulator, callback_receiver, dag_runner, answer_url, capfd
):
    to = "+14155550136"
    vobiz_emulator.script(to, CallScript.answered(after=0.05, talk_for=0.1))
    with _dag("vobiz_wait_own_hangup_url") as dag:
        VobizCallOperator(
            task_id="call",
            to=to,
            from_number=CALLER,
            answer_url=answer_url,
            hangup_url=answer_url,
            deferrable=True,
            **FAST,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 1)
    [post] = dag_runner.call_requests(vobiz_emulator)
    assert post.body["hangup_url"] == answer_url
    record = dag_runner.xcoms(dag_run, "call")[-1]
    assert (record["status"], record["source"]) == ("completed", "api")
    assert "polling the Vobiz API" in "".join(capfd.readouterr())


def test_without_callback_base_url_waits_through_the_api(
    vobiz_emulator, store_without_receiver, dag_runner, answer_url, capfd
):
    to = "+14155550137"
    vobiz_emulator.script(to, CallScript.busy(after=0.05))
    with _dag("vobiz_wait_no_receiver") as dag:
        VobizCallOperator(
            task_id="call", to=to, from_number=CALLER, answer_url=answer_url, deferrable=False, **FAST
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("failed", 1)
    [post] = dag_runner.call_requests(vobiz_emulator)
    assert "hangup_url" not in post.body
    log = "".join(capfd.readouterr())
    assert "No callback_base_url is configured" in log
    assert "ended with status 'busy'" in log


def _one_second_in_worker_dag(
    dag_id: str, vobiz_emulator: Any, to: str, answer_url: str, hangup_on_kill: bool
) -> DAG:
    """A call that talks 30 s, waited for in the worker by a task with a 1 s ``execution_timeout``."""
    vobiz_emulator.script(to, CallScript.answered(after=0.05, talk_for=30))
    with _dag(dag_id) as dag:
        VobizCallOperator(
            task_id="call",
            to=to,
            from_number=CALLER,
            answer_url=answer_url,
            deferrable=False,
            hangup_on_kill=hangup_on_kill,
            execution_timeout=datetime.timedelta(seconds=1),
            **FAST,
        )
    return dag


@pytest.mark.parametrize("hangup_on_kill", [True, False])
def test_killed_in_worker_wait_hangs_up_only_when_asked(
    hangup_on_kill, vobiz_emulator, callback_receiver, dag_runner, answer_url
):
    dag = _one_second_in_worker_dag(
        f"vobiz_wait_kill_{hangup_on_kill}", vobiz_emulator, "+14155550138", answer_url, hangup_on_kill
    )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("failed", 1)
    [emulated] = vobiz_emulator.calls.values()
    deletes = [r for r in vobiz_emulator.requests if r.method == "DELETE"]
    if hangup_on_kill:
        assert [r.path.rstrip("/").rsplit("/", 1)[-1] for r in deletes] == [emulated.call_uuid]
        assert emulated.finished
        assert emulated.hangup_source == "API Request"
    else:
        assert deletes == []
        assert not emulated.finished


def test_an_in_worker_wait_ends_at_execution_timeout_even_if_the_timeout_signal_is_lost(
    vobiz_emulator, callback_receiver, dag_runner, answer_url, monkeypatch
):
    # Airflow's SIGALRM exception, raised inside a garbage collector's callback, is printed and lost (seen in
    # CI): the wait must end by itself at execution_timeout, as Airflow would have ended it, and hang up.
    import airflow.sdk.execution_time.timeout as airflow_timeout

    monkeypatch.setattr(airflow_timeout, "timeout", lambda *args, **kwargs: contextlib.nullcontext())
    dag = _one_second_in_worker_dag(
        "vobiz_wait_lost_timeout_signal", vobiz_emulator, "+14155550139", answer_url, hangup_on_kill=True
    )

    started = time.monotonic()
    dag_run = dag_runner.run(dag)

    assert time.monotonic() - started < 25  # the call talks 30 s
    assert dag_runner.states(dag_run)[("call", -1)] == ("failed", 1)
    [emulated] = vobiz_emulator.calls.values()
    assert emulated.finished and emulated.hangup_source == "API Request"  # on_kill hung up


def test_mapped_calls_each_wait_for_their_own_hangup(
    vobiz_emulator, callback_receiver, dag_runner, answer_url
):
    answered, busy = "+14155550141", "+14155550142"
    vobiz_emulator.script(answered, CallScript.answered(after=0.05, talk_for=0.1))
    vobiz_emulator.script(busy, CallScript.busy(after=0.05))
    with _dag("vobiz_wait_mapped") as dag:
        VobizCallOperator.partial(
            task_id="call", from_number=CALLER, answer_url=answer_url, deferrable=True, **FAST
        ).expand(to=[answered, busy])

    dag_run = dag_runner.run(dag)

    states = dag_runner.states(dag_run)
    assert (states[("call", 0)][0], states[("call", 1)][0]) == ("success", "failed")
    record = dag_runner.xcoms(dag_run, "call")[0]
    assert (record["to"].lstrip("+"), record["status"], record["map_index"]) == (answered[1:], "completed", 0)
    assert len(dag_runner.call_requests(vobiz_emulator)) == 2


def test_one_request_to_several_destinations_returns_every_record(
    vobiz_emulator, callback_receiver, dag_runner, answer_url
):
    first, second = "+14155550151", "+14155550152"
    vobiz_emulator.script(first, CallScript.answered(after=0.05, talk_for=0.1))
    vobiz_emulator.script(second, CallScript.answered(after=0.1, talk_for=0.2))
    with _dag("vobiz_wait_bulk") as dag:
        VobizCallOperator(
            task_id="call", to=[first, second], from_number=CALLER, answer_url=answer_url, **FAST
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 1)
    [post] = dag_runner.call_requests(vobiz_emulator)
    assert post.body["to"] == f"{first}<{second}"
    records = dag_runner.xcoms(dag_run, "call")[-1]
    assert [(r["to"].lstrip("+"), r["status"]) for r in records] == [
        (first[1:], "completed"),
        (second[1:], "completed"),
    ]
    assert {r["call_uuid"] for r in records} == set(vobiz_emulator.calls)
