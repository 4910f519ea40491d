"""The callback receiver over real HTTP: uvicorn on loopback in a thread, requests with httpx.

Settings come from ``AIRFLOW__VOBIZ__*`` variables and the signing token from an ``AIRFLOW_CONN_*``
connection, as in a deployment, so the whole path (config, secrets backends, store) is exercised.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from _ledger_helpers import place, token_for, url_for
from fastapi import FastAPI
from pydantic import SecretStr

# Imported up front so that the first request of a test does not pay for them inside the response deadline.
import vobiz_provider.models.callbacks  # noqa: F401
from vobiz_provider.correlation import CorrelationToken, callback_url
from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.ledger import get_ledger
from vobiz_provider.ledger.schema import events
from vobiz_provider.models.answer import AnswerSpec
from vobiz_provider.receiver.answer_xml import EMPTY_XML_RESPONSE
from vobiz_provider.receiver.app import MOUNT_PATH, create_app
from vobiz_provider.receiver.signing_keys import SigningKeyCache, SigningKeys
from vobiz_provider.signatures import signature_headers
from vobiz_provider.testing import CallScript

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = "receiver-test-callback-secret-0123456789abcdef"
AUTH_TOKEN = "receiver-test-auth-token"
OTHER_TOKEN = "someone-elses-auth-token"


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yields ``http://127.0.0.1:<port>``."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def connection_json(token: str, **extra: str) -> str:
    return json.dumps({"conn_type": "vobiz", "login": "MA_RECEIVER1", "password": token, "extra": extra})


@dataclass
class Receiver:
    """A running receiver: where it listens, which store it writes."""

    origin: str
    store_url: str
    client: httpx.Client
    monkeypatch: pytest.MonkeyPatch

    @property
    def base_url(self) -> str:
        return f"{self.origin}{MOUNT_PATH}"

    @property
    def store(self) -> Any:
        return get_ledger(self.store_url)

    def url(self, kind: str, correlation: CorrelationToken | None = None, *, secret: str = SECRET) -> str:
        """The ``kind`` URL the placer gives Vobiz for ``correlation``'s call."""
        return url_for(self.base_url, correlation or ti(), kind, secret=secret)

    def place(self, fields: dict[str, str], correlation: CorrelationToken | None = None) -> None:
        """Record the call of ``fields`` as fired by ``correlation``'s try, as the operator does."""
        place(
            self.store,
            fields["RequestUUID"],
            [fields.get("To", "+919876543210")],
            correlation=correlation or ti(),
        )

    def post(
        self,
        kind: str,
        fields: dict[str, str],
        *,
        correlation: CorrelationToken | None = None,
        token: str | None = AUTH_TOKEN,
        url: str | None = None,
        nonce: str | None = None,
        bind: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """POST a callback; by default of a call the try placed (``bind=False``: as it comes)."""
        if bind and fields.get("RequestUUID"):
            self.place(fields, correlation)
        url = url or self.url(kind, correlation)
        headers = signature_headers(url, token, nonce=nonce) if token else {}
        headers.update(kwargs.pop("headers", {}))
        return self.client.post(url, data=fields, headers=headers, **kwargs)


def ti(**overrides: Any) -> CorrelationToken:
    values: dict[str, Any] = {
        "dag_id": "calls",
        "run_id": "manual__2026-11-27",
        "task_id": "ring_oncall",
        "map_index": -1,
        "try_number": 1,
        "conn_id": "vobiz_default",
    }
    values.update(overrides)
    return CorrelationToken(**values)


def hangup_fields(call_uuid: str, **overrides: str) -> dict[str, str]:
    fields = {
        "CallUUID": call_uuid,
        "RequestUUID": f"req-{call_uuid}",
        "ALegUUID": call_uuid,
        "ALegRequestUUID": f"req-{call_uuid}",
        "From": "+911171366900",
        "To": "+919876543210",
        "Direction": "outbound",
        "Event": "Hangup",
        "CallStatus": "completed",
        "HangupCause": "NORMAL_CLEARING",
        "HangupCauseCode": "4000",
        "HangupCauseName": "Normal Hangup",
        "HangupSource": "Callee",
        "Duration": "12",
        "BillDuration": "60",
        "StartTime": "2026-11-27 06:30:00",
        "AnswerTime": "2026-11-27 06:30:05",
        "EndTime": "2026-11-27 06:30:17",
        "SessionStart": "2026-11-27 01:00:00.000000",
    }
    fields.update(overrides)
    return fields


def ring_fields(call_uuid: str) -> dict[str, str]:
    return {
        "CallUUID": call_uuid,
        "RequestUUID": f"req-{call_uuid}",
        "ALegRequestUUID": f"req-{call_uuid}",
        "From": "+911171366900",
        "To": "+919876543210",
        "Direction": "outbound",
        "Event": "Ring",
        "CallStatus": "ringing",
        "SessionStart": "2026-11-27 01:00:00.000000",
    }


def answer_fields(call_uuid: str) -> dict[str, str]:
    return {**ring_fields(call_uuid), "Event": "StartApp", "CallStatus": "in-progress", "ALegUUID": call_uuid}


def new_uuid() -> str:
    return str(uuid.uuid4())


@contextmanager
def running_receiver(
    monkeypatch: pytest.MonkeyPatch, store_url: str, **app_kwargs: Any
) -> Iterator[Receiver]:
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET", SECRET)
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", store_url)
    # require_signatures is left as the test set it (by default on: post() signs like Vobiz; tests of
    # unsigned callbacks switch it off and say why).
    monkeypatch.setenv("AIRFLOW__VOBIZ__MAX_BODY_BYTES", "4096")
    monkeypatch.delenv("AIRFLOW__VOBIZ__SIGNATURE_CONN_IDS", raising=False)
    monkeypatch.delenv("AIRFLOW__VOBIZ__NONCE_WINDOW", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", connection_json(AUTH_TOKEN, timezone="Asia/Kolkata"))
    app_kwargs.setdefault("response_deadline", 20.0)  # a loaded CI machine must not turn tests into 503s
    root = FastAPI()
    root.mount(MOUNT_PATH, create_app(**app_kwargs))
    with serve(root) as origin, httpx.Client(timeout=30) as client:
        # The public URL is configuration, never the Host header.
        monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", f"{origin}{MOUNT_PATH}")
        yield Receiver(origin=origin, store_url=store_url, client=client, monkeypatch=monkeypatch)


# -- store inspection ----------------------------------------------------------------------------------------


def call_row(receiver: Receiver, call_uuid: str) -> Any:
    return next(iter(receiver.store.lookup(call_uuids=[call_uuid])), None)


def event_count(receiver: Receiver, call_uuid: str) -> int:
    query = sa.select(sa.func.count()).select_from(events).where(events.c.call_uuid == call_uuid)
    receiver.store.upgrade()  # idempotent; the tables exist even if nothing was ever stored
    with receiver.store.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def fire(receiver: Receiver, correlation: CorrelationToken, request: dict[str, str]) -> list[str]:
    """Place a call with receiver URLs the way the placer does: open, dial, record what Vobiz accepted."""
    receiver.store.open_placement(correlation, destinations=1, expires_at=time.time() + 3600)
    fired = VobizHook().make_call(request)
    receiver.store.register_fired_calls(
        request_uuids=fired.request_uuids, destinations=[request["to"]], correlation=correlation
    )
    return list(fired.request_uuids)


def nothing_stored(receiver: Receiver, call_uuid: str) -> bool:
    return event_count(receiver, call_uuid) == 0 and call_row(receiver, call_uuid) is None


# -- the happy paths -----------------------------------------------------------------------------------------


def test_health_needs_no_secret_and_no_store(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_receiver(monkeypatch, "postgresql://nobody@127.0.0.1:1/x") as receiver:
        monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_SECRET")
        response = receiver.client.get(f"{receiver.base_url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_signed_hangup_is_stored_before_200(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    call_uuid = new_uuid()
    correlation = ti(map_index=3, try_number=2)
    with caplog.at_level(logging.INFO, logger="vobiz_provider"):
        response = receiver.post("hangup", hangup_fields(call_uuid), correlation=correlation)

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "stored"}
    row = call_row(receiver, call_uuid)
    assert row is not None
    assert row.status == "completed"
    assert row.hangup_cause == "NORMAL_CLEARING"
    assert (row.dag_id, row.run_id, row.task_id) == (
        correlation.dag_id,
        correlation.run_id,
        correlation.task_id,
    )
    assert (row.map_index, row.try_number) == (3, 2)
    assert event_count(receiver, call_uuid) == 1
    assert f"CallUUID={call_uuid} CallStatus=completed HangupCause=NORMAL_CLEARING" in caplog.text
    assert AUTH_TOKEN not in caplog.text
    assert response.request.url.params["t"] not in caplog.text


def test_get_callback_with_fields_in_query(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    receiver.place(ring_fields(call_uuid))
    url = receiver.url("ring")
    # Vobiz appends the fields to the callback URL (already carrying ?t=); signatures ignore the query.
    response = receiver.client.get(
        f"{url}&{urlencode(ring_fields(call_uuid))}", headers=signature_headers(url, AUTH_TOKEN)
    )
    assert response.status_code == 200, response.text
    row = call_row(receiver, call_uuid)
    assert row is not None and row.status == "ringing"


def test_answer_gets_empty_xml_response(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    response = receiver.post("answer", answer_fields(call_uuid))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text == EMPTY_XML_RESPONSE
    assert call_row(receiver, call_uuid).status == "in-progress"


def test_answer_serves_the_spoken_message_the_task_stored(receiver: Receiver) -> None:
    correlation = ti(try_number=3)
    spec = AnswerSpec.build(message="Disk full on db-1")
    receiver.store.save_answer(correlation, spec, callback_base_url=receiver.base_url)
    response = receiver.post("answer", answer_fields(new_uuid()), correlation=correlation)
    other_try = receiver.post("answer", answer_fields(new_uuid()), correlation=ti(try_number=4))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Speak" in response.text and "Disk full on db-1" in response.text
    assert other_try.text == EMPTY_XML_RESPONSE  # nothing stored for that try


def test_custom_xml_responder_sees_the_stored_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def speak(stored: Any) -> str:
        seen.append(stored)
        return "<Response><Speak>Disk full on db-1</Speak></Response>"

    with running_receiver(monkeypatch, f"sqlite:///{tmp_path / 'cb.db'}", xml_responder=speak) as receiver:
        call_uuid = new_uuid()
        response = receiver.post("answer", answer_fields(call_uuid))
        ring = receiver.post("ring", ring_fields(new_uuid()))
    assert response.status_code == 200
    assert response.text == "<Response><Speak>Disk full on db-1</Speak></Response>"
    assert ring.headers["content-type"].startswith("application/json")  # only answer/gather get XML
    assert [s.callback.call_uuid for s in seen] == [call_uuid]
    assert seen[0].correlation == ti()


def test_unsigned_callback_accepted_when_signatures_not_required(receiver: Receiver) -> None:
    # The documented switch for setups where callbacks cannot arrive signed: unsigned is then accepted.
    receiver.monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "False")
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid), token=None)
    assert response.status_code == 200, response.text
    assert call_row(receiver, call_uuid).status == "completed"


def test_duplicate_is_stored_once_and_answered_200(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    first = receiver.post("hangup", hangup_fields(call_uuid))
    again = receiver.post("hangup", hangup_fields(call_uuid))  # Vobiz's retry: new nonce, same event
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"status": "duplicate"}
    assert event_count(receiver, call_uuid) == 1


def test_late_ring_after_hangup_does_not_regress(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    assert receiver.post("hangup", hangup_fields(call_uuid)).status_code == 200
    assert receiver.post("ring", ring_fields(call_uuid)).status_code == 200
    row = call_row(receiver, call_uuid)
    assert row.status == "completed"
    assert row.hangup_cause == "NORMAL_CLEARING"


def test_signature_checked_on_configured_public_url_not_host_header(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    receiver.place(hangup_fields(call_uuid))
    url = receiver.url("hangup")
    forged_host = "evil.example:8443"
    # Signed for the URL the attacker makes the receiver believe it has: refused.
    spoofed = url.replace(f"@{receiver.origin.removeprefix('http://')}", f"@{forged_host}")
    assert spoofed != url
    refused = receiver.client.post(
        url,
        data=hangup_fields(call_uuid),
        headers={**signature_headers(spoofed, AUTH_TOKEN), "Host": forged_host},
    )
    assert refused.status_code == 403
    assert nothing_stored(receiver, call_uuid)
    # Signed for the configured public URL, whatever the Host header says: accepted.
    accepted = receiver.client.post(
        url,
        data=hangup_fields(call_uuid),
        headers={**signature_headers(url, AUTH_TOKEN), "Host": forged_host},
    )
    assert accepted.status_code == 200, accepted.text


def test_connection_callback_base_url_is_also_a_public_url(receiver: Receiver) -> None:
    public = "https://hooks.example.com/vobiz"
    receiver.monkeypatch.setenv(
        "AIRFLOW_CONN_VOBIZ_DEFAULT", connection_json(AUTH_TOKEN, callback_base_url=public)
    )
    call_uuid = new_uuid()
    receiver.place(hangup_fields(call_uuid))
    token = token_for(ti(), "hangup", secret=SECRET)
    # Vobiz called the public URL (a proxy forwarded it): the signature covers that one.
    headers = signature_headers(callback_url(public, "hangup", token), AUTH_TOKEN)
    response = receiver.client.post(
        callback_url(receiver.base_url, "hangup", token), data=hangup_fields(call_uuid), headers=headers
    )
    assert response.status_code == 200, response.text


def test_rotated_auth_token_applies_without_restart(receiver: Receiver) -> None:
    assert receiver.post("ring", ring_fields(new_uuid())).status_code == 200  # caches the old token
    receiver.monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", connection_json("rotated-auth-token"))
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid), token="rotated-auth-token")
    assert response.status_code == 200, response.text
    # The old token is no longer accepted once the connection was re-read.
    assert receiver.post("ring", ring_fields(new_uuid())).status_code == 403


def test_connections_are_never_read_on_the_event_loop(receiver: Receiver) -> None:
    import asyncio

    from vobiz_provider.receiver import pipeline

    where: list[str] = []
    load = pipeline.load_signing_keys

    def watched(conn_id: str) -> SigningKeys:
        try:
            asyncio.get_running_loop()
            where.append("event loop")
        except RuntimeError:
            where.append("worker thread")
        return load(conn_id)

    receiver.monkeypatch.setattr(pipeline, "load_signing_keys", watched)
    # Cold cache, warm cache (checked on the loop), then a rotated token: re-read after a failed check.
    assert [receiver.post("ring", ring_fields(new_uuid())).status_code for _ in range(3)] == [200] * 3
    receiver.monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", connection_json("rotated-auth-token"))
    rotated = receiver.post("hangup", hangup_fields(new_uuid()), token="rotated-auth-token")
    assert rotated.status_code == 200, rotated.text
    assert where == ["worker thread", "worker thread"]


# -- refusals: nothing stored --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_url", "reason"),
    [
        pytest.param(lambda r: f"{r.base_url}/callbacks/hangup", "missing correlation token", id="missing"),
        pytest.param(
            lambda r: r.url("hangup").replace("?t=", "?t=x"), "invalid correlation token", id="tampered"
        ),
        pytest.param(
            lambda r: callback_url(
                r.base_url,
                "hangup",
                token_for(ti(), "hangup", secret=SECRET).split(".")[0]
                + "."
                + token_for(ti(dag_id="other"), "hangup", secret=SECRET).split(".")[1],
            ),
            "bad signature",
            id="spliced",
        ),
        pytest.param(lambda r: r.url("hangup", secret="another-secret"), "bad signature", id="other-secret"),
    ],
)
def test_bad_correlation_token_is_403(receiver: Receiver, make_url: Any, reason: str) -> None:
    call_uuid = new_uuid()
    url = make_url(receiver)
    response = receiver.post("hangup", hangup_fields(call_uuid), url=url)
    assert response.status_code == 403
    assert reason in response.json()["detail"]
    assert nothing_stored(receiver, call_uuid)


def test_forged_signature_is_403(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid), token=OTHER_TOKEN)
    assert response.status_code == 403
    assert response.json() == {"detail": "invalid Vobiz signature"}
    assert nothing_stored(receiver, call_uuid)


