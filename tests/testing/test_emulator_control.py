"""Driving the emulator from outside: control API, CLI process, pytest fixture, in-process ASGI use."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest

from vobiz_provider.testing import CallScript, EmulatorSettings, RemoteEmulator, VobizEmulator
from vobiz_provider.testing.emulator.__main__ import build_parser, scripts_from_args, settings_from_args


def test_remote_control_scripts_and_inspects_a_running_emulator(emulator, client, receiver):
    with RemoteEmulator(emulator.url) as remote:
        assert remote.health()
        remote.script("14155550101", CallScript.busy(after=0.01))
        remote.configure(success_status=200)
        response = client.post(f"/Account/{emulator.auth_id}/Call/", json=receiver.call_body())
        assert response.status_code == 200
        (hangup,) = remote.wait_for_callbacks("hangup", timeout=5)
        assert hangup["fields"]["CallStatus"] == "busy"
        assert hangup["status"] == 200
        (call,) = remote.calls()
        assert (call["status"], call["hangup_cause_code"]) == ("busy", 3010)
        (request,) = remote.requests()
        assert request["path"].endswith("/Call/")
        assert remote.settings()["auth_token"] == "***"

        remote.inject_fault(status=503)
        assert client.post(f"/Account/{emulator.auth_id}/Call/", json=receiver.call_body()).status_code == 503

        remote.reset()
        assert remote.calls() == [] and remote.requests() == [] and remote.callbacks() == []
        assert emulator.emulator.scripts == {}


def test_held_calls_stay_queued_until_released(emulator, client, receiver):
    with RemoteEmulator(emulator.url) as remote:
        remote.script("14155550101", CallScript.busy(after=0.01))
        remote.hold_calls()
        response = client.post(f"/Account/{emulator.auth_id}/Call/", json=receiver.call_body())
        assert response.status_code == 201  # the API accepts the request at once
        # Held: the passing of time is what is checked here. The script would ring within 10 ms.
        time.sleep(0.5)
        (call,) = remote.calls()
        assert call["status"] == "queued" and remote.callbacks() == []
        queued = client.get(
            f"/Account/{emulator.auth_id}/Call/{call['call_uuid']}/", params={"status": "queued"}
        )
        assert queued.status_code == 200 and queued.json()["call_status"] == "queued"

        remote.release_calls()
        (hangup,) = remote.wait_for_callbacks("hangup", timeout=5)
        assert hangup["fields"]["CallStatus"] == "busy"
        assert [c["kind"] for c in remote.callbacks()] == ["ring", "hangup"]

        # A reset releases too: a call placed while held is not stuck after the reset.
        remote.hold_calls()
        remote.reset()
        assert client.post(f"/Account/{emulator.auth_id}/Call/", json=receiver.call_body()).status_code == 201
        remote.wait_for_callbacks("hangup", timeout=5)


def test_held_calls_are_released_at_a_pace_in_the_order_they_were_placed(emulator, client, receiver):
    """``release_calls(per_second=N)``: as Vobiz dials the calls it queued at the account's CPS."""
    numbers = [f"1415555012{i}" for i in range(4)]
    with RemoteEmulator(emulator.url) as remote:
        for number in numbers:
            remote.script(number, CallScript.busy(after=0.01))
        remote.hold_calls()
        for number in numbers:
            body = {**receiver.call_body(), "to": number}
            assert client.post(f"/Account/{emulator.auth_id}/Call/", json=body).status_code == 201
        with pytest.raises(ValueError, match="per_second"):
            remote.release_calls(per_second=-1)
        assert remote.calls() and {c["status"] for c in remote.calls()} == {"queued"}

        remote.release_calls(per_second=4)
        remote.wait_for_callbacks("ring", count=len(numbers), timeout=10)
        rings = sorted(remote.callbacks("ring"), key=lambda attempt: attempt["sent_at"])
        by_uuid = {c["call_uuid"]: c["to"] for c in remote.calls()}
        assert [by_uuid[r["call_uuid"]].lstrip("+") for r in rings] == numbers  # first placed, first rung
        times = [datetime.fromisoformat(r["sent_at"]) for r in rings]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.2, gaps  # 4 per second: 0.25 s apart (never sooner; later on a busy machine)


def test_control_api_refuses_bad_settings_and_scripts(emulator):
    with RemoteEmulator(emulator.url) as remote:
        with pytest.raises(ValueError, match="error_shape"):
            remote.configure(error_shape="xml")
        with pytest.raises(ValueError, match="nonsense"):
            remote.configure(nonsense=1)
        with pytest.raises(ValueError, match="outcome"):
            remote._call("POST", "/scripts", json={"destination": "1", "script": {"outcome": "exploded"}})
        with pytest.raises(TimeoutError):
            remote.wait_for_callbacks("hangup", timeout=0.1)
    assert emulator.emulator.settings.error_shape == "flat"


def test_settings_are_validated():
    with pytest.raises(ValueError, match="success_status"):
        EmulatorSettings(success_status=204)
    with pytest.raises(ValueError, match="timezone"):
        VobizEmulator(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="sign_callbacks"):
        EmulatorSettings(sign_callbacks="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="signed_url_form"):
        EmulatorSettings(signed_url_form="host")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="require_answer_method"):
        EmulatorSettings(require_answer_method="yes")  # type: ignore[arg-type]
    assert EmulatorSettings().sign_callbacks == "credentials"  # as Vobiz
    assert EmulatorSettings(sign_callbacks=True).sign_callbacks == "always"  # type: ignore[arg-type]


