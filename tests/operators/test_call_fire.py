"""VobizCallOperator, firing only (``wait_for_completion=False``): real ``dag.test()`` runs, the emulator
over loopback HTTP as Vobiz."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from airflow.sdk import DAG

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.operators.call import VobizCallOperator

pytestmark = pytest.mark.airflow_db

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
CALLER = "+14155550100"


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


def test_fires_one_call_with_the_rendered_request(vobiz_emulator, dag_runner, answer_url, capfd):
    with _dag("vobiz_fire_once") as dag:
        VobizCallOperator(
            task_id="call",
            to="+14155550101",
            from_number=CALLER,
            answer_url=answer_url,
            caller_name="{{ dag.dag_id[:10] }}",
            send_digits="1w2",
            time_limit=60,
            ring_timeout="30",
            machine_detection=True,
            wait_for_completion=False,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)][0] == "success"
    posts = dag_runner.call_requests(vobiz_emulator)
    assert len(posts) == 1
    assert posts[0].body == {
        "from": CALLER,
        "to": "+14155550101",
        "answer_url": answer_url,
        "answer_method": "POST",
        "caller_name": "vobiz_fire",
        "send_digits": "1w2",
        "time_limit": 60,
        "ring_timeout": 30,
        "machine_detection": "true",
    }
    [call] = vobiz_emulator.calls.values()
    xcom = dag_runner.xcoms(dag_run, "call")[-1]
    assert xcom == {
        "request_uuid": call.request_uuid,
        "request_uuids": [call.request_uuid],
        "to": "+14155550101",
        "from_number": CALLER,
        "api_id": xcom["api_id"],
    }
    assert isinstance(xcom["api_id"], str)
    assert xcom["api_id"]

    log = "".join(capfd.readouterr())
    assert "+1******0101" in log  # the task log shows the destination masked; XCom keeps it whole
    assert "+14155550101" not in log
    assert call.request_uuid in log
    token = vobiz_emulator.auth_token
    assert token not in log
    assert token not in json.dumps(xcom)
    assert token not in json.dumps(dag_runner.rendered_fields(dag_run))


def test_expand_fires_one_call_per_destination(vobiz_emulator, dag_runner, answer_url):
    destinations = ["+14155550111", "+14155550112", "sip:alice@example.com"]
    with _dag("vobiz_fire_mapped") as dag:
        VobizCallOperator.partial(
            task_id="call", from_number=CALLER, answer_url=answer_url, wait_for_completion=False
        ).expand(to=destinations)

    dag_run = dag_runner.run(dag)

    posts = dag_runner.call_requests(vobiz_emulator)
    assert sorted(post.body["to"] for post in posts) == sorted(destinations)
    xcoms = dag_runner.xcoms(dag_run, "call")
    assert sorted(xcoms) == [0, 1, 2]
    assert [xcoms[i]["to"] for i in range(3)] == destinations
    by_destination = {call.to: call.request_uuid for call in vobiz_emulator.calls.values()}
    for xcom in xcoms.values():
        assert xcom["request_uuid"] == by_destination[xcom["to"]]


def test_several_destinations_in_one_request(vobiz_emulator, dag_runner, answer_url):
    with _dag("vobiz_fire_bulk") as dag:
        VobizCallOperator(
            task_id="call",
            to=["+14155550121", "+14155550122"],
            from_number=CALLER,
            answer_url=answer_url,
            wait_for_completion=False,
        )

    dag_run = dag_runner.run(dag)

    [post] = dag_runner.call_requests(vobiz_emulator)
    assert post.body["to"] == "+14155550121<+14155550122"
    xcom = dag_runner.xcoms(dag_run, "call")[-1]
    assert xcom["to"] == ["+14155550121", "+14155550122"]
    assert set(xcom["request_uuids"]) <= {call.request_uuid for call in vobiz_emulator.calls.values()}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("caller_name", "x" * 51),
        ("from_number", "12"),
        ("time_limit", 0),
        ("machine_detection_time", 100),
        ("answer_method", "PUT"),
        ("send_digits", "12ab"),
    ],
)
def test_static_bad_value_fails_when_the_dag_is_defined(field, value):
    api_name = "from" if field == "from_number" else field
    arguments = {"to": "+14155550101", "from_number": CALLER, "answer_url": "https://example.com/a.xml"}
    arguments[field] = value
    with _dag("vobiz_parse_error"), pytest.raises(VobizValidationError, match=rf"\b{api_name}: ") as err:
        VobizCallOperator(task_id="call", **arguments)
    assert "'call'" in str(err.value)


def test_answer_url_is_required_at_parse_time():
    with _dag("vobiz_no_answer_url"), pytest.raises(VobizValidationError, match="answer_url is required"):
        VobizCallOperator(task_id="call", to="+14155550101", from_number=CALLER)


def test_templated_values_are_not_checked_at_parse_time():
    with _dag("vobiz_templated_parse"):
        operator = VobizCallOperator(
            task_id="call",
            to=["{{ params.first }}", "+14155550101"],
            from_number="{{ params.caller }}",
            answer_url="{{ params.answer_url }}",
            caller_name="{{ 'x' * 80 }}",
        )
    assert operator.to == ["{{ params.first }}", "+14155550101"]


def test_templated_bad_value_fails_before_any_request(vobiz_emulator, dag_runner, answer_url, capfd):
    with _dag("vobiz_render_error", params={"to": "+1 415 555"}) as dag:
        VobizCallOperator(
            task_id="call",
            to="{{ params.to }}",
            from_number=CALLER,
            answer_url=answer_url,
            wait_for_completion=False,
        )

    dag_run = dag_runner.run(dag)

    assert dag_runner.states(dag_run)[("call", -1)][0] == "failed"
    assert vobiz_emulator.requests == []
    log = "".join(capfd.readouterr())
    assert "VobizValidationError" in log
    assert "invalid Make-Call request: to[0]: '+* **5 555' is not an E.164 number" in log
