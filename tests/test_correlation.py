"""The signed correlation token carried in callback URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from types import SimpleNamespace
from typing import Any

import pytest

from vobiz_provider.correlation import (
    CALLBACK_KINDS,
    CREDENTIALS_USER,
    KINDS_OF_URL,
    MAX_CALL_SECONDS,
    CorrelationToken,
    InvalidCorrelationTokenError,
    callback_credentials,
    callback_url,
    token_lifetime,
    with_callback_credentials,
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


# -- every field of the token survives the round trip (not only the defaults) --------------------------------


def _signed(claims: dict[str, Any], secret: str = "secret") -> str:
    """A token over ``claims`` signed by hand with ``secret`` (encode() would refuse some of these)."""
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    sig = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def _claims(**overrides: Any) -> dict[str, Any]:
    """The claims encode() writes for TOKEN (hangup route, expiring at LATER)."""
    return {**TOKEN.to_dict(), "v": 2, "kinds": ["hangup"], "exp": int(LATER), **overrides}


def test_a_non_default_connection_survives_the_round_trip() -> None:
    # The receiver verifies Vobiz's signature with this connection's auth token: it must not fall back to
    # vobiz_default.
    token = CorrelationToken(dag_id="d", run_id="r", task_id="t", conn_id="vobiz_sub_account")
    decoded = CorrelationToken.decode(
        token.encode("s", kinds=["hangup"], expires_at=LATER), "s", kind="hangup", now=NOW
    )
    assert decoded.conn_id == "vobiz_sub_account"
    assert decoded == token


def test_every_field_survives_the_round_trip() -> None:
    decoded = _decode(_encode())
    assert decoded.to_dict() == {
        "dag_id": "calls",
        "run_id": "scheduled__2026-11-27T00:00:00+00:00",
        "task_id": "ring_on_call",
        "map_index": 3,
        "try_number": 2,
        "conn_id": "vobiz_default",
    }


@pytest.mark.parametrize("field", ["dag_id", "run_id", "task_id", "map_index", "try_number", "conn_id"])
def test_a_signed_payload_without_any_one_field_is_malformed(field: str) -> None:
    claims = _claims()
    del claims[field]
    with pytest.raises(InvalidCorrelationTokenError, match="fields missing"):
        _decode(_signed(claims))


def test_the_hand_signed_claims_are_what_encode_writes() -> None:
    # (the tests below forge single claims on top of these)
    assert _decode(_signed(_claims())) == TOKEN


# -- secrets -------------------------------------------------------------------------------------------------


def test_a_token_signed_with_an_empty_secret_is_refused_even_if_one_is_configured() -> None:
    # Anyone can compute HMAC(key=""): an unset secret in the rotation list must not accept it.
    forged = _signed(_claims(), secret="")
    with pytest.raises(InvalidCorrelationTokenError, match="bad signature"):
        _decode(forged, ["real", ""])
    with pytest.raises(ValueError, match="no secret"):
        _decode(forged, "")
    with pytest.raises(ValueError, match="no secret"):
        _decode(forged, ["", ""])


def test_a_single_secret_may_be_given_as_a_string() -> None:
    assert _decode(_encode("only"), "only") == TOKEN
    with pytest.raises(InvalidCorrelationTokenError, match="bad signature"):
        _decode(_encode("only"), "onl")


def test_the_first_listed_secret_is_accepted_too() -> None:
    assert _decode(_encode("new-secret"), ["new-secret", "old-secret"]) == TOKEN


# -- from_task_instance ------------------------------------------------------------------------------------


def test_from_task_instance_keeps_map_index_and_try_number() -> None:
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=4, try_number=3)
    token = CorrelationToken.from_task_instance(ti, conn_id="vobiz_sub")
    assert token.to_dict() == {
        "dag_id": "d",
        "run_id": "r",
        "task_id": "t",
        "map_index": 4,
        "try_number": 3,
        "conn_id": "vobiz_sub",
    }


def test_from_task_instance_keeps_map_index_0() -> None:
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=0, try_number=1)
    assert CorrelationToken.from_task_instance(ti, conn_id="c").map_index == 0


# -- field rules ------------------------------------------------------------------------------------------


def test_map_index_minus_1_and_try_number_0_are_the_lowest_allowed() -> None:
    token = CorrelationToken(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=0)
    assert (token.map_index, token.try_number) == (-1, 0)


def test_map_index_below_minus_1_is_refused() -> None:
    with pytest.raises(ValueError, match=r"map_index must be -1 or more, got -2"):
        CorrelationToken(dag_id="d", run_id="r", task_id="t", map_index=-2)


def test_negative_try_number_is_refused() -> None:
    with pytest.raises(ValueError, match=r"try_number must not be negative, got -1"):
        CorrelationToken(dag_id="d", run_id="r", task_id="t", try_number=-1)


@pytest.mark.parametrize("field", ["dag_id", "run_id", "task_id", "conn_id"])
@pytest.mark.parametrize("value", ["", None, 7])
def test_each_id_must_be_a_non_empty_string(field: str, value: Any) -> None:
    fields: dict[str, Any] = {"dag_id": "d", "run_id": "r", "task_id": "t", field: value}
    with pytest.raises(ValueError, match=rf"CorrelationToken\.{field} must be a non-empty string"):
        CorrelationToken(**fields)


@pytest.mark.parametrize("field", ["map_index", "try_number"])
@pytest.mark.parametrize("value", [True, "1", 1.0, None])
def test_map_index_and_try_number_must_be_integers(field: str, value: Any) -> None:
    fields: dict[str, Any] = {"dag_id": "d", "run_id": "r", "task_id": "t", field: value}
    with pytest.raises(ValueError, match=rf"CorrelationToken\.{field} must be an integer"):
        CorrelationToken(**fields)


@pytest.mark.parametrize(
    ("claim", "value", "problem"),
    [
        ("map_index", -2, "map_index must be -1 or more"),
        ("try_number", -1, "try_number must not be negative"),
        ("dag_id", "", "dag_id must be a non-empty string"),
        ("map_index", "3", "map_index must be an integer"),
    ],
)
def test_a_signed_token_with_an_out_of_range_field_is_malformed(claim: str, value: Any, problem: str) -> None:
    with pytest.raises(InvalidCorrelationTokenError, match=f"malformed correlation token: .*{problem}"):
        _decode(_signed(_claims(**{claim: value})))


# -- the claims: version, expiry, kinds -------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 3, "2", None])
def test_a_token_of_another_version_is_refused(version: Any) -> None:
    with pytest.raises(InvalidCorrelationTokenError, match="older format"):
        _decode(_signed(_claims(v=version)))


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": str(int(LATER))},
        {"exp": True},
        {"exp": LATER + 0.5},
        {"exp": None},
        {"kinds": "hangup"},  # a string: "hang" would be found in it
        {"kinds": None},
    ],
    ids=["exp-string", "exp-bool", "exp-float", "exp-null", "kinds-string", "kinds-null"],
)
def test_a_token_with_a_malformed_expiry_or_kinds_is_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidCorrelationTokenError, match="exp or kinds missing"):
        _decode(_signed(_claims(**claims)))


def test_an_expiry_given_as_a_fraction_is_cut_to_the_second_before() -> None:
    token = _encode(expires_at=NOW + 10.9)
    assert _decode(token, now=NOW + 9.99) == TOKEN
    with pytest.raises(InvalidCorrelationTokenError, match="expired"):
        _decode(token, now=NOW + 10)


def test_expiry_is_checked_against_the_clock_by_default() -> None:
    import time

    fresh = _encode(expires_at=time.time() + 600)
    assert CorrelationToken.decode(fresh, "secret", kind="hangup") == TOKEN
    stale = _encode(expires_at=time.time() - 1)
    with pytest.raises(InvalidCorrelationTokenError, match="expired"):
        CorrelationToken.decode(stale, "secret", kind="hangup")


def test_the_payload_lists_the_kinds_sorted_once_with_version_and_whole_second_expiry() -> None:
    encoded = TOKEN.encode("secret", kinds=["gather", "answer", "gather"], expires_at=NOW + 0.7)
    payload = encoded.split(".")[0]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims == {**TOKEN.to_dict(), "v": 2, "kinds": ["answer", "gather"], "exp": int(NOW)}


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'"text"'])
def test_a_signed_payload_that_is_not_a_json_object_is_malformed(payload: bytes) -> None:
    import hashlib
    import hmac

    text = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(hmac.new(b"secret", text.encode(), hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(InvalidCorrelationTokenError, match="malformed"):
        _decode(f"{text}.{sig.decode()}")


def _flip_last_unused_bit(text: str) -> str:
    """``text`` with its last character's unused low bit set: the same bytes in a non-canonical spelling."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:-1] + alphabet[alphabet.index(text[-1]) | 1]


