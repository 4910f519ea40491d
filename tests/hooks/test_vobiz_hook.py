"""VobizHook: connection -> validated config, pooled clients, delegations, test_connection."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from vobiz_provider.client import AsyncVobizClient, VobizClient
from vobiz_provider.exceptions import VobizNotFoundError, VobizValidationError
from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.models.call import MakeCallRequest
from vobiz_provider.models.connection import VobizConnectionConfig
from vobiz_provider.testing import CallScript

CALLER = "14155550100"
DESTINATION = "14155550199"
TOKEN = "hook-test-token-5f3a9c"


def _set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str = "vobiz_default", **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "vobiz", **fields}))


def _ok(extra: dict[str, Any]) -> dict[str, Any]:
    return {"login": "MA_X", "password": TOKEN, "extra": extra}


def test_env_var_json_connection_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch, login="MA_X", password=TOKEN)

    config = VobizHook().get_config()

    assert config.auth_id == "MA_X"
    assert config.auth_token.get_secret_value() == TOKEN
    assert config.base_url == "https://api.vobiz.ai/api/v1"
    assert config.callback_base_url is None
    assert (config.timeout, config.max_retries, config.cps, config.timezone) == (10.0, 3, None, "UTC")
    assert TOKEN not in repr(config)


def test_extras_are_read_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    # As the UI or CLI may store them: strings for numbers, empty strings for unset fields.
    _set_connection(
        monkeypatch,
        conn_id="vobiz_other",
        login="SA_SUB1",
        password=TOKEN,
        extra={
            "base_url": "http://127.0.0.1:8765/api/v1/",
            "callback_base_url": "https://airflow.example.com/vobiz/",
            "timeout": "2.5",
            "max_retries": 1,
            "cps": 2,
            "timezone": "Asia/Kolkata",
        },
    )

    config = VobizHook(vobiz_conn_id="vobiz_other").get_config()

    assert config.base_url == "http://127.0.0.1:8765/api/v1"
    assert config.callback_base_url == "https://airflow.example.com/vobiz"
    assert (config.timeout, config.max_retries, config.cps, config.timezone) == (2.5, 1, 2.0, "Asia/Kolkata")


def test_the_main_account_token_of_a_sub_account_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    main = "main-account-token-7c1d"
    _set_connection(monkeypatch, login="SA_SUB1", password=TOKEN, extra={"main_account_auth_token": main})
    config = VobizHook().get_config()
    assert config.main_account_auth_token is not None
    assert config.main_account_auth_token.get_secret_value() == main
    assert main not in repr(config)
    _set_connection(
        monkeypatch,
        conn_id="vobiz_bad",
        login="SA_SUB1",
        password=TOKEN,
        extra={"main_account_auth_token": "a b"},
    )
    with pytest.raises(VobizValidationError, match=r"main_account_auth_token.*visible ASCII") as info:
        VobizHook(vobiz_conn_id="vobiz_bad").get_config()
    assert "a b" not in str(info.value)  # never quoted, unlike other extras


def test_empty_extras_take_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch, login="MA_X", password=TOKEN, extra={"cps": "", "timezone": None})
    config = VobizHook().get_config()
    assert config.cps is None
    assert config.timezone == "UTC"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"password": TOKEN}, "login (Auth ID) is missing"),
        ({"login": "MA_X"}, "password (Auth Token) is missing"),
        ({"login": "MA X", "password": TOKEN}, "login (Auth ID)"),
        ({"login": "MA_X", "password": "token with spaces"}, "password (Auth Token)"),
        (_ok({"timeout": "soon"}), "extra field 'timeout'"),
        (_ok({"timeout": 0}), "extra field 'timeout'"),
        (_ok({"max_retries": -1}), "extra field 'max_retries'"),
        (_ok({"cps": 0}), "extra field 'cps'"),
        (
            _ok({"base_url": "api.vobiz.ai"}),
            "extra field 'base_url'",
        ),
        (
            _ok({"callback_base_url": "ftp://x"}),
            "extra field 'callback_base_url'",
        ),
        (
            _ok({"timezone": "Mars/Olympus"}),
            "extra field 'timezone'",
        ),
    ],
)
def test_bad_connection_names_the_field(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], expected: str
) -> None:
    _set_connection(monkeypatch, **fields)

    with pytest.raises(VobizValidationError) as info:
        VobizHook().get_config()

    assert expected in str(info.value)
    assert "'vobiz_default'" in str(info.value)
    if fields.get("password"):
        assert fields["password"] not in str(info.value)


def test_config_is_frozen() -> None:
    config = VobizConnectionConfig(auth_id="MA_X", auth_token=TOKEN)
    with pytest.raises(ValueError, match="frozen"):
        config.cps = 3  # type: ignore[misc]


def test_token_is_registered_with_the_secrets_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk._shared.secrets_masker.secrets_masker import _secrets_masker

    _set_connection(monkeypatch, login="MA_X", password=TOKEN)
    VobizHook().get_config()

    assert _secrets_masker().redact(f"token is {TOKEN}") == "token is ***"


def test_get_conn_is_one_pooled_client(vobiz_emulator: Any) -> None:
    hook = VobizHook()
    client = hook.get_conn()
    assert isinstance(client, VobizClient)
    assert hook.get_conn() is client
    assert client.base_url == vobiz_emulator.base_url
    hook.close()
    assert client.is_closed
    assert hook.get_conn() is not client, "a closed client is replaced"
    hook.close()


def test_sync_delegations(vobiz_emulator: Any) -> None:
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=10))
    with VobizHook() as hook:
        # A mapping is validated into a MakeCallRequest first.
        fired = hook.make_call(
            {"from": CALLER, "to": DESTINATION, "answer_url": "https://example.com/answer"}
        )
        (uuid,) = fired.request_uuids
        assert hook.list_queued_calls() == [uuid]
        assert hook.list_live_calls() == []
        assert hook.get_queued_call(uuid).to == DESTINATION
        assert hook.hangup_call(uuid) is True
        vobiz_emulator.wait_for_call(uuid)
        assert hook.get_cdr(uuid).uuid == uuid
        assert [c.uuid for c in hook.list_cdrs().data] == [uuid]
        assert hook.get_account().auth_id == vobiz_emulator.auth_id


def test_make_call_validates_a_mapping_before_sending(vobiz_emulator: Any) -> None:
    with VobizHook() as hook, pytest.raises(VobizValidationError, match="answer_url"):
        hook.make_call({"from": CALLER, "to": DESTINATION, "answer_url": "not a url"})
    assert vobiz_emulator.requests == []


async def test_async_config_and_one_client_per_event_loop(vobiz_emulator: Any) -> None:
    hook = VobizHook()
    config = await hook.aget_config()
    assert config.base_url == vobiz_emulator.base_url

    client = await hook.aget_conn()
    assert isinstance(client, AsyncVobizClient)
    assert await hook.aget_conn() is client

    def other_loop() -> AsyncVobizClient:
        async def get() -> AsyncVobizClient:
            other = await hook.aget_conn()
            await other.aclose()
            return other

        return asyncio.run(get())

    assert await asyncio.to_thread(other_loop) is not client
    await hook.aclose()
    assert client.is_closed


async def test_async_client_of_the_hook_reaches_every_endpoint(vobiz_emulator: Any) -> None:
    # Async code (the trigger, the notifier) awaits the client of aget_conn(): one pooled client per loop.
    vobiz_emulator.script(DESTINATION, CallScript.answered(after=10))
    hook = VobizHook()
    try:
        client = await hook.aget_conn()
        request = MakeCallRequest.build(**{"from": CALLER, "to": DESTINATION, "answer_url": "https://e.x/a"})
        (uuid,) = (await client.make_call(request)).request_uuids
        assert await (await hook.aget_conn()).list_queued_calls() == [uuid]
        assert await (await hook.aget_conn()).list_live_calls() == []
        assert (await (await hook.aget_conn()).get_queued_call(uuid)).from_number == CALLER
        assert await (await hook.aget_conn()).hangup_call(uuid) is True
        await vobiz_emulator.emulator.await_call(uuid)
        assert (await (await hook.aget_conn()).get_cdr(uuid)).uuid == uuid
        assert (await (await hook.aget_conn()).list_cdrs(to_number=DESTINATION)).data[0].uuid == uuid
        assert (await (await hook.aget_conn()).get_account()).auth_id == vobiz_emulator.auth_id
        with pytest.raises(VobizNotFoundError) as ended:  # the call is no longer live
            await (await hook.aget_conn()).get_live_call(uuid)
        assert ended.value.status_code == 404
        assert await hook.aget_conn() is client, "every call above went through the one pooled client"
    finally:
        await hook.aclose()
    assert client.is_closed


def test_test_connection_ok(vobiz_emulator: Any) -> None:
    ok, message = VobizHook().test_connection()

    assert ok is True, message
    assert vobiz_emulator.auth_id in message
    assert f"CPS limit is {vobiz_emulator.emulator.settings.cps}" in message
    # The emulator's auth_secret equals the token: neither may appear.
    assert vobiz_emulator.auth_token not in message
    (request,) = vobiz_emulator.requests
    assert request.path == "/api/v1/auth/me"


def test_test_connection_warns_when_cps_exceeds_the_account_limit(
    vobiz_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", vobiz_emulator.connection_json(cps=50))
    ok, message = VobizHook().test_connection()
    assert ok is True
    assert "cps=50" in message


def test_test_connection_with_a_wrong_token(vobiz_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = vobiz_emulator.connection_dict()
    conn["password"] = TOKEN
    monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", json.dumps(conn))

    ok, message = VobizHook().test_connection()

    assert ok is False
    assert "401" in message
    assert TOKEN not in message
    assert len(vobiz_emulator.requests) == 1, "no retries in a connection test"


def test_test_connection_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    _set_connection(
        monkeypatch, login="MA_X", password=TOKEN, extra={"base_url": f"http://127.0.0.1:{port}/api/v1"}
    )

    ok, message = VobizHook().test_connection()

    assert ok is False
    assert "could not be reached" in message
    assert TOKEN not in message


def test_test_connection_misconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch, login="MA_X", password=TOKEN, extra={"timeout": -1})
    ok, message = VobizHook().test_connection()
    assert ok is False
    assert "extra field 'timeout'" in message


def test_airflow_connection_test_resolves_the_hook(vobiz_emulator: Any) -> None:
    # The path of the UI's "Test" button: Connection -> ProvidersManager -> VobizHook.test_connection.
    from airflow.sdk import Connection

    conn = Connection(
        conn_id="vobiz_ui_test",
        conn_type="vobiz",
        login=vobiz_emulator.auth_id,
        password=vobiz_emulator.auth_token,
        extra=json.dumps({"base_url": vobiz_emulator.base_url}),
    )
    ok, message = conn.test_connection()
    assert ok is True, message
    assert vobiz_emulator.auth_id in message


def test_connection_uri_form(vobiz_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_URI", vobiz_emulator.connection_uri(cps=3))
    hook = VobizHook(vobiz_conn_id="vobiz_uri")
    config = hook.get_config()
    assert (config.auth_id, config.base_url, config.cps) == (
        vobiz_emulator.auth_id,
        vobiz_emulator.base_url,
        3.0,
    )
    assert hook.get_account().auth_id == vobiz_emulator.auth_id
    hook.close()


def test_hook_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        VobizHook("vobiz_default")  # type: ignore[misc]
