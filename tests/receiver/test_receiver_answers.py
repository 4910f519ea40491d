"""What the receiver answers when Vobiz fetches a call's answer URL or posts its keypad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from _ledger_helpers import place, store_callback, token_for

from vobiz_provider.config import VobizSettings
from vobiz_provider.correlation import CorrelationToken, callback_credentials, callback_url
from vobiz_provider.ledger import CallLedger
from vobiz_provider.models.answer import AnswerSpec
from vobiz_provider.receiver.answer_xml import answer_response_for, gather_response_for, xml_response_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BASE = "https://hooks.example.com/vobiz"
SECRET = "answers-test-secret-0123456789abcdef"


def _children(xml: str) -> list[ET.Element]:
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml.split("\n", 1)[1])
    assert root.tag == "Response"
    return list(root)


def _token(try_number: int = 1) -> CorrelationToken:
    return CorrelationToken(dag_id="alerts", run_id="manual__1", task_id="page", try_number=try_number)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallLedger]:
    store = CallLedger(f"sqlite:///{tmp_path / 'callbacks.db'}")
    yield store
    store.dispose()


@pytest.fixture
def settings() -> VobizSettings:
    return VobizSettings(callback_secret=SECRET, callback_base_url="https://fallback.example.com/vobiz")


FIELDS = {"CallUUID": "c1", "RequestUUID": "req-1", "To": "+919876543210"}


def _live_call(store: CallLedger, correlation: CorrelationToken | None = None) -> None:
    """The call ``req-1``/``c1`` placed by ``correlation``'s try, answered and still up."""
    correlation = correlation or _token()
    place(store, "req-1", ["+919876543210"], correlation=correlation)
    answered = {**FIELDS, "Event": "StartApp", "CallStatus": "in-progress"}
    assert store_callback(store, "answer", answered, correlation=correlation, bind=False).stored


def _answer(store: CallLedger, settings: VobizSettings, **kwargs: object) -> str | None:
    fields = kwargs.pop("fields", FIELDS)
    correlation = kwargs.pop("correlation", _token())
    token = kwargs.pop("token", token_for(correlation, "answer", secret=SECRET))
    return answer_response_for(store, correlation, settings, fields=fields, token=token, **kwargs)  # type: ignore[arg-type]


# -- the receiver's entry points ---------------------------------------------------------------------------


def test_the_gather_action_points_at_the_stored_receiver_with_the_token_as_received(
    store: CallLedger, settings: VobizSettings
) -> None:
    correlation = _token()
    # Issued under a secret that is now only a fallback: the action URL must not come back re-signed
    # with the current one (finding 8: a rotation bypass).
    token = token_for(correlation, "answer", secret="an-older-callback-secret-0123456789")
    spec = AnswerSpec.build(message="Hello", gather={"prompt": "Press 1", "num_digits": 1})
    store.save_answer(correlation, spec, callback_base_url=BASE)
    _live_call(store)
    assert "Hello" not in callback_url(BASE, "answer", token)

    xml = _answer(store, settings, token=token)
    assert xml is not None
    gather = _children(xml)[1]
    action = urlsplit(gather.attrib["action"])
    assert f"{action.scheme}://{action.hostname}{action.path}" == f"{BASE}/callbacks/gather"
    assert parse_qs(action.query)["t"] == [token]
    # With credentials, so that Vobiz signs the action too; they grant nothing (the token is checked).
    assert (action.username, action.password) == callback_credentials(token, settings.signing_secret)


def test_answer_uses_the_settings_base_url_when_none_was_stored(
    store: CallLedger, settings: VobizSettings
) -> None:
    store.save_answer(_token(), AnswerSpec.build(gather={"prompt": "Press 1"}))
    _live_call(store)
    xml = _answer(store, settings)
    assert xml is not None
    action = urlsplit(_children(xml)[0].attrib["action"])
    assert (action.hostname, action.path, action.username) == (
        "fallback.example.com",
        "/vobiz/callbacks/gather",
        "vobiz",
    )


def test_nothing_stored_means_no_answer_document(store: CallLedger, settings: VobizSettings) -> None:
    store.save_answer(_token(try_number=1), AnswerSpec.build(message="first try"))
    _live_call(store, _token(try_number=2))
    assert _answer(store, settings, correlation=_token(try_number=2)) is None
    assert gather_response_for(store, _token(try_number=2), {**FIELDS, "Digits": "1"}) is None


def test_the_message_is_served_only_for_a_live_call_of_the_try(
    store: CallLedger, settings: VobizSettings
) -> None:
    store.save_answer(_token(), AnswerSpec.build(message="Your PIN is 4812"), callback_base_url=BASE)
    # Finding 5: no call of the try yet (any URL of the try fetching /answer reads nothing).
    assert _answer(store, settings) is None
    _live_call(store)
    assert _answer(store, settings) is not None
    assert _answer(store, settings, fields={"CallUUID": "someone-elses-call"}) is None
    assert gather_response_for(store, _token(), {"CallUUID": "someone-elses-call", "Digits": "1"}) is None
    ended = {**FIELDS, "Event": "Hangup", "CallStatus": "completed", "HangupCause": "NORMAL_CLEARING"}
    assert store_callback(store, "hangup", ended, correlation=_token(), bind=False).stored
    # Long after the call ended, the same URL reads nothing.
    assert _answer(store, settings) is None
    assert gather_response_for(store, _token(), {**FIELDS, "Digits": "1"}) is None


def test_gather_response_for_reads_the_posted_digits(store: CallLedger, settings: VobizSettings) -> None:
    store.save_answer(_token(), AnswerSpec.build(gather={"prompt": "Press 1"}), callback_base_url=BASE)
    _live_call(store)
    replied = gather_response_for(store, _token(), {**FIELDS, "Digits": "1"})
    timed_out = gather_response_for(store, _token(), {**FIELDS, "Digits": ""})
    assert replied is not None and [v.tag for v in _children(replied)] == ["Speak", "Hangup"]
    assert timed_out is not None and _children(timed_out) == []


def test_xml_response_for_dispatches_by_kind(store: CallLedger, settings: VobizSettings) -> None:
    store.save_answer(_token(), AnswerSpec.build(message="Hi"), callback_base_url=BASE)
    _live_call(store)
    token = token_for(_token(), "answer", secret=SECRET)
    answer = xml_response_for("answer", store, _token(), FIELDS, settings, token=token)
    assert answer is not None and _children(answer)[0].text == "Hi"
    assert xml_response_for("hangup", store, _token(), FIELDS, settings, token=token) is None
