"""Vobiz callback signatures, checked against HMACs computed here straight from the documented algorithm."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from vobiz_provider.signatures import (
    base_url_of,
    new_nonce,
    sign,
    signature_headers,
    verify_signature,
)

TOKEN = "sub-account-token-123"
MAIN_TOKEN = "main-account-token-456"
NONCE = "01234567890123456789"
URL = "https://hooks.example.com:8443/vobiz/callbacks/hangup?t=abc.def&x=1"
BASE = "https://hooks.example.com:8443/vobiz/callbacks/hangup"


def expected(message: str, key: str) -> str:
    """The documented algorithm: base64(HMAC-SHA256(key, message))."""
    return base64.b64encode(hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()).decode()


def test_base_url_drops_query_fragment_and_userinfo() -> None:
    assert base_url_of(URL) == BASE
    assert base_url_of("https://u:p@h.example/cb?x=1#frag") == "https://h.example/cb"
    assert base_url_of("https://u:p@h.example/cb?x=1", keep_userinfo=True) == "https://u:p@h.example/cb"
    assert base_url_of("http://h.example") == "http://h.example"


def test_v2_and_v3_match_the_documented_formulas() -> None:
    assert sign(URL, NONCE, TOKEN, version="v2") == expected(BASE + NONCE, TOKEN)
    assert sign(URL, NONCE, TOKEN, version="v3") == expected(BASE + "." + NONCE, TOKEN)
    assert sign(URL, NONCE, TOKEN, version="v2") != sign(URL, NONCE, TOKEN, version="v3")


def test_query_string_does_not_change_the_signature() -> None:
    assert sign(BASE + "?t=other", NONCE, TOKEN, version="v3") == sign(BASE, NONCE, TOKEN, version="v3")


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown signature version"):
        sign(URL, NONCE, TOKEN, version="v4")  # type: ignore[arg-type]


def test_nonce_is_20_random_digits() -> None:
    nonces = {new_nonce() for _ in range(50)}
    assert len(nonces) == 50
    assert all(len(n) == 20 and n.isdigit() for n in nonces)


def test_signature_headers_share_one_nonce_and_add_ma_variants() -> None:
    headers = signature_headers(URL, TOKEN, main_account_token=MAIN_TOKEN, nonce=NONCE)
    assert headers == {
        "X-Vobiz-Signature-V2": expected(BASE + NONCE, TOKEN),
        "X-Vobiz-Signature-V2-Nonce": NONCE,
        "X-Vobiz-Signature-V3": expected(f"{BASE}.{NONCE}", TOKEN),
        "X-Vobiz-Signature-V3-Nonce": NONCE,
        "X-Vobiz-Signature-MA-V2": expected(BASE + NONCE, MAIN_TOKEN),
        "X-Vobiz-Signature-MA-V3": expected(f"{BASE}.{NONCE}", MAIN_TOKEN),
    }
    plain = signature_headers(URL, TOKEN)
    assert set(plain) == {
        "X-Vobiz-Signature-V2",
        "X-Vobiz-Signature-V2-Nonce",
        "X-Vobiz-Signature-V3",
        "X-Vobiz-Signature-V3-Nonce",
    }
    assert plain["X-Vobiz-Signature-V2-Nonce"] == plain["X-Vobiz-Signature-V3-Nonce"]


def hand_signed(*, v2: bool = True, v3: bool = True, key: str = TOKEN, base: str = BASE) -> dict[str, str]:
    headers = {}
    if v2:
        headers["X-Vobiz-Signature-V2"] = expected(base + NONCE, key)
        headers["X-Vobiz-Signature-V2-Nonce"] = NONCE
    if v3:
        headers["X-Vobiz-Signature-V3"] = expected(f"{base}.{NONCE}", key)
        headers["X-Vobiz-Signature-V3-Nonce"] = NONCE
    return headers


@pytest.mark.parametrize(("v2", "v3"), [(True, True), (True, False), (False, True)])
def test_valid_signatures(v2: bool, v3: bool) -> None:
    check = verify_signature(hand_signed(v2=v2, v3=v3), URL, [TOKEN])
    assert check.status == "valid"
    assert check.is_valid
    assert check.nonce == NONCE
    assert check.scheme == ("V3" if v3 else "V2")


def test_headers_are_case_insensitive_and_the_query_is_ignored() -> None:
    headers = {key.lower(): value for key, value in hand_signed().items()}
    assert verify_signature(headers, BASE + "?t=completely-different", [TOKEN]).status == "valid"


def test_wrong_token_is_invalid() -> None:
    check = verify_signature(hand_signed(), URL, ["another-token"])
    assert check.status == "invalid"
    assert not check.is_valid


def test_wrong_url_is_invalid() -> None:
    assert verify_signature(
        hand_signed(), "https://hooks.example.com:8443/vobiz/callbacks/ring", [TOKEN]
    ).status == ("invalid")


def test_one_bad_signature_among_good_ones_is_invalid() -> None:
    headers = hand_signed()
    headers["X-Vobiz-Signature-V2"] = expected(BASE + NONCE, "forged")
    check = verify_signature(headers, URL, [TOKEN])
    assert (check.status, check.scheme) == ("invalid", "V2")


def test_signature_without_its_nonce_is_invalid() -> None:
    headers = hand_signed(v2=False)
    del headers["X-Vobiz-Signature-V3-Nonce"]
    assert verify_signature(headers, URL, [TOKEN]).status == "invalid"


def test_garbage_signature_is_invalid() -> None:
    headers = hand_signed(v2=False)
    headers["X-Vobiz-Signature-V3"] = "not base64 at all!!"
    assert verify_signature(headers, URL, [TOKEN]).status == "invalid"


def test_no_signature_headers_is_unsigned() -> None:
    check = verify_signature({"Content-Type": "application/x-www-form-urlencoded"}, URL, [TOKEN])
    assert (check.status, check.nonce, check.scheme) == ("unsigned", None, None)


def test_token_rotation_several_configured_tokens() -> None:
    assert verify_signature(hand_signed(), URL, ["old-token", TOKEN]).status == "valid"


def test_comma_separated_signature_list() -> None:
    headers = hand_signed(v2=False)
    headers["X-Vobiz-Signature-V3"] = ", ".join(
        [expected(f"{BASE}.{NONCE}", "previous-token"), headers["X-Vobiz-Signature-V3"]]
    )
    assert verify_signature(headers, URL, [TOKEN]).status == "valid"
    headers["X-Vobiz-Signature-V3"] = ",".join(
        [expected(f"{BASE}.{NONCE}", "a"), expected(f"{BASE}.{NONCE}", "b")]
    )
    assert verify_signature(headers, URL, [TOKEN]).status == "invalid"


def test_userinfo_in_the_signed_url_is_accepted_either_way() -> None:
    url = "https://user:pass@hooks.example.com:8443/vobiz/callbacks/hangup?t=1"
    with_userinfo = hand_signed(base="https://user:pass@hooks.example.com:8443/vobiz/callbacks/hangup")
    without_userinfo = hand_signed(base=BASE)
    assert verify_signature(with_userinfo, url, [TOKEN]).status == "valid"
    assert verify_signature(without_userinfo, url, [TOKEN]).status == "valid"


def test_main_account_signatures() -> None:
    headers = {
        **hand_signed(),
        "X-Vobiz-Signature-MA-V2": expected(BASE + NONCE, MAIN_TOKEN),
        "X-Vobiz-Signature-MA-V3": expected(f"{BASE}.{NONCE}", MAIN_TOKEN),
    }
    assert verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN]).status == "valid"
    # MA headers checked with the wrong main-account token: refused
    wrong = verify_signature(headers, URL, [TOKEN], main_account_tokens=["not-the-main-token"])
    assert (wrong.status, wrong.scheme) == ("invalid", "MA-V3")
    # without a main-account token configured the MA headers cannot be checked and do not count
    assert verify_signature(headers, URL, [TOKEN]).status == "valid"


def test_main_account_signature_alone() -> None:
    headers = {
        "X-Vobiz-Signature-MA-V3": expected(f"{BASE}.{NONCE}", MAIN_TOKEN),
        "X-Vobiz-Signature-V3-Nonce": NONCE,
    }
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme, check.nonce) == ("valid", "MA-V3", NONCE)
    assert verify_signature(headers, URL, [TOKEN]).status == "unsigned"


def test_round_trip_with_signature_headers() -> None:
    headers = signature_headers(URL, TOKEN, main_account_token=MAIN_TOKEN)
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert check.status == "valid"
    assert check.nonce == headers["X-Vobiz-Signature-V3-Nonce"]
