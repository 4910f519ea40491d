"""A callback URL authorizes its own call and nothing else (security review findings 1, 2, 3 and 5).

Each test is a finding of the review reproduced over real HTTP against the receiver on loopback, in the
weakest configuration (``require_signatures = False``, set by the fixture below; the default was off when
the review ran): with one valid callback URL, the attacker tries to reach another task's call, to plant
calls under the URL's try, to fill the store, or to read the spoken message. The binding must hold on its
own where Vobiz signatures cannot be had. On the code before the fix every one of these succeeded.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from _ledger_helpers import token_for
from test_app import (
    SECRET,
    Receiver,
    answer_fields,
    call_row,
    event_count,
    hangup_fields,
    new_uuid,
    nothing_stored,
    ring_fields,
    running_receiver,
    ti,
)

from vobiz_provider.correlation import KINDS_OF_URL, callback_url
from vobiz_provider.ledger.schema import calls, events
from vobiz_provider.models.answer import AnswerSpec
from vobiz_provider.receiver.answer_xml import EMPTY_XML_RESPONSE
from vobiz_provider.receiver.pipeline import SETTINGS_TTL

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _signatures_not_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented switch for setups without signatures: what a URL holder can do there is bounded."""
    monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "False")


#: The try that holds the leaked URL, and the try whose call it goes after.
ATTACKER = ti(dag_id="marketing", task_id="newsletter_call")
VICTIM = ti(dag_id="payments", task_id="confirm_payment")


def _victim_call(receiver: Receiver) -> tuple[str, str]:
    """The victim's call: recorded by its try, ringing. Returns its (CallUUID, RequestUUID), which the
    review found in task logs, XCom, trigger kwargs and the receiver's INFO line."""
    call_uuid = new_uuid()
    assert receiver.post("ring", ring_fields(call_uuid), correlation=VICTIM).status_code == 200
    return call_uuid, f"req-{call_uuid}"


def _attacker_call(receiver: Receiver) -> str:
    """The attacker's own call, so that its URL belongs to a try that really placed one."""
    call_uuid = new_uuid()
    receiver.place(ring_fields(call_uuid), ATTACKER)
    return call_uuid


# -- finding 1: one URL rewrote any other call ---------------------------------------------------------------


def test_a_url_cannot_touch_another_tasks_call_by_its_uuids(receiver: Receiver) -> None:
    victim_call, victim_request = _victim_call(receiver)
    _attacker_call(receiver)
    forged = [
        # The review's repro: gather digits, then hangup, on the victim's RequestUUID and CallUUID.
        ("gather", {**answer_fields(victim_call), "Digits": "1", "Event": "Gather"}),
        ("hangup", hangup_fields(victim_call)),
        # Its RequestUUID alone, with a brand-new CallUUID (the tracker once adopted any row of a request).
        ("hangup", hangup_fields(new_uuid(), RequestUUID=victim_request)),
        # Its CallUUID alone, under a RequestUUID of the attacker's own.
        ("hangup", {k: v for k, v in hangup_fields(victim_call).items() if k != "RequestUUID"}),
    ]
    for kind, fields in forged:
        response = receiver.post(kind, fields, correlation=ATTACKER, bind=False)
        assert response.status_code == 403, (kind, response.text)
    # The victim's call is untouched: still ringing, no digits, one event.
    row = call_row(receiver, victim_call)
    assert (row.status, row.terminal, row.digits, row.task_id) == ("ringing", False, None, "confirm_payment")
    assert event_count(receiver, victim_call) == 1
    assert [r.call_uuid for r in receiver.store.lookup(request_uuids=[victim_request])] == [victim_call]


def test_a_url_cannot_plant_another_live_call_under_a_victims_request(receiver: Receiver) -> None:
    """Repro 3 of finding 1: a row under the victim's request naming an unrelated live call, which the
    victim's ``hangup_on_kill`` then hung up. Neither the plant nor the hang-up target can be made."""
    victim_call, victim_request = _victim_call(receiver)
    unrelated = new_uuid()
    assert (
        receiver.post("ring", ring_fields(unrelated), correlation=ti(task_id="unrelated")).status_code == 200
    )
    plant = hangup_fields(unrelated, RequestUUID=victim_request, CallStatus="in-progress", Event="StartApp")
    for correlation in (ATTACKER, VICTIM):  # neither the attacker's URL nor even the victim's own
        response = receiver.post("answer", plant, correlation=correlation, bind=False)
        assert response.status_code == 403, response.text
    # What hangup_on_kill would hang up for the victim: its own call, nothing else.
    assert [r.call_uuid for r in receiver.store.lookup(request_uuids=[victim_request])] == [victim_call]
    assert call_row(receiver, unrelated).task_id == "unrelated"


# -- finding 2: phantom calls blocked the retries ------------------------------------------------------------


def test_a_url_cannot_plant_phantom_calls_under_its_own_try(receiver: Receiver) -> None:
    own_call = new_uuid()
    assert (
        receiver.post(
            "hangup", hangup_fields(own_call, CallStatus="busy", HangupCauseCode="3010")
        ).status_code
        == 200
    )
    request = f"req-{own_call}"
    phantoms = [
        # The review's repro: a GET with an invented CallUUID and no RequestUUID at all.
        {"CallUUID": "phantom-" + new_uuid(), "To": "+10000000000"},
        # Its own RequestUUID (it is in the task log) with an invented CallUUID, to another number...
        {**answer_fields("phantom-" + new_uuid()), "RequestUUID": request, "To": "+10000000000"},
        # ...and to the number it dialled: that destination already has its call.
        {**answer_fields("phantom-" + new_uuid()), "RequestUUID": request},
    ]
    for fields in phantoms:
        # Vobiz-style GET: the fields appended to the URL, which already carries ?t=.
        response = receiver.client.get(f"{receiver.url('answer')}&{urlencode(fields)}")
        assert response.status_code == 403, response.text
        assert "correlation token" not in response.text  # refused for what it names, not for its token
    # What the next try sees of this one: the busy call alone, so it dials again.
    attempts = receiver.store.find_attempts(
        dag_id=ti().dag_id, run_id=ti().run_id, task_id=ti().task_id, before_try=2
    )
    assert [(r.call_uuid, r.status) for r in attempts] == [(own_call, "busy")]