def test_unsigned_callback_refused_by_default(receiver: Receiver) -> None:
    # require_signatures is on by default (the URLs carry credentials, so Vobiz signs them).
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid), token=None)
    assert response.status_code == 403
    assert "require_signatures" in response.json()["detail"]
    assert nothing_stored(receiver, call_uuid)
    assert receiver.post("hangup", hangup_fields(call_uuid)).status_code == 200  # signed: fine


def test_replayed_nonce_is_403(receiver: Receiver) -> None:
    first_uuid, replay_uuid = new_uuid(), new_uuid()
    nonce = "12345678901234567890"
    assert receiver.post("ring", ring_fields(first_uuid), nonce=nonce).status_code == 200
    # A captured signature replayed with another body (the body is not signed).
    response = receiver.post("ring", ring_fields(replay_uuid), nonce=nonce)
    assert response.status_code == 403
    assert "nonce" in response.json()["detail"]
    assert nothing_stored(receiver, replay_uuid)
    # The captured signature with a forged "hangup" body for the same call: refused, the call still rings.
    assert receiver.post("ring", hangup_fields(first_uuid), nonce=nonce).status_code == 403
    assert call_row(receiver, first_uuid).status == "ringing"
    assert event_count(receiver, first_uuid) == 1


def test_vobiz_resending_the_same_signed_request_gets_duplicate(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    nonce = "09876543210987654321"
    assert receiver.post("hangup", hangup_fields(call_uuid), nonce=nonce).json() == {"status": "stored"}
    again = receiver.post("hangup", hangup_fields(call_uuid), nonce=nonce)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert event_count(receiver, call_uuid) == 1


def test_body_too_large_is_413(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    big = hangup_fields(call_uuid, Padding="x" * 5000)
    assert receiver.post("hangup", big).status_code == 413

    # Without Content-Length (chunked), the receiver counts what it reads.
    def chunks() -> Iterator[bytes]:
        yield b"CallUUID=" + call_uuid.encode()
        for _ in range(10):
            yield b"&Padding=" + b"x" * 1000

    url = receiver.url("hangup")
    response = receiver.client.post(
        url,
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **signature_headers(url, AUTH_TOKEN)},
    )
    assert response.status_code == 413
    assert nothing_stored(receiver, call_uuid)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "reason"),
    [
        pytest.param(b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded", 400, "UTF-8", id="binary"),
        pytest.param(b"just some text", "application/x-www-form-urlencoded", 400, "form", id="not-a-form"),
        pytest.param(b"CallUUID=%ZZ%ff", "application/x-www-form-urlencoded", 400, "", id="bad-escape"),
        pytest.param(b'{"CallUUID": "x"}', "application/json", 415, "content type", id="json"),
        pytest.param(b"Event=Hangup&CallStatus=completed", None, 422, "CallUUID", id="no-call-uuid"),
        # Lenient ingest: an odd value is no refusal, but the call must still be this try's.
        pytest.param(b"CallUUID=abc&Duration=ten", None, 403, "no call was placed", id="bad-duration"),
    ],
)
def test_malformed_input_is_4xx_never_500(
    receiver: Receiver, content: bytes, content_type: str | None, status: int, reason: str
) -> None:
    url = receiver.url("hangup")
    headers = {
        "Content-Type": content_type or "application/x-www-form-urlencoded",
        **signature_headers(url, AUTH_TOKEN),
    }
    response = receiver.client.post(url, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert event_count(receiver, "abc") == 0


def test_value_too_long_for_the_store_is_stored_raw_with_its_column_empty(receiver: Receiver) -> None:
    """Lenient ingest (was 422): the hangup is not lost for one value its column cannot hold."""
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid, HangupCause="X" * 500))
    assert response.status_code == 200, response.text
    record = call_row(receiver, call_uuid)
    assert (record.status, record.hangup_cause) == ("completed", None)


