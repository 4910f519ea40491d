"""VobizNotifier against the emulator (real HTTP) and a running callback receiver that speaks the message."""

from __future__ import annotations

import ast
import json
import logging
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from _ledger_helpers import bare_url

from vobiz_provider.exceptions import VobizError, VobizValidationError
from vobiz_provider.notifications.vobiz import VobizNotifier, send_vobiz_call_notification
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.models.record import CallRecord
    from vobiz_provider.testing import EmulatorHandle

CALLEE = "919876543210"
OTHER = "919811111111"
CALLER = "918000000000"


def _context(*, task_id: str | None = "load", try_number: int = 1, dag_id: str = "nightly") -> dict[str, Any]:
    from airflow.sdk import DAG

    context: dict[str, Any] = {"dag": DAG(dag_id, schedule=None), "run_id": "manual__2026-11-27"}
    if task_id is not None:
        ti = SimpleNamespace(
            dag_id=dag_id, run_id=context["run_id"], task_id=task_id, map_index=-1, try_number=try_number
        )
        context.update(ti=ti, task_instance=ti)
    return context


def _notifier(**overrides: Any) -> VobizNotifier:
    fields: dict[str, Any] = {"to": CALLEE, "from_number": CALLER, "message": "{{ dag.dag_id }} failed"}
    return VobizNotifier(**{**fields, **overrides})


def _call_posts(handle: EmulatorHandle) -> list[Any]:
    return [r for r in handle.requests if r.method == "POST" and r.path.endswith("/Call/")]


def _final_record(store: CallLedger, request_uuid: str, timeout: float = 10.0) -> CallRecord:
    """Wait until the receiver stored the call's hangup (it arrives over HTTP after the call ends)."""
    deadline = time.monotonic() + timeout
    while True:
        records = store.lookup(request_uuids=[request_uuid])
        if records and records[0].terminal:
            return records[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"the hangup of {request_uuid} never reached the receiver: {records}")
        time.sleep(0.05)


def _request_uuid(handle: EmulatorHandle) -> str:
    (call,) = handle.calls.values()
    return call.request_uuid


def _verbs(body: str) -> list[ET.Element]:
    return list(ET.fromstring(body.split("\n", 1)[1]))


# -- the whole loop ----------------------------------------------------------------------------------------


def test_notify_phones_once_and_the_receiver_speaks_the_rendered_message(
    vobiz_emulator: EmulatorHandle, receiver: Any
) -> None:
    vobiz_emulator.script(CALLEE, CallScript.answered(talk_for=None, digits="1"))
    notifier = _notifier(gather={"prompt": "Press 1 to acknowledge {{ ti.task_id }}.", "num_digits": 1})

    notifier(_context())

    (post,) = _call_posts(vobiz_emulator)
    body = post.body
    assert body["to"] == CALLEE and body["from"] == CALLER
    assert body["answer_method"] == "POST"
    assert bare_url(body["answer_url"]).startswith(f"{receiver.base_url}/callbacks/answer?t=")
    assert bare_url(body["hangup_url"]).startswith(f"{receiver.base_url}/callbacks/hangup?t=")
    assert "nightly failed" not in json.dumps(body)  # the message is served, never sent in a URL

    record = _final_record(receiver.store, _request_uuid(vobiz_emulator))
    (answer,) = [cb for cb in vobiz_emulator.callbacks if cb.kind == "answer"]
    speak, gather, hangup = _verbs(answer.body)
    assert speak.text == "nightly failed"
    assert gather[0].text == "Press 1 to acknowledge load."
    assert bare_url(gather.attrib["action"]).startswith(f"{receiver.base_url}/callbacks/gather?t=")
    assert hangup.tag == "Hangup"
    (posted,) = [cb for cb in vobiz_emulator.callbacks if cb.kind == "gather"]
    assert posted.fields["Digits"] == "1"
    assert [verb.tag for verb in _verbs(posted.body)] == ["Speak", "Hangup"]

    assert record.digits == "1"
    assert record.status == "completed"
    assert (record.dag_id, record.run_id) == ("nightly", "manual__2026-11-27")
    assert record.task_id.startswith("load.vobiz_notify.")  # never mixed with the task's own calls