def test_cli_arguments_become_settings():
    args = build_parser().parse_args(
        [
            "--auth-id",
            "SA_X1",
            "--success-status",
            "200",
            "--error-shape",
            "envelope",
            "--request-uuid-shape",
            "list",
            "--cps",
            "3",
            "--concurrency",
            "4",
            "--balance",
            "5",
            "--timezone",
            "UTC",
            "--retry-after",
            "2",
        ]
    )
    settings = settings_from_args(args)
    assert (settings.auth_id, settings.success_status, settings.error_shape) == ("SA_X1", 200, "envelope")
    assert (settings.request_uuid_shape, settings.cps, settings.concurrency) == ("list", 3, 4)
    assert (settings.balance, settings.timezone, settings.retry_after) == (5.0, "UTC", 2.0)
    assert (settings.sign_callbacks, settings.signed_url_form) == ("credentials", "stripped")
    signing = build_parser().parse_args(["--sign-callbacks", "always", "--signed-url-form", "kept"])
    assert (settings_from_args(signing).sign_callbacks, settings_from_args(signing).signed_url_form) == (
        "always",
        "kept",
    )
    assert settings_from_args(build_parser().parse_args(["--no-sign-callbacks"])).sign_callbacks == "never"
    assert settings.require_answer_method is False
    strict = build_parser().parse_args(["--require-answer-method"])
    assert settings_from_args(strict).require_answer_method is True


def test_cli_scripts_destinations():
    args = build_parser().parse_args(
        ["--script", "14155550101=busy", "--script", "sip:a@b.example=no-answer"]
    )
    assert scripts_from_args(args) == {
        "14155550101": CallScript(outcome="busy"),
        "sip:a@b.example": CallScript(outcome="no-answer"),
    }
    with pytest.raises(ValueError, match="outcome"):
        scripts_from_args(build_parser().parse_args(["--script", "1=exploded"]))
    with pytest.raises(ValueError, match="DESTINATION=OUTCOME"):
        scripts_from_args(build_parser().parse_args(["--script", "busy"]))


def test_cli_serves_the_api_in_its_own_process():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vobiz_provider.testing.emulator",
            "--port",
            "0",
            "--auth-token",
            "tok-1",
            "--script",
            "14155550101=busy",
            "--default-outcome",
            "no-answer",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        base_url = first.split()[2]
        connection = json.loads(process.stdout.readline().split("=", 1)[1].strip().strip("'"))
        assert connection["extra"]["base_url"] == base_url
        headers = {"X-Auth-ID": connection["login"], "X-Auth-Token": "tok-1"}
        me = httpx.get(f"{base_url}/auth/me", headers=headers, timeout=5)
        assert me.status_code == 200 and me.json()["auth_secret"] == "tok-1"
        scripts = httpx.get(base_url.replace("/api/v1", "/_emulator/scripts"), timeout=5).json()
        assert scripts["scripts"]["14155550101"]["outcome"] == "busy"
        assert scripts["default"]["outcome"] == "no-answer"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_fixture_points_the_default_connection_at_the_emulator(vobiz_emulator):
    connection = json.loads(os.environ["AIRFLOW_CONN_VOBIZ_DEFAULT"])
    assert connection == {
        "conn_type": "vobiz",
        "login": vobiz_emulator.auth_id,
        "password": vobiz_emulator.auth_token,
        "extra": {"base_url": vobiz_emulator.base_url},
    }
    assert (
        httpx.get(f"{vobiz_emulator.base_url}/auth/me", headers=vobiz_emulator.auth_headers).status_code
        == 200
    )


def test_connection_uri_round_trips_through_airflow(vobiz_emulator):
    from airflow.models.connection import Connection

    connection = Connection(
        conn_id="vobiz_default", uri=vobiz_emulator.connection_uri(timezone="Asia/Kolkata")
    )
    assert (connection.conn_type, connection.login, connection.password) == (
        "vobiz",
        vobiz_emulator.auth_id,
        vobiz_emulator.auth_token,
    )
    assert connection.extra_dejson == {"base_url": vobiz_emulator.base_url, "timezone": "Asia/Kolkata"}


async def test_the_app_runs_in_process_on_the_caller_loop(receiver):
    emulator = VobizEmulator(callback_backoff=0.01)
    receiver.xml("/answer", "<Response><Speak>hi</Speak></Response>")
    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator/api/v1") as client:
        response = await client.post(
            "/Account/MA_EMULATOR1/Call/",
            json=receiver.call_body(),
            headers={"X-Auth-ID": "MA_EMULATOR1", "X-Auth-Token": "emulator-auth-token"},
        )
        assert response.status_code == 201
        (hangup,) = await emulator.await_callbacks("hangup", timeout=5)
        assert hangup.fields["HangupCauseCode"] == "4010"
    await emulator.aclose()


def test_reset_with_settings_restores_a_clean_account(emulator, client, receiver):
    emulator.configure(cps=1, error_shape="envelope", balance=3.0)
    emulator.emulator.default_script = CallScript.busy()
    emulator.script("14155550101", CallScript.no_answer())
    emulator.inject_fault(method="GET", path_contains="/auth/me", status=500)
    client.post(f"/Account/{emulator.auth_id}/Call/", json=receiver.call_body())

    emulator.emulator.reset(settings=True)

    settings = emulator.emulator.settings
    assert (settings.cps, settings.error_shape, settings.balance) == (10, "flat", 1000.0)
    assert emulator.emulator.default_script == CallScript.answered()
    assert emulator.emulator.scripts == {}
    assert emulator.calls == {} and emulator.requests == [] and emulator.callbacks == []
    assert client.get("/auth/me").status_code == 200