def test_empty_form_segments_are_tolerated(receiver: Receiver) -> None:
    call_uuid = new_uuid()
    receiver.place(ring_fields(call_uuid))
    url = receiver.url("ring")
    query = f"{url}&&{urlencode(ring_fields(call_uuid))}&"
    response = receiver.client.get(query, headers=signature_headers(url, AUTH_TOKEN))
    assert response.status_code == 200, response.text
    assert call_row(receiver, call_uuid).status == "ringing"


def test_unknown_kind_is_404(receiver: Receiver) -> None:
    response = receiver.post(
        "voicemail", ring_fields(new_uuid()), url=f"{receiver.base_url}/callbacks/voicemail"
    )
    assert response.status_code == 404
    assert "unknown callback kind" in response.json()["detail"]


def test_store_unavailable_is_503_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_receiver(monkeypatch, "postgresql://nobody@127.0.0.1:1/x") as receiver:
        response = receiver.post("hangup", hangup_fields(new_uuid()), bind=False)
    assert response.status_code == 503
    assert response.json() == {"detail": "callback store unavailable, retry later"}
    assert int(response.headers["Retry-After"]) > 0


def test_store_outage_is_logged_once_not_per_503(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # During an outage every callback and every Vobiz retry is a 503: one warning per request made 30 s of
    # outage ~4,600 identical lines (tests/faults/test_store_outage.py); now once per interval.
    with (
        running_receiver(monkeypatch, "postgresql://nobody@127.0.0.1:1/x") as receiver,
        caplog.at_level(logging.INFO, logger="vobiz_provider"),
    ):
        statuses = [
            receiver.post("hangup", hangup_fields(new_uuid()), bind=False).status_code for _ in range(12)
        ]
    assert statuses == [503] * 12
    outage_lines = [r for r in caplog.records if "callback store is unavailable" in r.getMessage()]
    assert len(outage_lines) == 1, [r.getMessage() for r in outage_lines]
    assert outage_lines[0].levelno == logging.WARNING


def test_unexpected_error_is_503_logged_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(stored: Any) -> str:
        raise RuntimeError("the XML builder broke")

    store_url = f"sqlite:///{tmp_path / 'cb.db'}"
    with (
        running_receiver(monkeypatch, store_url, xml_responder=broken) as receiver,
        caplog.at_level(logging.INFO, logger="vobiz_provider"),
    ):
        response = receiver.post("answer", answer_fields(new_uuid()))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "the XML builder broke" in caplog.text  # with its traceback
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)
    assert AUTH_TOKEN not in caplog.text
    assert response.request.url.params["t"] not in caplog.text
    assert "the XML builder broke" not in response.text