@pytest.mark.parametrize(
    "respell",
    [
        lambda s: s.replace("-", "+").replace("_", "/"),  # the standard alphabet
        lambda s: s + "=",  # padding (a 32-byte HMAC leaves one "=" off)
        _flip_last_unused_bit,
    ],
    ids=["standard-alphabet", "padded", "trailing-bits"],
)
def test_a_signature_spelled_other_than_canonical_base64url_is_malformed(respell: Any) -> None:
    # A token has one spelling: the bytes b64decode would also take from these must not verify.
    for _ in range(40):  # find a signature in which the respelling differs (most of them)
        payload, signature = _encode(expires_at=LATER + _).split(".")
        other = respell(signature)
        if other != signature:
            break
    assert base64.urlsafe_b64decode(
        other.replace("+", "-").replace("/", "_") + "=="
    ) == base64.urlsafe_b64decode(signature + "==")
    with pytest.raises(InvalidCorrelationTokenError, match="malformed correlation token: signature"):
        _decode(f"{payload}.{other}")


# -- length limit -----------------------------------------------------------------------------------------


def _token_of_length(length: int) -> tuple[CorrelationToken, str]:
    """A token whose encoding is exactly ``length`` characters (found by growing the dag id)."""
    for size in range(1, 3000):
        token = CorrelationToken(dag_id="d" * size, run_id="r", task_id="t")
        try:
            encoded = token.encode("secret", kinds=["hangup"], expires_at=LATER)
        except ValueError:
            break
        if len(encoded) == length:
            return token, encoded
    raise AssertionError(f"no dag id length gives a token of exactly {length} characters")


