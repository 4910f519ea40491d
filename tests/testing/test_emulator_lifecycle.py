"""The emulated call lifecycle over real HTTP: outcomes, answer XML, callbacks, retries and signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from vobiz_provider.models.callbacks import HangupCallback
from vobiz_provider.testing import CallScript

TO = "14155550101"


def _place(client, handle, body) -> str:
    response = client.post(f"/Account/{handle.auth_id}/Call/", json=body)
    assert response.status_code == 201, response.text
    return response.json()["request_uuid"]


def _finish(client, handle, body, script: CallScript | None = None) -> tuple[str, dict[str, str]]:
    """Place a call, wait for its end and return its UUID and the hangup callback's fields."""
    if script is not None:
        handle.script(body.get("to", TO), script)
    call_uuid = _place(client, handle, body)
    handle.wait_for_call(call_uuid)
    hangups = handle.emulator.callbacks_of("hangup", call_uuid=call_uuid)
    assert hangups, "no hangup callback"
    return call_uuid, hangups[-1].fields


# ---------------------------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("script", "status", "code", "name", "sip", "source", "rang"),
    [
        (
            CallScript.answered(after=0.01, talk_for=0.05),
            "completed",
            4000,
            "Normal Hangup",
            "NORMAL_CLEARING",
            "Callee",
            True,
        ),
        (CallScript.busy(after=0.01), "busy", 3010, "Busy Line", "USER_BUSY", "Callee", True),
        (CallScript.no_answer(after=0.01), "no-answer", 3000, "No Answer", "NO_ANSWER", "Callee", True),
        (CallScript.rejected(after=0.01), "busy", 3020, "Rejected", "CALL_REJECTED", "Callee", True),
        (
            CallScript.failed(),
            "failed",
            2000,
            "Invalid Destination Address",
            "INVALID_NUMBER",
            "Vobiz",
            False,
        ),
        (
            CallScript.failed(cause_code=3050),
            "failed",
            3050,
            "Unallocated number",
            "UNALLOCATED_NUMBER",
            "Vobiz",
            False,
        ),
        (
            CallScript.answer_url_error(after=0.01),
            "completed",
            7011,
            "Error Reaching Answer URL",
            "NORMAL_CLEARING",
            "Error",
            True,
        ),
        (
            CallScript.invalid_xml(after=0.01),
            "completed",
            8011,
            "Invalid Answer XML",
            "NORMAL_CLEARING",
            "Error",
            True,
        ),
        (CallScript.ring_timeout(), "timeout", 6010, "Ring Timeout Reached", "NO_ANSWER", "Vobiz", True),
    ],
    ids=[
        "completed",
        "busy",
        "no-answer",
        "rejected",
        "failed",
        "failed-3050",
        "answer-url-error",
        "invalid-xml",
        "ring-timeout",
    ],
)
def test_scripted_outcome_gives_status_and_cause(
    make_emulator, connect, receiver, script, status, code, name, sip, source, rang
):
    handle = make_emulator(time_scale=0.01)
    receiver.xml("/answer", "<Response><Wait length='30'/></Response>")
    body = receiver.call_body(ring_timeout=5)
    call_uuid, fields = _finish(connect(handle), handle, body, script)

    assert fields["Event"] == "Hangup"
    assert fields["CallUUID"] == call_uuid
    assert fields["CallStatus"] == status
    assert fields["HangupCauseCode"] == str(code)
    assert fields["HangupCauseName"] == name
    assert fields["HangupCause"] == sip
    assert fields["HangupSource"] == source
    answered = status == "completed"
    assert bool(fields["AnswerTime"]) is answered
    assert (fields["BillDuration"] != "0") is answered
    assert bool(receiver.hits_for("/ring")) is rang
    contacted_answer_url = script.outcome == "completed"
    assert bool(receiver.hits_for("/answer")) is contacted_answer_url
    assert handle.calls[call_uuid].status == status