# -- PostgreSQL ---------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_receiver_on_postgresql(pg_schema_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A schema of its own: the shared database may hold another branch's (newer) store.
    with running_receiver(monkeypatch, pg_schema_url) as receiver:
        call_uuid = new_uuid()
        assert receiver.post("ring", ring_fields(call_uuid)).status_code == 200
        assert receiver.post("hangup", hangup_fields(call_uuid)).status_code == 200
        assert receiver.post("hangup", hangup_fields(call_uuid)).json() == {"status": "duplicate"}
        assert receiver.post("ring", ring_fields(call_uuid)).status_code == 200
        row = call_row(receiver, call_uuid)
        assert row.status == "completed"
        assert event_count(receiver, call_uuid) == 2


# -- the signing-token cache ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLoader:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.token = "first-token"
        self.missing: set[str] = set()

    def __call__(self, conn_id: str) -> SigningKeys:
        self.calls.append(conn_id)
        if conn_id in self.missing:
            raise LookupError(f"{conn_id} not found")
        return SigningKeys(conn_id=conn_id, auth_token=SecretStr(self.token), timezone="Asia/Kolkata")


def test_signing_keys_are_cached_for_the_ttl() -> None:
    clock, loader = FakeClock(), CountingLoader()
    cache = SigningKeyCache(ttl=60, loader=loader, clock=clock)
    assert cache.get("vobiz_default").auth_token.get_secret_value() == "first-token"
    loader.token = "second-token"
    clock.now += 59
    assert cache.get("vobiz_default").auth_token.get_secret_value() == "first-token"
    clock.now += 2
    assert cache.get("vobiz_default").auth_token.get_secret_value() == "second-token"
    assert loader.calls == ["vobiz_default", "vobiz_default"]


