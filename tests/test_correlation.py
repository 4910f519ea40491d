"""The signed correlation token carried in callback URLs."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from vobiz_provider.correlation import (
    CALLBACK_KINDS,
    CorrelationToken,
    InvalidCorrelationTokenError,
    callback_url,
)

TOKEN = CorrelationToken(
    dag_id="calls",
    run_id="scheduled__2026-11-27T00:00:00+00:00",
    task_id="ring_on_call",
    map_index=3,
    try_number=2,
    conn_id="vobiz_default",
)


def test_round_trip() -> None:
    encoded = TOKEN.encode("secret")
    assert CorrelationToken.decode(encoded, "secret") == TOKEN
    assert CorrelationToken.decode(encoded, ["secret"]) == TOKEN


def test_token_is_url_safe_and_short() -> None:
    encoded = TOKEN.encode("secret")
    assert len(encoded) < 1024
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_wrong_secret_is_a_bad_signature() -> None:
    with pytest.raises(InvalidCorrelationTokenError, match="bad signature"):
        CorrelationToken.decode(TOKEN.encode("secret"), "other")


def test_tampered_payload_is_a_bad_signature() -> None:
    payload, signature = TOKEN.encode("secret").split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["try_number"] = 9
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidCorrelationTokenError, match="bad signature"):
        CorrelationToken.decode(f"{forged}.{signature}", "secret")


def test_tampered_signature_is_refused() -> None:
    payload, signature = TOKEN.encode("secret").split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidCorrelationTokenError, match="bad signature"):
        CorrelationToken.decode(f"{payload}.{flipped}", "secret")


@pytest.mark.parametrize("token", ["", "no-dot", ".", "abc.", ".abc", "a.b.c", "é.abc", "abc.!!!"])
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(InvalidCorrelationTokenError, match="malformed"):
        CorrelationToken.decode(token, "secret")


def test_signed_but_incomplete_payload_is_malformed() -> None:
    # A payload signed with the right key but missing fields (e.g. an older format) is refused clearly.
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b'{"dag_id":"d"}').rstrip(b"=").decode()
    sig = hmac.new(b"secret", payload.encode(), hashlib.sha256).digest()
    token = f"{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(InvalidCorrelationTokenError, match="malformed"):
        CorrelationToken.decode(token, "secret")


def test_rotation_accepts_any_listed_secret() -> None:
    old = TOKEN.encode("old-secret")
    new = TOKEN.encode("new-secret")
    assert CorrelationToken.decode(old, ["new-secret", "old-secret"]) == TOKEN
    assert CorrelationToken.decode(new, ["new-secret", "old-secret"]) == TOKEN
    with pytest.raises(InvalidCorrelationTokenError):
        CorrelationToken.decode(old, ["new-secret"])


def test_no_secret_is_an_error() -> None:
    with pytest.raises(ValueError, match="no secret"):
        CorrelationToken.decode(TOKEN.encode("s"), [])
    with pytest.raises(ValueError, match="empty"):
        TOKEN.encode("")


def test_ti_key_is_the_same_for_every_try() -> None:
    retry = CorrelationToken(**{**TOKEN.to_dict(), "try_number": 3})
    assert retry.ti_key == TOKEN.ti_key == "calls/scheduled__2026-11-27T00:00:00+00:00/ring_on_call/3"


def test_invalid_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="dag_id"):
        CorrelationToken(dag_id="", run_id="r", task_id="t")
    with pytest.raises(ValueError, match="map_index"):
        CorrelationToken(dag_id="d", run_id="r", task_id="t", map_index=True)


def test_from_task_instance() -> None:
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=None, try_number=1)
    token = CorrelationToken.from_task_instance(ti, conn_id="vobiz_sub")
    assert token == CorrelationToken(dag_id="d", run_id="r", task_id="t", map_index=-1, conn_id="vobiz_sub")


def test_overlong_ids_are_refused_when_encoding() -> None:
    long = CorrelationToken(dag_id="d" * 800, run_id="r" * 800, task_id="t")
    with pytest.raises(ValueError, match="too long"):
        long.encode("secret")


@pytest.mark.parametrize("kind", CALLBACK_KINDS)
def test_callback_url(kind: str) -> None:
    token = TOKEN.encode("secret")
    url = callback_url("https://hooks.example.com/vobiz/", kind, token)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "hooks.example.com",
        f"/vobiz/callbacks/{kind}",
    )
    assert parse_qs(parts.query) == {"t": [token]}
    assert CorrelationToken.decode(parse_qs(parts.query)["t"][0], "secret") == TOKEN


def test_callback_url_refuses_unknown_kind_and_relative_base() -> None:
    with pytest.raises(ValueError, match="unknown callback kind"):
        callback_url("https://h/vobiz", "status", "x.y")
    with pytest.raises(ValueError, match="absolute"):
        callback_url("/vobiz", "hangup", "x.y")