def test_a_token_of_exactly_2000_characters_is_issued_and_accepted() -> None:
    token, encoded = _token_of_length(2000)
    assert len(encoded) == 2000
    assert _decode(encoded) == token


def test_a_token_one_character_over_2000_is_refused_when_issued() -> None:
    token, _ = _token_of_length(2000)
    longer = CorrelationToken(dag_id=token.dag_id + "dd", run_id="r", task_id="t")  # base64 grows by 2 or 3
    with pytest.raises(ValueError, match=r"would be 200[1-3] characters long \(limit 2000\)"):
        longer.encode("secret", kinds=["hangup"], expires_at=LATER)


def test_a_received_token_over_2000_characters_is_malformed_before_its_signature_is_checked() -> None:
    _, encoded = _token_of_length(2000)
    with pytest.raises(InvalidCorrelationTokenError, match="too long"):
        _decode(encoded + "A")


# -- each route and each URL's kinds, against literal values ----------------------------------------------


def test_the_callback_kinds_are_the_seven_routes_of_the_receiver() -> None:
    assert CALLBACK_KINDS == ("ring", "answer", "hangup", "machine-detection", "gather", "dial", "record")


def test_the_kinds_each_url_opens() -> None:
    assert KINDS_OF_URL == {
        "answer": ("answer", "gather", "dial", "record"),
        "ring": ("ring",),
        "hangup": ("hangup",),
        "machine-detection": ("machine-detection",),
    }


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("ring", "/vobiz/callbacks/ring"),
        ("answer", "/vobiz/callbacks/answer"),
        ("hangup", "/vobiz/callbacks/hangup"),
        ("machine-detection", "/vobiz/callbacks/machine-detection"),
        ("gather", "/vobiz/callbacks/gather"),
    ],
)
def test_each_route_has_its_callback_url_and_token(kind: str, path: str) -> None:
    token = TOKEN.encode("secret", kinds=[kind], expires_at=LATER)
    assert (
        callback_url("https://hooks.example.com/vobiz/", kind, token)
        == f"https://hooks.example.com{path}?t={token}"
    )
    assert _decode(token, kind=kind) == TOKEN


def test_callback_url_keeps_the_query_string_of_the_base_url() -> None:
    url = callback_url("https://hooks.example.com/vobiz?route=eu&x=1", "hangup", "a.b")
    assert url == "https://hooks.example.com/vobiz/callbacks/hangup?route=eu&x=1&t=a.b"


def test_callback_url_on_a_bare_host_and_a_plain_http_port() -> None:
    assert (
        callback_url("http://127.0.0.1:8080", "ring", "a.b") == "http://127.0.0.1:8080/callbacks/ring?t=a.b"
    )
    assert callback_url("https://h.example/", "ring", "a.b") == "https://h.example/callbacks/ring?t=a.b"


def test_callback_url_drops_the_fragment_of_the_base_url() -> None:
    assert (
        callback_url("https://h.example/v#top", "ring", "a.b") == "https://h.example/v/callbacks/ring?t=a.b"
    )


@pytest.mark.parametrize(
    "base",
    ["ftp://hooks.example.com/vobiz", "file:///srv/vobiz", "https:///vobiz", "hooks.example.com/vobiz", ""],
)
def test_callback_url_needs_an_absolute_http_or_https_base(base: str) -> None:
    with pytest.raises(ValueError, match="must be an absolute http"):
        callback_url(base, "hangup", "a.b")