def test_forced_refresh_happens_at_most_once_per_ttl() -> None:
    clock, loader = FakeClock(), CountingLoader()
    cache = SigningKeyCache(ttl=60, loader=loader, clock=clock)
    cache.get("vobiz_default")
    loader.token = "rotated-token"
    assert cache.refresh(["vobiz_default"]) is True  # a failed verification re-reads at once
    assert cache.get("vobiz_default").auth_token.get_secret_value() == "rotated-token"
    clock.now += 30
    assert cache.refresh(["vobiz_default"]) is False  # bad requests cannot hammer the secrets backend
    clock.now += 31
    assert cache.refresh(["vobiz_default"]) is True
    assert loader.calls == ["vobiz_default"] * 3


def test_unreadable_connection_is_none_and_cached(caplog: pytest.LogCaptureFixture) -> None:
    clock, loader = FakeClock(), CountingLoader()
    loader.missing.add("gone")
    cache = SigningKeyCache(ttl=60, loader=loader, clock=clock)
    assert cache.get("gone") is None
    assert cache.get("gone") is None
    assert [keys.conn_id for keys in cache.get_many(["gone", "vobiz_default", "vobiz_default"])] == [
        "vobiz_default"
    ]
    assert loader.calls == ["gone", "vobiz_default"]
    assert "Cannot read Vobiz connection 'gone'" in caplog.text


