"""VobizCallOperator with a spoken message and a keypad prompt instead of an ``answer_url``.

The arguments are checked when the DAG is defined; the outcome is judged on the digits; and end to end
(``dag.test()``, the emulator over loopback HTTP, the standalone receiver serving the stored message) the
callee hears the message and the digits the emulator's script presses decide the task.
"""

from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from _ledger_helpers import bare_url, store_callback
from airflow.sdk import DAG

from vobiz_provider.exceptions import VobizCallFailedError, VobizValidationError
from vobiz_provider.models.answer import GatherSpec
from vobiz_provider.operators.call import VobizCallOperator
from vobiz_provider.phone_masking import mask_number
from vobiz_provider.testing import CallScript

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLER = "+14155550100"
TO = "+14155550161"
FAST = {"poll_interval": 0.05, "timeout": 30}
PROMPT = "Press 1 to confirm, 2 to cancel."


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


def _operator(**kwargs: Any) -> VobizCallOperator:
    arguments: dict[str, Any] = {"task_id": "call", "to": TO, "from_number": CALLER, **kwargs}
    return VobizCallOperator(**arguments)


def _record(**fields: Any) -> dict[str, Any]:
    return {
        "call_uuid": "c-1",
        "request_uuid": "r-1",
        "to": TO,
        "status": "completed",
        "terminal": True,
        "hangup_cause_code": 4000,
        "hangup_cause_name": "Normal Hangup",
        "source": "callback",
        **fields,
    }


def _event(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"status": "hangup", "request_uuids": ["r-1"], "calls": list(calls), "message": ""}


# ------------------------------------------------------------------------------------- parse time


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        (
            {"message": "Hi", "answer_url": "https://example.com/a.xml"},
            "give either answer_url (your own VobizXML) or message",
        ),
        (
            {"gather": {"prompt": PROMPT}, "answer_url": "https://example.com/a.xml"},
            "or gather (served by the callback receiver), not both",
        ),
        ({}, "answer_url is required"),
        ({"message": "Hi", "expected_digits": "1"}, "expected_digits needs gather"),
        (
            {
                "message": "Hi",
                "gather": {"prompt": PROMPT},
                "expected_digits": "1",
                "wait_for_completion": False,
            },
            "expected_digits needs wait_for_completion=True",
        ),
        ({"gather": {"prompt": PROMPT}, "expected_digits": "1a"}, "only the keys 0-9, * and #, got '1a'"),
        ({"gather": {"prompt": PROMPT}, "expected_digits": []}, "expected_digits must be a string of keys"),
        ({"gather": {"prompt": PROMPT}, "expected_digits": 1}, "expected_digits must be a string of keys"),
        (
            {"gather": {"prompt": PROMPT, "num_digits": 1}, "expected_digits": ["1", "12"]},
            "expected_digits '12' can never be pressed: gather collects at most num_digits=1",
        ),
        (
            {"gather": {"prompt": PROMPT}, "expected_digits": "1#"},
            "'#' is gather's finish_on_key",
        ),
        ({"message": "Hi", "voice": "ROBOT"}, "voice: "),
        ({"message": "Hi", "loop": 0}, "loop: "),
        ({"message": "Hi", "language": "english"}, "language: "),
        ({"message": "   "}, "message: must not be empty"),
        ({"gather": {"prompt": PROMPT, "num_digits": 0}}, "gather.num_digits: "),
        ({"gather": {"prompt": PROMPT, "timeout": 2}}, "gather.timeout: "),
        ({"gather": {"prompt": PROMPT, "colour": "red"}}, "gather.colour: unknown field"),
        ({"gather": {"num_digits": 1}}, "gather.prompt: required"),
    ],
)
def test_bad_message_arguments_fail_when_the_dag_is_defined(kwargs, problem):
    with _dag("vobiz_message_parse_error"), pytest.raises(VobizValidationError) as err:
        _operator(**kwargs)
    assert problem in str(err.value)
    assert "'call'" in str(err.value)


def test_templated_message_and_prompt_wait_for_rendering_but_the_rest_is_checked():
    with _dag("vobiz_message_templated"):
        operator = _operator(
            message="{{ params.message }}",
            gather={"prompt": "{{ params.prompt }}", "num_digits": 1},
            expected_digits=["1", "2"],
        )
        with pytest.raises(VobizValidationError, match="voice: "):
            _operator(task_id="other", message="{{ params.message }}", voice="ROBOT")
    assert operator.speaks_message
    assert operator.expected_digits == ("1", "2")
    assert {"message", "gather"} <= set(operator.template_fields)