def test_find_attempts_ignores_rows_that_name_a_try_without_being_its_calls(receiver: Receiver) -> None:
    """Rows planted before the fix (or by code that writes the ledger directly) are not re-attached to."""
    own_call = new_uuid()
    assert receiver.post("hangup", hangup_fields(own_call, CallStatus="busy")).status_code == 200
    with receiver.store.engine.begin() as conn:
        conn.execute(
            calls.insert().values(
                call_uuid="planted",
                request_uuid="never-fired",
                ti_key=ti().ti_key,
                try_number=1,
                status="in-progress",
                rank=2,
                terminal=False,
                updated_at=sa.func.now(),
                source="callback",
            )
        )
    attempts = receiver.store.find_attempts(dag_id=ti().dag_id, run_id=ti().run_id, task_id=ti().task_id)
    assert [r.call_uuid for r in attempts] == [own_call]


def test_a_callback_before_its_task_recorded_the_call_is_deferred_not_lost(receiver: Receiver) -> None:
    """Vobiz may call back before the task has written down what POST /Call/ answered: 503, then stored."""
    correlation = ti(task_id="racing")
    receiver.store.open_placement(correlation, destinations=1, expires_at=time.time() + 3600)
    call_uuid = new_uuid()
    early = receiver.post("ring", ring_fields(call_uuid), correlation=correlation, bind=False)
    assert early.status_code == 503, early.text
    assert early.headers["Retry-After"]
    assert nothing_stored(receiver, call_uuid)
    receiver.place(ring_fields(call_uuid), correlation)  # the operator records the call
    retried = receiver.post("ring", ring_fields(call_uuid), correlation=correlation, bind=False)
    assert retried.status_code == 200, retried.text
    assert call_row(receiver, call_uuid).status == "ringing"


# -- finding 3: one URL filled the disk ----------------------------------------------------------------------


def test_one_url_stores_at_most_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__VOBIZ__MAX_CALLBACKS_PER_CALL", "4")
    with running_receiver(monkeypatch, f"sqlite:///{tmp_path / 'cb.db'}") as receiver:
        call_uuid = new_uuid()
        statuses = [
            receiver.post("ring", {**ring_fields(call_uuid), "Junk": str(index) * 500}).status_code
            for index in range(10)
        ]
        with receiver.store.engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
    assert statuses == [200] * 4 + [429] * 6
    assert stored == 4


def test_an_expired_url_is_refused(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    receiver.place(hangup_fields(call_uuid))
    token = ti().encode(SECRET, kinds=KINDS_OF_URL["hangup"], expires_at=time.time() - 1)
    response = receiver.client.post(
        callback_url(receiver.base_url, "hangup", token), data=hangup_fields(call_uuid)
    )
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
    assert nothing_stored(receiver, call_uuid)


# -- finding 5: any URL of a try read its spoken message -----------------------------------------------------


def _answer_with_message(receiver: Receiver) -> str:
    receiver.store.save_answer(
        ti(), AnswerSpec.build(message="Your PIN is 4812"), callback_base_url=receiver.base_url
    )
    call_uuid = new_uuid()
    receiver.place(answer_fields(call_uuid))
    return call_uuid


def test_the_hangup_url_cannot_read_the_message(receiver: Receiver) -> None:
    call_uuid = _answer_with_message(receiver)
    hangup_token = token_for(ti(), "hangup", secret=SECRET)
    response = receiver.client.post(
        callback_url(receiver.base_url, "answer", hangup_token), data=answer_fields(call_uuid)
    )
    assert response.status_code == 403
    assert "not issued for the answer route" in response.json()["detail"]
    assert "4812" not in response.text


def test_the_answer_url_reads_the_message_only_while_its_call_is_up(receiver: Receiver) -> None:
    call_uuid = _answer_with_message(receiver)
    first = receiver.post("answer", answer_fields(call_uuid), bind=False)
    assert first.status_code == 200 and "4812" in first.text
    assert receiver.post("hangup", hangup_fields(call_uuid), bind=False).status_code == 200
    later = receiver.post("answer", answer_fields(call_uuid), bind=False)  # a Vobiz resend: duplicate
    assert later.status_code == 200
    assert later.text == EMPTY_XML_RESPONSE and "4812" not in later.text


# -- finding 5: weak secrets ---------------------------------------------------------------------------------


def test_a_receiver_with_a_weak_secret_refuses_every_callback(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    url = receiver.url("hangup")  # issued under the strong secret
    receiver.monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET", "dev-secret")
    # Letting the receiver's cached [vobiz] settings expire is the behaviour here (time, not a guess at how
    # long something takes): they were read before setenv, so after SETTINGS_TTL they are read again.
    time.sleep(SETTINGS_TTL + 0.1)
    call_uuid = new_uuid()
    with caplog.at_level(logging.ERROR, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(call_uuid), url=url)
    assert response.status_code == 503
    assert response.json()["detail"] == "the receiver is not configured (callback_secret)"
    assert "shorter than 32 bytes" in caplog.text and "secrets.token_urlsafe(32)" in caplog.text
    assert "dev-secret" not in caplog.text
    assert nothing_stored(receiver, call_uuid)