def test_signing_keys_never_show_the_token() -> None:
    keys = SigningKeys(
        conn_id="c", auth_token=SecretStr("visible-if-leaked"), main_account_token=SecretStr("x1")
    )
    assert "visible-if-leaked" not in repr(keys)
    assert "visible-if-leaked" not in str(keys)


# -- end to end with the emulator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "status"),
    [
        # talk_for=None: the callee stays on the line, so only the answer XML can end the call.
        pytest.param(CallScript.answered(after=0.05, talk_for=None), "completed", id="answered"),
        pytest.param(CallScript.busy(), "busy", id="busy"),
    ],
)
def test_emulator_callbacks_end_in_the_store(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vobiz_emulator_factory: Any,
    script: CallScript,
    status: str,
) -> None:

    emulator = vobiz_emulator_factory()
    destination = "919876543210"
    emulator.script(destination, script)
    with running_receiver(monkeypatch, f"sqlite:///{tmp_path / 'cb.db'}") as receiver:
        # The emulator signs with its account's token: the receiver must verify every callback with it.
        monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", emulator.connection_json(timezone="Asia/Kolkata"))
        monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "True")
        request = {
            "from": "911171366900",
            "to": destination,
            "answer_url": receiver.url("answer"),
            "ring_url": receiver.url("ring"),
            "ring_method": "GET",
            "hangup_url": receiver.url("hangup"),
        }
        [request_uuid] = fire(receiver, ti(), request)
        [hangup] = emulator.wait_for_callbacks("hangup", timeout=20)

    assert hangup.status == 200
    assert all(record.status == 200 for record in emulator.callbacks), [
        (r.kind, r.status) for r in emulator.callbacks
    ]
    assert {record.method for record in emulator.callbacks if record.kind == "ring"} == {"GET"}
    if status == "completed":
        # The empty <Response> lets the call go on: it ends when the XML does (4010 End Of XML Instructions).
        [answer] = [record for record in emulator.callbacks if record.kind == "answer"]
        assert answer.body == EMPTY_XML_RESPONSE
        assert hangup.fields["HangupCauseCode"] == "4010"
    [row] = receiver.store.lookup(request_uuids=[request_uuid])
    assert row.call_uuid == hangup.call_uuid
    assert row.status == status == hangup.fields["CallStatus"]
    assert row.hangup_cause_code == int(hangup.fields["HangupCauseCode"])
    assert row.hangup_cause == hangup.fields["HangupCause"]
    assert (row.dag_id, row.task_id) == ("calls", "ring_oncall")