@pytest.mark.parametrize("kind", ["status", "", "Hangup", "callbacks"])
def test_callback_url_refuses_other_kinds(kind: str) -> None:
    with pytest.raises(ValueError, match=f"unknown callback kind {kind!r}"):
        callback_url("https://hooks.example.com/vobiz", kind, "a.b")


def test_token_lifetime_with_a_time_limit_of_exactly_24_hours_and_one_second_more() -> None:
    assert token_lifetime(ring_timeout=0, time_limit=MAX_CALL_SECONDS) == 3600 + 86400 + 3600
    assert token_lifetime(ring_timeout=0, time_limit=MAX_CALL_SECONDS + 1) == 3600 + 86400 + 3600
    assert token_lifetime(ring_timeout=0, time_limit=MAX_CALL_SECONDS - 1) == 3600 + 86399 + 3600
    assert MAX_CALL_SECONDS == 86400


def test_the_defaults_are_an_unmapped_first_try_on_the_default_connection() -> None:
    token = CorrelationToken(dag_id="d", run_id="r", task_id="t")
    assert (token.map_index, token.try_number, token.conn_id) == (-1, 1, "vobiz_default")


def test_a_token_cannot_be_changed_once_built() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        TOKEN.try_number = 5  # type: ignore[misc]


@pytest.mark.parametrize("token", ["", None, 12])
def test_an_empty_or_non_string_token_is_malformed_as_empty(token: Any) -> None:
    with pytest.raises(InvalidCorrelationTokenError, match="malformed correlation token: empty"):
        _decode(token)


# -- credentials in callback URLs (Vobiz signs only URLs that carry some) ------------------------------------

CRED_SECRET = "credentials-test-callback-secret-0123456789"


def test_callback_credentials_are_an_hmac_of_the_token_under_the_secret() -> None:
    token = _encode()
    digest = hmac.new(
        CRED_SECRET.encode(), f"callback-url-credentials\n{token}".encode(), hashlib.sha256
    ).digest()
    expected = base64.urlsafe_b64encode(digest[:24]).rstrip(b"=").decode()
    assert callback_credentials(token, CRED_SECRET) == ("vobiz", expected) == (CREDENTIALS_USER, expected)
    assert len(expected) == 32  # 24 bytes, no padding: only URL-safe characters
    # Another token or another secret: other credentials; never derived from anything else.
    assert callback_credentials(_encode(kinds=("ring",)), CRED_SECRET) != callback_credentials(
        token, CRED_SECRET
    )
    assert callback_credentials(token, CRED_SECRET + "x") != callback_credentials(token, CRED_SECRET)
    # Non-ASCII secrets are keyed as UTF-8.
    assert (
        callback_credentials(token, "é" * 20)[1]
        == base64.urlsafe_b64encode(
            hmac.new(
                "é".encode() * 20, f"callback-url-credentials\n{token}".encode(), hashlib.sha256
            ).digest()[:24]
        )
        .rstrip(b"=")
        .decode()
    )


def test_callback_url_with_a_secret_carries_the_credentials() -> None:
    token = _encode()
    user, password = callback_credentials(token, CRED_SECRET)
    url = callback_url(
        "https://hooks.example.com:8443/vobiz?route=eu#top", "hangup", token, secret=CRED_SECRET
    )
    assert (
        url == f"https://{user}:{password}@hooks.example.com:8443/vobiz/callbacks/hangup?route=eu&t={token}"
    )
    assert callback_url("https://hooks.example.com/vobiz", "hangup", token) == (
        f"https://hooks.example.com/vobiz/callbacks/hangup?t={token}"
    )


def test_a_base_url_with_its_own_credentials_keeps_them() -> None:
    """A proxy's basic auth in ``callback_base_url`` stays: any credentials make Vobiz sign."""
    token = _encode()
    url = callback_url("https://proxy:pw@hooks.example.com/vobiz", "ring", token, secret=CRED_SECRET)
    assert url == f"https://proxy:pw@hooks.example.com/vobiz/callbacks/ring?t={token}"
    assert with_callback_credentials(url, token, CRED_SECRET) == url


def test_with_callback_credentials_keeps_the_rest_of_the_url() -> None:
    user, password = callback_credentials("a.b", CRED_SECRET)
    assert with_callback_credentials("http://127.0.0.1:9/cb/hangup?x=1&t=a.b#f", "a.b", CRED_SECRET) == (
        f"http://{user}:{password}@127.0.0.1:9/cb/hangup?x=1&t=a.b"
    )
