"""The signed correlation token carried in callback URLs."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from vobiz_provider.correlation import (
    CALLBACK_KINDS,
    KINDS_OF_URL,
    MAX_CALL_SECONDS,
    CorrelationToken,
    InvalidCorrelationTokenError,
    callback_url,
    token_lifetime,
)

TOKEN = CorrelationToken(
    dag_id="calls",
    run_id="scheduled__2026-11-27T00:00:00+00:00",
    task_id="ring_on_call",
    map_index=3,
    try_number=2,
    conn_id="vobiz_default",
)

NOW = 1_800_000_000.0
LATER = NOW + 3600


def _encode(
    secret: str = "secret", *, kinds: tuple[str, ...] = ("hangup",), expires_at: float = LATER
) -> str:
    return TOKEN.encode(secret, kinds=kinds, expires_at=expires_at)


def _decode(
    token: str, secrets: str | list[str] = "secret", *, kind: str = "hangup", now: float = NOW
) -> Any:
    return CorrelationToken.decode(token, secrets, kind=kind, now=now)


def test_round_trip() -> None:
    encoded = _encode()
    assert _decode(encoded) == TOKEN
    assert _decode(encoded, ["secret"]) == TOKEN


def test_token_is_url_safe_and_short() -> None:
    encoded = _encode(kinds=KINDS_OF_URL["answer"])
    assert len(encoded) < 1024
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_wrong_secret_is_a_bad_signature() -> None:
    with pytest.raises(InvalidCorrelationTokenError, match="bad signature"):
        _decode(_encode(), "other")


def test_tampered_payload_is_a_bad_signature() -> None:
    payload, signature = _encode().split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["try_number"] = 9
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidCorrelationTokenError, match="bad signature"):
        _decode(f"{forged}.{signature}")


def test_tampered_signature_is_refused() -> None:
    payload, signature = _encode().split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidCorrelationTokenError, match="bad signature"):
        _decode(f"{payload}.{flipped}")


@pytest.mark.parametrize("token", ["", "no-dot", ".", "abc.", ".abc", "a.b.c", "é.abc", "abc.!!!"])
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(InvalidCorrelationTokenError, match="malformed"):
        _decode(token)


def test_signed_but_incomplete_payload_is_malformed() -> None:
    # A payload signed with the right key but missing fields (e.g. an older format) is refused clearly.
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b'{"dag_id":"d"}').rstrip(b"=").decode()
    sig = hmac.new(b"secret", payload.encode(), hashlib.sha256).digest()
    token = f"{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(InvalidCorrelationTokenError, match="malformed"):
        _decode(token)


def test_rotation_accepts_any_listed_secret() -> None:
    old = _encode("old-secret")
    new = _encode("new-secret")
    assert _decode(old, ["new-secret", "old-secret"]) == TOKEN
    assert _decode(new, ["new-secret", "old-secret"]) == TOKEN
    with pytest.raises(InvalidCorrelationTokenError):
        _decode(old, ["new-secret"])


def test_no_secret_is_an_error() -> None:
    with pytest.raises(ValueError, match="no secret"):
        _decode(_encode("s"), [])
    with pytest.raises(ValueError, match="empty"):
        _encode("")


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
        long.encode("secret", kinds=["hangup"], expires_at=LATER)


@pytest.mark.parametrize("kind", CALLBACK_KINDS)
def test_callback_url(kind: str) -> None:
    token = _encode(kinds=(kind,))
    url = callback_url("https://hooks.example.com/vobiz/", kind, token)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "hooks.example.com",
        f"/vobiz/callbacks/{kind}",
    )
    assert parse_qs(parts.query) == {"t": [token]}
    assert _decode(parse_qs(parts.query)["t"][0], kind=kind) == TOKEN


def test_callback_url_refuses_unknown_kind_and_relative_base() -> None:
    with pytest.raises(ValueError, match="unknown callback kind"):
        callback_url("https://h/vobiz", "status", "x.y")
    with pytest.raises(ValueError, match="absolute"):
        callback_url("/vobiz", "hangup", "x.y")


# -- version 2: routes and expiry (security review findings 3 and 5) ----------------------------------------


def test_a_token_opens_only_the_routes_it_was_issued_for() -> None:
    hangup = _encode(kinds=KINDS_OF_URL["hangup"])
    with pytest.raises(InvalidCorrelationTokenError, match="not issued for the answer route"):
        _decode(hangup, kind="answer")  # a hangup URL cannot read the spoken message
    with pytest.raises(InvalidCorrelationTokenError, match="not issued for the ring route"):
        _decode(hangup, kind="ring")
    answer = _encode(kinds=KINDS_OF_URL["answer"])
    assert _decode(answer, kind="answer") == _decode(answer, kind="gather") == TOKEN  # the Gather action
    with pytest.raises(InvalidCorrelationTokenError, match="not issued for the hangup route"):
        _decode(answer, kind="hangup")


def test_a_token_expires() -> None:
    token = _encode(expires_at=NOW + 10)
    assert _decode(token, now=NOW + 9.9) == TOKEN
    with pytest.raises(InvalidCorrelationTokenError, match="expired"):
        _decode(token, now=NOW + 10)


def test_a_token_of_the_first_format_is_refused() -> None:
    # Signed with the right key, but without route or expiry (issued before the upgrade): never valid again.
    import hashlib
    import hmac

    fields = {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "try_number": 1, "conn_id": "c"}
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    sig = hmac.new(b"secret", payload.encode(), hashlib.sha256).digest()
    token = f"{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(InvalidCorrelationTokenError, match="older format"):
        _decode(token)


def test_encoding_needs_known_kinds() -> None:
    with pytest.raises(ValueError, match="needs kinds"):
        _encode(kinds=())
    with pytest.raises(ValueError, match="needs kinds"):
        _encode(kinds=("status",))


def test_token_lifetime_follows_the_call_and_vobiz_retries() -> None:
    default = token_lifetime(ring_timeout=None, time_limit=None)
    assert default == 3600 + 120 + 14400 + 3600  # queue, ring, Vobiz's default time limit, retries
    assert token_lifetime(ring_timeout=30, time_limit=60) == 3600 + 30 + 60 + 3600
    longest = token_lifetime(ring_timeout=120, time_limit=10 * MAX_CALL_SECONDS)
    assert longest == 3600 + 120 + MAX_CALL_SECONDS + 3600  # Vobiz cuts every call at 24 h