def test_slow_handling_answers_503_in_time_and_the_retry_is_a_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def stuck(stored: Any) -> str:  # runs after the commit, like a slow disk would delay the answer
        release.wait(30)
        return EMPTY_XML_RESPONSE

    store_url = f"sqlite:///{tmp_path / 'cb.db'}"
    with running_receiver(monkeypatch, store_url, xml_responder=stuck, response_deadline=3.0) as receiver:
        call_uuid = new_uuid()
        first = receiver.post("answer", answer_fields(call_uuid))
        release.set()
        retry = receiver.post("answer", answer_fields(call_uuid))  # Vobiz retries the 503
    assert first.status_code == 503
    assert "retry later" in first.json()["detail"]
    assert first.headers["Retry-After"]
    assert retry.status_code == 200
    assert retry.text == EMPTY_XML_RESPONSE
    assert event_count(receiver, call_uuid) == 1


def test_emulator_caller_presses_a_key_at_the_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vobiz_emulator_factory: Any
) -> None:

    emulator = vobiz_emulator_factory()
    destination = "919876543211"
    emulator.script(destination, CallScript.answered(after=0.05, talk_for=None, digits="1"))
    with running_receiver(monkeypatch, f"sqlite:///{tmp_path / 'cb.db'}") as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", emulator.connection_json(timezone="Asia/Kolkata"))
        monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "True")
        correlation = ti(task_id="ask_oncall")
        spec = AnswerSpec.build(
            message="The nightly load failed.", gather={"prompt": "Press 1 to acknowledge.", "num_digits": 1}
        )
        receiver.store.save_answer(correlation, spec, callback_base_url=receiver.base_url)
        request = {
            "from": "911171366900",
            "to": destination,
            "answer_url": receiver.url("answer", correlation),
            "hangup_url": receiver.url("hangup", correlation),
        }
        fire(receiver, correlation, request)
        [hangup] = emulator.wait_for_callbacks("hangup", timeout=20)

    [gather] = [record for record in emulator.callbacks if record.kind == "gather"]
    assert gather.status == 200
    assert gather.fields["Digits"] == "1"
    assert all(record.status == 200 for record in emulator.callbacks)
    [row] = receiver.store.lookup(call_uuids=[hangup.call_uuid])
    assert row.digits == "1"
    assert row.status == "completed"
    assert row.task_id == "ask_oncall"