def test_end_of_xml_and_hangup_verb_and_time_limit(make_emulator, connect, receiver):
    handle = make_emulator(time_scale=0.01)
    client = connect(handle)
    handle.emulator.default_script = CallScript.answered(after=0.01, talk_for=None)

    receiver.xml("/answer", "<Response><Speak>Your order shipped.</Speak></Response>")
    _, fields = _finish(client, handle, receiver.call_body())
    assert (fields["HangupCauseCode"], fields["HangupCauseName"]) == ("4010", "End Of XML Instructions")

    receiver.xml("/answer", "<Response><Speak>Bye</Speak><Hangup/><Speak>never</Speak></Response>")
    _, fields = _finish(client, handle, receiver.call_body())
    assert (fields["HangupCauseCode"], fields["HangupSource"]) == ("4000", "Answer XML")

    receiver.xml("/answer", "<Response><Wait length='60'/></Response>")
    _, fields = _finish(client, handle, receiver.call_body(time_limit=5))
    assert (fields["HangupCauseCode"], fields["HangupCauseName"]) == ("6000", "Scheduled Hangup")


def test_hangup_on_ring_ends_a_ringing_call(make_emulator, connect, receiver):
    handle = make_emulator(time_scale=0.01)
    _, fields = _finish(
        connect(handle), handle, receiver.call_body(hangup_on_ring=3), CallScript.answered(after=2.0)
    )
    assert (fields["CallStatus"], fields["HangupCauseCode"]) == ("timeout", "6010")
    assert receiver.hits_for("/answer") == []


def test_delete_before_answer_cancels_and_after_answer_hangs_up(emulator, client, receiver):
    emulator.script(TO, CallScript.answered(after=5.0))
    call_uuid = _place(client, emulator, receiver.call_body())
    emulator.wait_for_callbacks("ring", call_uuid=call_uuid)
    assert client.delete(f"/Account/{emulator.auth_id}/Call/{call_uuid}/").status_code == 204
    emulator.wait_for_call(call_uuid)
    fields = emulator.emulator.callbacks_of("hangup", call_uuid=call_uuid)[0].fields
    assert (fields["CallStatus"], fields["HangupCauseCode"], fields["HangupSource"]) == (
        "cancel",
        "1000",
        "API Request",
    )
    assert fields["HangupCause"] == "ORIGINATOR_CANCEL"

    emulator.script(TO, CallScript.answered(after=0.01, talk_for=None))
    receiver.xml("/answer", "<Response><Wait length='30'/></Response>")
    call_uuid = _place(client, emulator, receiver.call_body())
    emulator.wait_for_callbacks("answer", call_uuid=call_uuid)
    assert client.delete(f"/Account/{emulator.auth_id}/Call/{call_uuid}").status_code == 204
    emulator.wait_for_call(call_uuid)
    fields = emulator.emulator.callbacks_of("hangup", call_uuid=call_uuid)[0].fields
    assert (fields["CallStatus"], fields["HangupCauseCode"], fields["HangupSource"]) == (
        "completed",
        "4000",
        "API Request",
    )


def test_bulk_dial_runs_each_destination_with_its_own_script(emulator, client, receiver):
    emulator.script("14155550101", CallScript.busy(after=0.01))
    emulator.script("14155550102", CallScript.no_answer(after=0.01))
    request_uuid = _place(client, emulator, receiver.call_body(to="14155550101<14155550102"))
    hangups = emulator.wait_for_callbacks("hangup", count=2)
    by_to = {h.fields["To"]: h.fields for h in hangups}
    assert by_to["14155550101"]["CallStatus"] == "busy"
    assert by_to["14155550102"]["CallStatus"] == "no-answer"
    assert {f["RequestUUID"] for f in by_to.values()} == {request_uuid}
    assert len({f["CallUUID"] for f in by_to.values()}) == 2


# ---------------------------------------------------------------------------------------------- callbacks


def test_callbacks_are_form_encoded_posts_in_order_with_the_webhook_user_agent(emulator, client, receiver):
    receiver.xml("/answer", "<Response><Speak>Hi</Speak></Response>")
    call_uuid = _place(client, emulator, receiver.call_body())
    emulator.wait_for_call(call_uuid)
    paths = [hit.path for hit in receiver.hits]
    assert paths == ["/ring", "/answer", "/hangup"]
    for hit in receiver.hits:
        assert hit.method == "POST"
        assert hit.headers["content-type"] == "application/x-www-form-urlencoded"
        assert hit.headers["user-agent"] == "Vobiz-Webhook/1.0"
        assert hit.form["CallUUID"] == call_uuid
    ring, answer, hangup = (hit.form for hit in receiver.hits)
    assert (ring["Event"], ring["CallStatus"]) == ("Ring", "ringing")
    assert (answer["Event"], answer["CallStatus"]) == ("StartApp", "in-progress")
    assert answer["ALegUUID"] == call_uuid
    assert hangup["Event"] == "Hangup"
    assert int(hangup["Duration"]) >= 1 and hangup["BillDuration"] == "60"