def test_rendered_spec_carries_message_voice_and_prompt():
    with _dag("vobiz_message_spec"):
        operator = _operator(
            message="Your order shipped.",
            voice="man",
            language="hi-IN",
            loop=2,
            gather={"prompt": PROMPT, "num_digits": 1, "timeout": 7, "no_input_message": "Goodbye."},
        )
    spec = operator.answer_spec()
    assert spec is not None
    assert (spec.message, spec.voice, spec.language, spec.loop) == ("Your order shipped.", "MAN", "hi-IN", 2)
    assert spec.gather is not None
    assert (spec.gather.prompt, spec.gather.num_digits, spec.gather.timeout) == (PROMPT, 1, 7)
    request = operator.build_request()
    assert request.answer_method == "POST"


# ------------------------------------------------------------------------------------ the outcome


def _gathering(**kwargs: Any) -> VobizCallOperator:
    with _dag("vobiz_message_outcome"):
        return _operator(message="Hi", gather={"prompt": PROMPT, "num_digits": 1}, **kwargs)


def test_expected_digits_pressed_succeeds_and_logs_them(capfd):
    operator = _gathering(expected_digits=["1", "2"])
    record = _record(digits="2")
    assert operator.execute_complete({}, _event(record)) == record
    assert "the callee pressed '2'" in "".join(capfd.readouterr())


@pytest.mark.parametrize(
    ("digits", "problem"),
    [
        ("3", "ended with status 'completed', but the callee pressed '3' (expected '1' or '2')"),
        (None, "but no digits: the callee did not answer the prompt (expected '1' or '2')"),
        ("", "but no digits: the callee did not answer the prompt"),
    ],
)
def test_other_or_no_digits_fail_the_task_naming_what_was_pressed(digits, problem):
    operator = _gathering(expected_digits=["1", "2"])
    with pytest.raises(VobizCallFailedError) as err:
        operator.execute_complete({}, _event(_record(digits=digits)))
    assert problem in str(err.value)
    assert f"Vobiz call to {mask_number(TO)} (c-1)" in str(err.value)
    assert err.value.calls[0]["digits"] == digits


def test_a_failed_status_is_reported_as_such_even_with_expected_digits():
    operator = _gathering(expected_digits="1")
    busy = _record(status="busy", hangup_cause_code=3010, hangup_cause_name="Busy Line", digits=None)
    with pytest.raises(VobizCallFailedError, match=r"ended with status 'busy' .*success statuses: completed"):
        operator.execute_complete({}, _event(busy))


def test_digits_stored_by_the_receiver_complete_a_record_learnt_from_the_api(store_without_receiver):
    """The hangup callback was lost, so the trigger's final record is a CDR (no digits); the Gather post the
    receiver stored still decides the outcome."""
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger import get_ledger

    store = get_ledger()
    store.upgrade()
    correlation = CorrelationToken(dag_id="d", run_id="r", task_id="call")
    store.register_fired_calls(
        request_uuids=["c-1"], destinations=[TO], from_number=CALLER, correlation=correlation
    )
    gather = {"CallUUID": "c-1", "RequestUUID": "c-1", "From": CALLER, "To": TO, "Digits": "1"}
    assert store_callback(store, "gather", gather, correlation=correlation, replay_keys=("n-1",)).stored
    operator = _gathering(expected_digits="1")

    result = operator.execute_complete({}, _event(_record(source="api", digits=None)))

    assert (result["digits"], result["source"]) == ("1", "api")


def test_without_expected_digits_any_answer_succeeds():
    operator = _gathering()
    assert operator.execute_complete({}, _event(_record(digits=None)))["digits"] is None


# ------------------------------------------------------------------------------------ end to end


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["t"][0]


def _speak_texts(xml_text: str) -> list[str]:
    return [element.text or "" for element in ET.fromstring(xml_text).iter("Speak")]


@pytest.fixture
def fast_gather(vobiz_emulator: Any) -> Any:
    """Gather timeouts (5 s at least) and other XML durations shrunk a hundredfold in the emulator."""
    vobiz_emulator.configure(time_scale=0.01)
    return vobiz_emulator


@pytest.mark.airflow_db
def test_message_without_receiver_fails_before_dialling(
    vobiz_emulator, store_without_receiver, dag_runner, capfd
):
    with _dag("vobiz_message_no_receiver") as dag:
        _operator(message="Hello", **FAST)

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)][0] == "failed"
    assert dag_runner.call_requests(vobiz_emulator) == []
    log = "".join(capfd.readouterr())
    assert "message and gather are served to Vobiz by the callback receiver, but no callback_base_url" in log


