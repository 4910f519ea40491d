"""What the receiver answers when Vobiz fetches a call's answer URL or posts its keypad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from vobiz_provider.config import VobizSettings
from vobiz_provider.correlation import CorrelationToken, callback_url
from vobiz_provider.ledger import CallLedger
from vobiz_provider.models.answer import AnswerSpec
from vobiz_provider.receiver.answer_xml import answer_response_for, gather_response_for, xml_response_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BASE = "https://hooks.example.com/vobiz"
SECRET = "answers-test-secret"


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


# -- the receiver's entry points ---------------------------------------------------------------------------


def test_the_gather_action_points_at_the_stored_receiver_with_the_same_token(
    store: CallLedger, settings: VobizSettings
) -> None:
    correlation = _token()
    token = correlation.encode(SECRET)
    spec = AnswerSpec.build(message="Hello", gather={"prompt": "Press 1", "num_digits": 1})
    store.save_answer(correlation, spec, callback_base_url=BASE)
    assert "Hello" not in callback_url(BASE, "answer", token)

    xml = answer_response_for(store, correlation, settings)
    assert xml is not None
    gather = _children(xml)[1]
    action = urlsplit(gather.attrib["action"])
    assert f"{action.scheme}://{action.netloc}{action.path}" == f"{BASE}/callbacks/gather"
    (action_token,) = parse_qs(action.query)["t"]
    assert CorrelationToken.decode(action_token, SECRET) == correlation


def test_answer_uses_the_settings_base_url_when_none_was_stored(
    store: CallLedger, settings: VobizSettings
) -> None:
    store.save_answer(_token(), AnswerSpec.build(gather={"prompt": "Press 1"}))
    xml = answer_response_for(store, _token(), settings)
    assert xml is not None
    assert (
        _children(xml)[0]
        .attrib["action"]
        .startswith("https://fallback.example.com/vobiz/callbacks/gather?t=")
    )


def test_nothing_stored_means_no_answer_document(store: CallLedger, settings: VobizSettings) -> None:
    store.save_answer(_token(try_number=1), AnswerSpec.build(message="first try"))
    assert answer_response_for(store, _token(try_number=2), settings) is None
    assert gather_response_for(store, _token(try_number=2), {"Digits": "1"}) is None


def test_gather_response_for_reads_the_posted_digits(store: CallLedger, settings: VobizSettings) -> None:
    store.save_answer(_token(), AnswerSpec.build(gather={"prompt": "Press 1"}), callback_base_url=BASE)
    replied = gather_response_for(store, _token(), {"Digits": "1", "CallUUID": "c"})
    timed_out = gather_response_for(store, _token(), {"Digits": "", "CallUUID": "c"})
    assert replied is not None and [v.tag for v in _children(replied)] == ["Speak", "Hangup"]
    assert timed_out is not None and _children(timed_out) == []


def test_xml_response_for_dispatches_by_kind(store: CallLedger, settings: VobizSettings) -> None:
    store.save_answer(_token(), AnswerSpec.build(message="Hi"), callback_base_url=BASE)
    answer = xml_response_for("answer", store, _token(), {}, settings)
    assert answer is not None and _children(answer)[0].text == "Hi"
    assert xml_response_for("hangup", store, _token(), {}, settings) is None