def test_get_callbacks_carry_the_fields_in_the_query(emulator, client, receiver):
    receiver.xml("/answer", "<Response><Speak>Hi</Speak></Response>")
    body = receiver.call_body(
        answer_url=receiver.url("/answer?tenant=7"),
        answer_method="GET",
        hangup_method="GET",
        ring_method="GET",
    )
    call_uuid = _place(client, emulator, body)
    emulator.wait_for_call(call_uuid)
    for path, event in (("/ring", "Ring"), ("/answer", "StartApp"), ("/hangup", "Hangup")):
        (hit,) = receiver.hits_for(path)
        assert hit.method == "GET"
        assert hit.form == {}
        assert hit.query["Event"] == event
        assert hit.query["CallUUID"] == call_uuid
    assert receiver.hits_for("/answer")[0].query["tenant"] == "7"


def test_hangup_times_are_local_times_in_the_console_timezone(make_emulator, connect, receiver):
    handle = make_emulator(timezone="Asia/Kolkata")
    receiver.xml("/answer", "<Response/>")
    call_uuid, fields = _finish(connect(handle), handle, receiver.call_body())
    call = handle.calls[call_uuid]
    local_start = call.created_at.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
    assert fields["StartTime"] == local_start
    parsed = HangupCallback.from_form(fields, timezone="Asia/Kolkata")
    assert abs(parsed.end_time - call.end_at) < timedelta(seconds=1)
    assert parsed.answer_time is not None