@pytest.mark.airflow_db
def test_message_is_served_by_the_receiver_and_never_leaks(fast_gather, callback_receiver, dag_runner, capfd):
    vobiz_emulator = fast_gather
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=None))
    with _dag("vobiz_message_spoken", params={"name": "Asha"}) as dag:
        _operator(
            message="Hello {{ params.name }}, your order shipped.", voice="MAN", deferrable=True, **FAST
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 1)
    [post] = dag_runner.call_requests(vobiz_emulator)
    assert bare_url(post.body["answer_url"]).startswith(f"{callback_receiver}/callbacks/answer?t=")
    assert post.body["answer_method"] == "POST"
    assert "Asha" not in json.dumps(post.body)
    [fetch] = [r for r in vobiz_emulator.callbacks if r.kind == "answer" and r.ok]
    assert fetch.content_type is not None and "xml" in fetch.content_type
    root = ET.fromstring(fetch.body)
    [speak] = root.iter("Speak")
    assert speak.text == "Hello Asha, your order shipped."
    assert speak.get("voice") == "MAN"
    [emulated] = vobiz_emulator.calls.values()
    assert emulated.status == "completed"

    token = _token(post.body["answer_url"])
    record = dag_runner.xcoms(dag_run, "call")[-1]
    assert record["status"] == "completed"
    log = "".join(capfd.readouterr())
    assert "will speak the message" in log
    for where in (log, json.dumps(record), json.dumps(dag_runner.rendered_fields(dag_run))):
        assert token not in where
    assert "Hello Asha" not in json.dumps(record)


@pytest.mark.airflow_db
def test_fire_and_forget_message_is_stored_before_the_call(fast_gather, callback_receiver, dag_runner):
    vobiz_emulator = fast_gather
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=None))
    with _dag("vobiz_message_fire_only") as dag:
        _operator(message="Heads up: the load finished.", wait_for_completion=False)

    dag_run = dag_runner.run(dag)
    vobiz_emulator.wait_until_idle()

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 1)
    [post] = dag_runner.call_requests(vobiz_emulator)
    assert bare_url(post.body["answer_url"]).startswith(f"{callback_receiver}/callbacks/answer?t=")
    [fetch] = [r for r in vobiz_emulator.callbacks if r.kind == "answer" and r.ok]
    assert _speak_texts(fetch.body) == ["Heads up: the load finished."]
    result = dag_runner.xcoms(dag_run, "call")[-1]
    assert set(result) == {"request_uuid", "request_uuids", "to", "from_number", "api_id"}


@pytest.mark.airflow_db
@pytest.mark.parametrize(
    ("pressed", "state", "logged"),
    [
        ("1", "success", "the callee pressed '1'"),
        ("2", "failed", "but the callee pressed '2' (expected '1')"),
        (None, "failed", "but no digits: the callee did not answer the prompt (expected '1')"),
    ],
    ids=["pressed-1", "pressed-2", "no-input"],
)
def test_keypad_answer_decides_the_task(
    pressed, state, logged, fast_gather, callback_receiver, dag_runner, capfd
):
    vobiz_emulator = fast_gather
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=None, digits=pressed))
    with _dag(f"vobiz_message_gather_{pressed}") as dag:
        _operator(
            message="The nightly load failed.",
            gather={"prompt": PROMPT, "num_digits": 1, "timeout": 5, "no_input_message": "Goodbye."},
            expected_digits="1",
            deferrable=True,
            **FAST,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == (state, 1)
    [fetch] = [r for r in vobiz_emulator.callbacks if r.kind == "answer" and r.ok]
    root = ET.fromstring(fetch.body)
    [gather] = root.iter("Gather")
    assert [s.text for s in gather.iter("Speak")] == [PROMPT]
    assert gather.get("numDigits") == "1"
    assert _speak_texts(fetch.body)[0] == "The nightly load failed."
    [posted] = [r for r in vobiz_emulator.callbacks if r.kind == "gather"]
    assert posted.ok
    assert posted.fields.get("Digits", "") == (pressed or "")
    log = "".join(capfd.readouterr())
    assert logged in log
    if state == "success":
        assert dag_runner.xcoms(dag_run, "call")[-1]["digits"] == "1"
    else:
        assert "VobizCallFailedError" in log


@pytest.mark.airflow_db
def test_retry_redials_after_a_wrong_answer_and_keeps_the_right_one(
    fast_gather, callback_receiver, dag_runner, capfd
):
    vobiz_emulator = fast_gather
    vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=None, digits="2"))

    def callee_presses_1_next_time(context: Any) -> None:
        vobiz_emulator.script(TO, CallScript.answered(after=0.05, talk_for=None, digits="1"))

    with _dag("vobiz_message_gather_retry") as dag:
        _operator(
            message="Please confirm.",
            gather=GatherSpec(prompt=PROMPT, num_digits=1),
            expected_digits="1",
            deferrable=True,
            retries=2,
            retry_delay=datetime.timedelta(0),
            on_retry_callback=callee_presses_1_next_time,
            **FAST,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)] == ("success", 2)
    posts = dag_runner.call_requests(vobiz_emulator)
    assert len(posts) == 2
    # Each try speaks from its own stored spec (its own token).
    assert _token(posts[0].body["answer_url"]) != _token(posts[1].body["answer_url"])
    record = dag_runner.xcoms(dag_run, "call")[-1]
    assert (record["digits"], record["try_number"]) == ("1", 2)
    assert "did not succeed" in "".join(capfd.readouterr())