def test_no_key_pressed_plays_the_no_input_message_and_stores_no_digits(
    vobiz_emulator: EmulatorHandle, receiver: Any
) -> None:
    vobiz_emulator.configure(time_scale=0.01)
    vobiz_emulator.script(CALLEE, CallScript.answered(talk_for=None, digits=None))
    notifier = _notifier(gather={"prompt": "Press 1.", "no_input_message": "Nobody acknowledged."})

    notifier(_context())

    record = _final_record(receiver.store, _request_uuid(vobiz_emulator))
    (posted,) = [cb for cb in vobiz_emulator.callbacks if cb.kind == "gather"]
    assert posted.fields["Digits"] == ""
    assert _verbs(posted.body) == []  # Vobiz falls through to the verbs after <Gather>
    (call,) = vobiz_emulator.calls.values()
    assert "answer XML: Speak, Gather, Speak, Hangup" in call.xml_log
    assert record.digits is None


# -- dedupe ------------------------------------------------------------------------------------------------


def test_the_same_callback_fired_twice_phones_once(
    vobiz_emulator: EmulatorHandle, receiver: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    _notifier()(_context())
    _notifier()(_context(try_number=2))  # fired again, by a fresh notifier object

    assert len(_call_posts(vobiz_emulator)) == 1
    log = "".join(capfd.readouterr())
    assert "Not phoning 91******3210" in log  # the destination masked, in the dedupe key too
    assert "919876543210" not in log
    assert "nightly/manual__2026-11-27/load" in log


def test_other_destinations_tasks_or_a_zero_window_phone_again(
    vobiz_emulator: EmulatorHandle, receiver: Any
) -> None:
    _notifier()(_context())
    _notifier(to=[OTHER])(_context())  # other people: another call
    _notifier()(_context(task_id="transform"))  # another task: another call
    _notifier(dedupe_window=0)(_context())  # deduplication off

    assert [post.body["to"] for post in _call_posts(vobiz_emulator)] == [CALLEE, OTHER, CALLEE, CALLEE]


def test_a_templated_dedupe_key_groups_tasks(vobiz_emulator: EmulatorHandle, receiver: Any) -> None:
    _notifier(dedupe_key="{{ dag.dag_id }}-outage")(_context(task_id="load"))
    _notifier(dedupe_key="{{ dag.dag_id }}-outage")(_context(task_id="transform"))
    _notifier(dedupe_key="{{ dag.dag_id }}-outage")(_context(task_id="load", dag_id="hourly"))

    assert len(_call_posts(vobiz_emulator)) == 2


def test_a_call_vobiz_refused_does_not_use_up_the_key(vobiz_emulator: EmulatorHandle, receiver: Any) -> None:
    vobiz_emulator.inject_fault(status=400)
    with pytest.raises(VobizError):
        _notifier()(_context())

    _notifier()(_context())

    assert [post.status for post in _call_posts(vobiz_emulator)] == [400, 201]


def test_outside_airflow_an_explicit_dedupe_key_names_the_notification(
    vobiz_emulator: EmulatorHandle, receiver: Any
) -> None:
    notifier = _notifier(message="The nightly load failed.", dedupe_key="db-outage")
    notifier.notify({})  # no task instance, DAG or DAG run: called by hand, not as an Airflow callback
    notifier.notify({})  # the same key within the window: not phoned again

    assert len(_call_posts(vobiz_emulator)) == 1
    [record] = receiver.store.lookup(request_uuids=[_request_uuid(vobiz_emulator)])
    assert record.dag_id == "__vobiz_notifier__" and record.run_id.startswith("key-")
    with pytest.raises(VobizError, match="run it as an Airflow callback, or pass dedupe_key="):
        _notifier(message="x").notify({})


# -- templates, validation, configuration ------------------------------------------------------------------


def test_template_fields_are_rendered_into_the_call(vobiz_emulator: EmulatorHandle, receiver: Any) -> None:
    notifier = _notifier(
        to=["{{ params.oncall }}", OTHER],
        from_number="{{ params.caller }}",
        vobiz_conn_id="{{ 'vobiz_default' }}",
    )
    context = {**_context(), "params": {"oncall": CALLEE, "caller": CALLER}}

    notifier(context)

    (post,) = _call_posts(vobiz_emulator)
    assert post.body["to"] == f"{CALLEE}<{OTHER}"
    assert post.body["from"] == CALLER
    assert notifier.message == "nightly failed"
    assert set(VobizNotifier.template_fields) >= {
        "to",
        "from_number",
        "message",
        "dedupe_key",
        "vobiz_conn_id",
    }


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"voice": "ROBOT"}, "voice:"),
        ({"loop": 0}, "loop:"),
        ({"gather": {"prompt": "Press 1", "timeout": 2}}, "gather.timeout:"),
        ({"from_number": "not a number"}, "from"),
        ({"to": []}, "to"),
        ({"time_limit": -5}, "time_limit"),
        ({"dedupe_window": -1}, "dedupe_window"),
        ({"message": ""}, "message: must not be empty"),
    ],
)
def test_invalid_arguments_fail_at_parse_time_naming_the_field(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(VobizValidationError, match="VobizNotifier") as info:
        _notifier(**overrides)
    assert named in str(info.value)


def test_an_invalid_rendered_value_fails_before_anything_is_sent(
    vobiz_emulator: EmulatorHandle, receiver: Any
) -> None:
    notifier = _notifier(to="{{ params.oncall }}")  # templated: only checked once rendered
    with pytest.raises(VobizValidationError, match="to"):
        notifier({**_context(), "params": {"oncall": "call me maybe"}})

    assert _call_posts(vobiz_emulator) == []
    _notifier(to=CALLEE)(_context())  # nothing was claimed: the key is still free
    assert len(_call_posts(vobiz_emulator)) == 1


def test_without_a_receiver_url_the_error_names_the_settings(
    vobiz_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{tmp_path / 'callbacks.db'}")

    with pytest.raises(VobizError) as info:
        _notifier()(_context())

    message = str(info.value)
    assert "callback_base_url" in message and "AIRFLOW__VOBIZ__CALLBACK_BASE_URL" in message
    assert "'vobiz_default'" in message
    assert _call_posts(vobiz_emulator) == []


def test_the_connection_extra_base_url_is_used(
    vobiz_emulator: EmulatorHandle, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL")
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOBIZ_DEFAULT", vobiz_emulator.connection_json(callback_base_url=receiver.base_url)
    )
    _notifier()(_context())
    (post,) = _call_posts(vobiz_emulator)
    assert bare_url(post.body["answer_url"]).startswith(f"{receiver.base_url}/callbacks/answer?t=")


def test_tokens_never_reach_the_logs(
    vobiz_emulator: EmulatorHandle,
    receiver: Any,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    vobiz_emulator.script(CALLEE, CallScript.answered(talk_for=None))
    _notifier()(_context())
    _final_record(receiver.store, _request_uuid(vobiz_emulator))

    (post,) = _call_posts(vobiz_emulator)
    (token,) = parse_qs(urlsplit(post.body["answer_url"]).query)["t"]
    log = "".join(capfd.readouterr()) + caplog.text  # structlog (Airflow) and stdlib logging
    assert "Vobiz notification call placed from 91******0000 to 91******3210" in log
    assert "919876543210" not in log and "918000000000" not in log
    assert token not in log
    assert token.split(".")[1] not in log  # not even its signature
    assert vobiz_emulator.auth_token not in log


# -- async (Deadline Alerts run the notifier in the triggerer) ---------------------------------------------


async def test_async_notify_as_a_deadline_alert_callback(
    vobiz_emulator: EmulatorHandle, receiver: Any
) -> None:
    deadline_context = {
        "dag_run": {"dag_id": "nightly", "run_id": "scheduled__2026-11-27"},
        "deadline": {"id": "0193-deadline", "deadline_time": "2026-11-27T02:00:00Z"},
    }
    # What CallbackTrigger does: build the notifier with the kwargs and the context, then await it.
    kwargs = {"to": CALLEE, "from_number": CALLER, "message": "{{ dag_run.dag_id }} missed its deadline"}

    await VobizNotifier(**kwargs, context=dict(deadline_context))
    await VobizNotifier(**kwargs, context=dict(deadline_context))  # the same alert, fired twice

    (post,) = _call_posts(vobiz_emulator)
    (token,) = parse_qs(urlsplit(post.body["answer_url"]).query)["t"]
    from vobiz_provider.config import get_settings
    from vobiz_provider.correlation import CorrelationToken

    correlation = CorrelationToken.decode(token, get_settings().verification_secrets, kind="answer")
    assert (correlation.dag_id, correlation.run_id) == ("nightly", "scheduled__2026-11-27")
    assert correlation.task_id.startswith("__dag__.vobiz_notify.")
    spec = receiver.store.load_answer_entry(correlation).spec
    assert spec is not None and spec.message == "nightly missed its deadline"


def test_sync_deadline_callback_runs_through_airflows_callback_executor(
    vobiz_emulator: EmulatorHandle, receiver: Any
) -> None:
    """``SyncCallback(VobizNotifier, kwargs=...)``: Airflow builds the notifier with the context, calls it."""
    import structlog
    from airflow.sdk.execution_time.callback_supervisor import execute_callback

    kwargs = {
        "to": CALLEE,
        "from_number": CALLER,
        "message": "{{ dag_run.dag_id }} is late",
        "context": {"dag_run": {"dag_id": "nightly", "run_id": "r1"}, "deadline": {"id": "d1"}},
    }
    path = "vobiz_provider.notifications.vobiz.VobizNotifier"
    ok, error = execute_callback(path, kwargs, Path("dag.py"), None, structlog.get_logger())

    assert (ok, error) == (True, None)
    (post,) = _call_posts(vobiz_emulator)
    assert post.body["to"] == CALLEE


async def test_async_notify_directly(vobiz_emulator: EmulatorHandle, receiver: Any) -> None:
    notifier = _notifier(message="Plain message")
    await notifier.async_notify(_context())
    (post,) = _call_posts(vobiz_emulator)
    assert post.body["to"] == CALLEE


# -- shape -------------------------------------------------------------------------------------------------


def test_alias_and_default_dedupe_keys() -> None:
    assert send_vobiz_call_notification is VobizNotifier
    notifier = _notifier()
    assert notifier.default_dedupe_key(_context()) == "nightly/manual__2026-11-27/load"
    assert notifier.default_dedupe_key(_context(task_id=None)) == "nightly/manual__2026-11-27"
    deadline = {"dag_run": {"dag_id": "d", "run_id": "r"}, "deadline": {"id": "x1"}}
    assert notifier.default_dedupe_key(deadline) == "d/r/deadline/x1"
    with pytest.raises(VobizError, match="could not tell which DAG run"):
        notifier.default_dedupe_key({})


def test_the_module_imports_no_client_store_or_hook_at_parse_time() -> None:
    """DAG files import the notifier: only the imports inside its methods may pull in httpx or SQLAlchemy."""
    import vobiz_provider.notifications.vobiz as module

    tree = ast.parse(Path(module.__file__).read_text())
    top_level: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If):  # ``if TYPE_CHECKING:`` blocks are not run
            continue
        if isinstance(node, ast.Import):
            top_level += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            top_level.append(node.module or "")
    assert "airflow.sdk" in top_level
    heavy = (
        "httpx",
        "sqlalchemy",
        "vobiz_provider.client",
        "vobiz_provider.ledger",
        "vobiz_provider.receiver",
        "vobiz_provider.calls.placement",
        "vobiz_provider.hooks",
    )
    assert [name for name in top_level if name.startswith(heavy)] == []