# -- group commit over HTTP ---------------------------------------------------------------------------------


def _post_concurrently(receiver: Receiver, call_uuids: list[str], **kwargs: Any) -> list[httpx.Response]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda call: receiver.post("hangup", hangup_fields(call), **kwargs), call_uuids))


def test_concurrent_callbacks_are_all_stored_once(receiver: Receiver) -> None:
    call_uuids = [new_uuid() for _ in range(40)]
    responses = _post_concurrently(receiver, call_uuids)
    assert [response.status_code for response in responses] == [200] * 40
    assert {response.json()["status"] for response in responses} == {"stored"}
    assert all(event_count(receiver, call) == 1 for call in call_uuids)
    assert {row.status for row in receiver.store.lookup(call_uuids=call_uuids)} == {"completed"}


def test_answered_200_only_once_the_shared_commit_is_done(receiver: Receiver) -> None:
    committed: list[float] = []

    def slow_commit(conn: Any) -> None:  # runs just before the database commits
        time.sleep(0.2)
        committed.append(time.monotonic())

    engine = receiver.store.engine
    receiver.store.upgrade()
    sa.event.listen(engine, "commit", slow_commit)
    try:
        call_uuids = [new_uuid() for _ in range(12)]
        answered: dict[str, float] = {}

        def post(call: str) -> httpx.Response:
            response = receiver.post("hangup", hangup_fields(call))
            answered[call] = time.monotonic()
            # Visible to a separate connection the moment the 200 arrives: committed, not just queued.
            assert event_count(receiver, call) == 1
            return response

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=12) as pool:
            responses = list(pool.map(post, call_uuids))
    finally:
        sa.event.remove(engine, "commit", slow_commit)
    assert [response.status_code for response in responses] == [200] * 12
    assert all(moment >= min(committed) for moment in answered.values())


def test_a_failed_commit_answers_503_to_every_callback_and_stores_none(receiver: Receiver) -> None:
    from sqlalchemy import exc as sa_exc

    def fail_commit(conn: Any) -> None:
        raise sa_exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    call_uuids = [new_uuid() for _ in range(10)]
    nonces = {call: f"{index:020d}" for index, call in enumerate(call_uuids)}
    for call in call_uuids:
        receiver.place(hangup_fields(call))
    sa.event.listen(receiver.store.engine, "commit", fail_commit)
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=10) as pool:
            failed = list(
                pool.map(
                    lambda c: receiver.post("hangup", hangup_fields(c), nonce=nonces[c], bind=False),
                    call_uuids,
                )
            )
    finally:
        sa.event.remove(receiver.store.engine, "commit", fail_commit)
    assert [response.status_code for response in failed] == [503] * 10
    assert all(response.headers["Retry-After"] for response in failed)
    assert all(nothing_stored(receiver, call) for call in call_uuids)
    # Vobiz retries with the same signatures: every one is stored now.
    retried = [receiver.post("hangup", hangup_fields(call), nonce=nonces[call]) for call in call_uuids]
    assert [response.json() for response in retried] == [{"status": "stored"}] * 10


def test_stored_callbacks_are_logged_at_info_alone_and_summarised_under_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from vobiz_provider.receiver.stored_log import StoredCallbackLog

    stored_log = StoredCallbackLog(interval=3600)
    with caplog.at_level(logging.INFO, logger="vobiz_provider"):
        stored_log.count(kind="ring", fields=ring_fields("c-1"), correlation=ti(), duplicate=False)
        for index in range(2, 5):
            stored_log.count(
                kind="hangup", fields=hangup_fields(f"c-{index}"), correlation=ti(), duplicate=index == 4
            )
        stored_log.interval = 0.0  # the interval has passed
        stored_log.count(kind="hangup", fields=hangup_fields("c-5"), correlation=ti(), duplicate=False)
    lines = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert len(lines) == 2
    assert "Vobiz ring callback stored: CallUUID=c-1 CallStatus=ringing" in lines[0]
    assert "3 stored, 1 duplicate (hangup 4)" in lines[1]