def test_non_200_callbacks_are_retried_then_given_up(emulator, client, receiver):
    receiver.reply("/hangup", status=200)
    receiver.reply("/hangup", status=500, times=2)
    receiver.xml("/answer", "<Response/>")
    call_uuid = _place(client, emulator, receiver.call_body())
    emulator.wait_for_call(call_uuid)
    attempts = emulator.emulator.callbacks_of("hangup", call_uuid=call_uuid)
    assert [(a.attempt, a.status) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert len(receiver.hits_for("/hangup")) == 3

    receiver.reply("/ring", status=503)
    call_uuid = _place(client, emulator, receiver.call_body())
    emulator.wait_for_call(call_uuid)
    attempts = emulator.emulator.callbacks_of("ring", call_uuid=call_uuid)
    assert [a.status for a in attempts] == [503, 503, 503, 503]  # the first try and 3 retries


def _expected(url: str, nonce: str, token: str, version: str) -> str:
    """The documented algorithm, by hand: HMAC-SHA256 over the query-less URL and the nonce."""
    base = url.split("?", 1)[0]
    message = base + nonce if version == "v2" else base + "." + nonce
    return base64.b64encode(hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()).decode()


#: What the provider puts in front of the host of its callback URLs (any credentials will do for Vobiz).
CREDENTIALS = "vobiz:s3cret-derived"


def _credentialed(url: str) -> str:
    return url.replace("http://", f"http://{CREDENTIALS}@", 1)


def _credentialed_body(receiver, **fields):
    urls = {"answer_url": "/answer", "hangup_url": "/hangup", "ring_url": "/ring"}
    body = receiver.call_body(**{name: _credentialed(receiver.url(path)) for name, path in urls.items()})
    body.update({name: value for name, value in fields.items()})
    return body


def _signed(hit) -> bool:
    return any(k.startswith("x-vobiz-signature") for k in hit.headers)


def test_callbacks_are_signed_as_documented(make_emulator, connect, receiver):
    handle = make_emulator(main_account_token="parent-token")
    receiver.xml("/answer", "<Response/>")
    body = _credentialed_body(
        receiver, hangup_url=_credentialed(receiver.url("/hangup?x=1")), hangup_method="GET"
    )
    call_uuid = _place(connect(handle), handle, body)
    handle.wait_for_call(call_uuid)
    assert len(receiver.hits) == 3
    for hit in receiver.hits:
        headers = hit.headers
        nonce = headers["x-vobiz-signature-v3-nonce"]
        assert len(nonce) == 20 and nonce.isdigit()
        assert headers["x-vobiz-signature-v2-nonce"] == nonce
        # the URL as the receiver sees it: no user:password@ (Vobiz's Node/Go/Ruby samples, the default)
        assert headers["x-vobiz-signature-v2"] == _expected(hit.url, nonce, handle.auth_token, "v2")
        assert headers["x-vobiz-signature-v3"] == _expected(hit.url, nonce, handle.auth_token, "v3")
        assert headers["x-vobiz-signature-ma-v2"] == _expected(hit.url, nonce, "parent-token", "v2")
        assert headers["x-vobiz-signature-ma-v3"] == _expected(hit.url, nonce, "parent-token", "v3")
        # an HTTP client sends a URL's credentials as basic auth
        assert headers["authorization"] == "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()
    nonces = {hit.headers["x-vobiz-signature-v3-nonce"] for hit in receiver.hits}
    assert len(nonces) == 3


def test_only_urls_with_credentials_are_signed_by_default(emulator, client, receiver):
    """As Vobiz: "Signature headers are emitted only when the callback URL has auth credentials"."""
    receiver.xml("/answer", "<Response/>")
    body = receiver.call_body(hangup_url=_credentialed(receiver.url("/hangup")))  # ring and answer: none
    emulator.wait_for_call(_place(client, emulator, body))
    signed = {hit.path: _signed(hit) for hit in receiver.hits}
    assert signed == {"/ring": False, "/answer": False, "/hangup": True}
    (hangup,) = receiver.hits_for("/hangup")
    nonce = hangup.headers["x-vobiz-signature-v3-nonce"]
    assert hangup.headers["x-vobiz-signature-v3"] == _expected(hangup.url, nonce, emulator.auth_token, "v3")


def test_signing_always_signs_urls_without_credentials(make_emulator, connect, receiver):
    handle = make_emulator(sign_callbacks="always")
    receiver.xml("/answer", "<Response/>")
    handle.wait_for_call(_place(connect(handle), handle, receiver.call_body()))
    assert len(receiver.hits) == 3
    assert all(_signed(hit) for hit in receiver.hits)


def test_signatures_over_the_url_with_its_credentials_kept(make_emulator, connect, receiver):
    """Vobiz's Python sample signs ``scheme://user:password@host/path``."""
    handle = make_emulator(signed_url_form="kept")
    receiver.xml("/answer", "<Response/>")
    handle.wait_for_call(_place(connect(handle), handle, _credentialed_body(receiver)))
    assert len(receiver.hits) == 3
    for hit in receiver.hits:
        kept = _credentialed(hit.url)
        nonce = hit.headers["x-vobiz-signature-v3-nonce"]
        assert hit.headers["x-vobiz-signature-v2"] == _expected(kept, nonce, handle.auth_token, "v2")
        assert hit.headers["x-vobiz-signature-v3"] == _expected(kept, nonce, handle.auth_token, "v3")
        assert hit.headers["x-vobiz-signature-v3"] != _expected(hit.url, nonce, handle.auth_token, "v3")


@pytest.mark.parametrize("off", ["never", False])
def test_unsigned_callbacks_when_signing_is_off(make_emulator, connect, receiver, off):
    handle = make_emulator(sign_callbacks=off)
    assert handle.emulator.settings.sign_callbacks == "never"
    receiver.xml("/answer", "<Response/>")
    handle.wait_for_call(_place(connect(handle), handle, _credentialed_body(receiver)))
    assert len(receiver.hits) == 3
    assert not any(_signed(hit) for hit in receiver.hits)


# ---------------------------------------------------------------------------------------------- answer XML


def test_gather_posts_the_scripted_digits_and_follows_the_action_xml(emulator, client, receiver):
    emulator.script(TO, CallScript.answered(after=0.01, talk_for=None, digits="12#9"))
    receiver.xml(
        "/answer",
        f'<Response><Gather action="{receiver.url("/gather")}" numDigits="4"><Speak>Press 1</Speak></Gather>'
        "<Speak>not reached</Speak></Response>",
    )
    receiver.xml("/gather", "<Response><Speak>Thanks</Speak><Hangup/></Response>")
    call_uuid, fields = _finish(client, emulator, receiver.call_body())
    (gather,) = receiver.hits_for("/gather")
    assert gather.form["Digits"] == "12"  # up to the finishOnKey
    assert gather.form["InputType"] == "dtmf"
    assert gather.form["CallUUID"] == call_uuid
    assert (fields["HangupCauseCode"], fields["HangupSource"]) == ("4000", "Answer XML")


def test_gather_timeout_posts_empty_digits_and_falls_through(make_emulator, connect, receiver):
    handle = make_emulator(time_scale=0.01)
    handle.script(TO, CallScript.answered(after=0.01, talk_for=None, digits=None))
    receiver.xml(
        "/answer",
        f'<Response><Gather action="{receiver.url("/gather")}" executionTimeout="5"/>'
        f"<Redirect>{receiver.url('/after')}</Redirect></Response>",
    )
    receiver.xml("/gather", "<Response><Hangup/></Response>")
    receiver.xml("/after", "<Response><Speak>fell through</Speak></Response>")
    _, fields = _finish(connect(handle), handle, receiver.call_body())
    (gather,) = receiver.hits_for("/gather")
    assert (gather.form["Digits"], gather.form["Speech"]) == ("", "")
    (after,) = receiver.hits_for("/after")
    assert after.form["Event"] == "Redirect"
    assert fields["HangupCauseCode"] == "4010"


def test_redirect_fetches_the_new_document(emulator, client, receiver):
    emulator.script(TO, CallScript.answered(after=0.01, talk_for=None))
    receiver.xml("/answer", f'<Response><Redirect method="GET">{receiver.url("/next")}</Redirect></Response>')
    receiver.xml("/next", "<Response><Hangup/></Response>")
    _, fields = _finish(client, emulator, receiver.call_body())
    (hit,) = receiver.hits_for("/next")
    assert (hit.method, hit.query["Event"]) == ("GET", "Redirect")
    assert fields["HangupCauseCode"] == "4000"


@pytest.mark.parametrize(
    ("document", "content_type"),
    [
        ("<Response><GetDigits action='http://x.example/a'/></Response>", "application/xml"),
        ("<Response><Speak foo='1'>Hi</Speak></Response>", "application/xml"),
        ("<Response><Say>Hi</Say></Response>", "text/xml"),
        ("<Response><Speak>Hi</Response>", "application/xml"),
        ("<Response><Speak>Hi</Speak></Response>", "text/html"),
        ("<Response><Speak>" + "a" * 110_000 + "</Speak></Response>", "application/xml"),
        ("<Answer/>", "application/xml"),
    ],
    ids=["GetDigits", "unknown-attribute", "unknown-verb", "malformed", "text/html", "too-large", "root"],
)
def test_invalid_answer_xml_hangs_up_with_8011(emulator, client, receiver, document, content_type):
    emulator.script(TO, CallScript.answered(after=0.01, talk_for=None))
    receiver.reply("/answer", body=document, content_type=content_type)
    _, fields = _finish(client, emulator, receiver.call_body())
    assert (fields["HangupCauseCode"], fields["HangupCauseName"]) == ("8011", "Invalid Answer XML")
    assert len(receiver.hits_for("/answer")) == 1  # a 2xx answer is not retried


def test_unreachable_answer_url_is_retried_then_7011(emulator, client, receiver, dead_url):
    emulator.script(TO, CallScript.answered(after=0.01, talk_for=None))
    call_uuid, fields = _finish(client, emulator, receiver.call_body(answer_url=dead_url))
    assert (fields["HangupCauseCode"], fields["HangupCauseName"]) == ("7011", "Error Reaching Answer URL")
    attempts = emulator.emulator.callbacks_of("answer", call_uuid=call_uuid)
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert all(a.status is None and a.error for a in attempts)


def test_failing_answer_url_falls_back_to_fallback_url(emulator, client, receiver):
    emulator.script(TO, CallScript.answered(after=0.01, talk_for=None))
    receiver.reply("/answer", status=500)
    receiver.xml("/fallback", "<Response><Hangup/></Response>")
    body = receiver.call_body(fallback_url=receiver.url("/fallback"))
    _, fields = _finish(client, emulator, body)
    assert len(receiver.hits_for("/answer")) == 4
    (fallback,) = receiver.hits_for("/fallback")
    assert fallback.form["Event"] == "StartApp"
    assert fields["HangupCauseCode"] == "4000"


# ------------------------------------------------------------------------------------- machine detection


def test_machine_detection_reports_and_hangs_up_a_machine(emulator, client, receiver):
    emulator.script(TO, CallScript.machine(after=0.01, talk_for=None))
    receiver.xml("/answer", "<Response><Wait length='30'/></Response>")
    body = receiver.call_body(machine_detection="hangup", machine_detection_url=receiver.url("/amd"))
    _, fields = _finish(client, emulator, body)
    (amd,) = receiver.hits_for("/amd")
    assert (amd.form["Event"], amd.form["Machine"], amd.form["IfMachine"]) == (
        "MachineDetection",
        "true",
        "hangup",
    )
    assert (fields["HangupCauseCode"], fields["HangupCauseName"]) == ("9100", "Machine Detected")


def test_machine_detection_reports_a_person_and_the_call_goes_on(emulator, client, receiver):
    emulator.script(TO, CallScript.answered(after=0.01, talk_for=0.05))
    receiver.xml("/answer", "<Response><Wait length='30'/></Response>")
    body = receiver.call_body(machine_detection="true", machine_detection_url=receiver.url("/amd"))
    _, fields = _finish(client, emulator, body)
    (amd,) = receiver.hits_for("/amd")
    assert (amd.form["Machine"], amd.form["IfMachine"]) == ("false", "continue")
    assert fields["HangupCauseCode"] == "4000"


def test_synchronous_machine_hangup_skips_the_answer_url(emulator, client, receiver):
    emulator.script(TO, CallScript.machine(after=0.01))
    _, fields = _finish(client, emulator, receiver.call_body(machine_detection="hangup"))
    assert fields["HangupCauseCode"] == "9100"
    assert receiver.hits_for("/answer") == []


# ---------------------------------------------------------------------------------------------- live-call API


def test_transfer_replaces_the_running_xml(emulator, client, receiver):
    emulator.script(TO, CallScript.answered(after=0.01, talk_for=None))
    receiver.xml("/answer", "<Response><Wait length='30'/></Response>")
    receiver.xml("/transfer", "<Response><Speak>moved</Speak><Hangup/></Response>")
    call_uuid = _place(client, emulator, receiver.call_body())
    emulator.wait_for_callbacks("answer", call_uuid=call_uuid)
    path = f"/Account/{emulator.auth_id}/Call/{call_uuid}/"

    refused = client.post(path, json={"legs": "aleg"})
    assert refused.status_code == 400 and "aleg_url" in refused.json()["error"]
    response = client.post(path, json={"legs": "aleg", "aleg_url": receiver.url("/transfer")})
    assert response.status_code == 202
    assert response.json()["message"] == "call transferred"
    emulator.wait_for_call(call_uuid)
    (hit,) = receiver.hits_for("/transfer")
    assert hit.form["Event"] == "Transfer"
    fields = emulator.emulator.callbacks_of("hangup", call_uuid=call_uuid)[0].fields
    assert (fields["HangupCauseCode"], fields["HangupSource"]) == ("4000", "Answer XML")
    assert client.post(path, json={"aleg_url": receiver.url("/transfer")}).status_code == 404


def test_live_call_actions_need_a_call_in_progress(emulator, client, receiver):
    emulator.script(TO, CallScript.answered(after=0.01, talk_for=None))
    receiver.xml("/answer", "<Response><Wait length='30'/></Response>")
    call_uuid = _place(client, emulator, receiver.call_body())
    emulator.wait_for_callbacks("answer", call_uuid=call_uuid)
    base = f"/Account/{emulator.auth_id}/Call/{call_uuid}"
    assert client.post(f"{base}/Speak/", json={"text": "hello"}).json()["message"] == "speak started"
    assert client.post(f"{base}/Play/", json={"urls": "https://e.x/a.mp3"}).status_code == 202
    assert client.post(f"{base}/DTMF/", json={"digits": "12x"}).status_code == 400
    assert client.post(f"{base}/DTMF/", json={"digits": "12w3"}).status_code == 202
    assert client.delete(f"{base}/Speak/").status_code == 204
    recording = client.post(f"{base}/Record/", json={"file_format": "wav"}).json()
    assert recording["url"].endswith(f"{recording['recording_id']}.wav")
    assert client.delete(f"{base}/Record/").status_code == 204
    client.delete(f"{base}/")
    emulator.wait_for_call(call_uuid)
    assert client.post(f"{base}/Speak/", json={"text": "too late"}).status_code == 404
