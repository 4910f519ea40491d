"""Vobiz callback signatures, checked against HMACs computed here straight from the documented algorithm."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac

import pytest

from vobiz_provider.signatures import (
    SignatureCheck,
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


# -- each scheme of the table on its own (a scheme dropped from the table reads "unsigned") -----------------


def ma_signed(version: str, *, key: str = MAIN_TOKEN, nonce_header: str | None = None) -> dict[str, str]:
    """One MA signature header of ``version`` ("V2"/"V3") and its nonce, nothing else."""
    message = BASE + NONCE if version == "V2" else f"{BASE}.{NONCE}"
    return {
        f"X-Vobiz-Signature-MA-{version}": expected(message, key),
        nonce_header or f"X-Vobiz-Signature-{version}-Nonce": NONCE,
    }


def test_main_account_v2_signature_alone_is_valid() -> None:
    check = verify_signature(ma_signed("V2"), URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme, check.nonce, check.url) == ("valid", "MA-V2", NONCE, BASE)


def test_forged_main_account_v2_signature_alone_is_invalid_not_unsigned() -> None:
    # With signatures optional an "unsigned" callback is accepted; a forged MA-V2 header must not read so.
    check = verify_signature(ma_signed("V2", key="forged"), URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme, check.nonce) == ("invalid", "MA-V2", None)


def test_forged_main_account_v3_signature_alone_is_invalid() -> None:
    check = verify_signature(ma_signed("V3", key="forged"), URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme) == ("invalid", "MA-V3")


def test_main_account_v2_signed_with_the_sub_account_token_is_invalid() -> None:
    # The MA headers are keyed by the main account's token only, never by the sub-account's.
    check = verify_signature(ma_signed("V2", key=TOKEN), URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme) == ("invalid", "MA-V2")


def test_main_account_v2_is_the_v2_formula_not_v3() -> None:
    headers = {
        "X-Vobiz-Signature-MA-V2": expected(f"{BASE}.{NONCE}", MAIN_TOKEN),  # the V3 message
        "X-Vobiz-Signature-V2-Nonce": NONCE,
    }
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme) == ("invalid", "MA-V2")


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_main_account_signature_with_its_own_ma_nonce_header(version: str) -> None:
    headers = ma_signed(version, nonce_header=f"X-Vobiz-Signature-MA-{version}-Nonce")
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme, check.nonce) == ("valid", f"MA-{version}", NONCE)


def test_main_account_signature_falls_back_to_the_plain_nonce_when_the_ma_nonce_is_empty() -> None:
    headers = {**ma_signed("V2"), "X-Vobiz-Signature-MA-V2-Nonce": ""}
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.nonce) == ("valid", NONCE)


def test_main_account_v2_without_any_nonce_is_invalid() -> None:
    headers = {"X-Vobiz-Signature-MA-V2": expected(BASE + NONCE, MAIN_TOKEN)}
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme) == ("invalid", "MA-V2")


def test_v2_signature_without_its_nonce_is_invalid() -> None:
    headers = hand_signed(v3=False)
    del headers["X-Vobiz-Signature-V2-Nonce"]
    assert verify_signature(headers, URL, [TOKEN]) == SignatureCheck(status="invalid", scheme="V2")


def test_v2_signature_does_not_take_the_v3_nonce() -> None:
    headers = {"X-Vobiz-Signature-V2": expected(BASE + NONCE, TOKEN), "X-Vobiz-Signature-V3-Nonce": NONCE}
    assert verify_signature(headers, URL, [TOKEN]).status == "invalid"


def test_both_main_account_schemes_are_named_v3_first() -> None:
    headers = {**ma_signed("V2"), **ma_signed("V3")}
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme) == ("valid", "MA-V3")


def test_a_bad_main_account_signature_spoils_good_plain_ones() -> None:
    headers = {**hand_signed(), **ma_signed("V2", key="forged")}
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme) == ("invalid", "MA-V2")


# -- empty keys never verify anything -----------------------------------------------------------------------


def test_an_empty_token_checks_nothing() -> None:
    # A signature anyone can compute (keyed by "") must not pass because an unset token is configured.
    headers = hand_signed(key="")
    assert verify_signature(headers, URL, [""]).status == "unsigned"
    assert verify_signature(headers, URL, ["", TOKEN]).status == "invalid"


def test_an_empty_main_account_token_checks_nothing() -> None:
    headers = ma_signed("V2", key="")
    assert verify_signature(headers, URL, [TOKEN], main_account_tokens=[""]).status == "unsigned"
    check = verify_signature(headers, URL, [TOKEN], main_account_tokens=["", MAIN_TOKEN])
    assert (check.status, check.scheme) == ("invalid", "MA-V2")


# -- nonces -------------------------------------------------------------------------------------------------


def signed_with_nonce(nonce: str) -> dict[str, str]:
    return {"X-Vobiz-Signature-V3": expected(f"{BASE}.{nonce}", TOKEN), "X-Vobiz-Signature-V3-Nonce": nonce}


@pytest.mark.parametrize("digits", [10, 20, 64])
def test_nonces_of_10_to_64_digits_are_accepted(digits: int) -> None:
    nonce = ("1234567890" * 7)[:digits]
    assert verify_signature(signed_with_nonce(nonce), URL, [TOKEN]).status == "valid"


@pytest.mark.parametrize("digits", [9, 65])
def test_nonces_just_outside_10_to_64_digits_are_invalid(digits: int) -> None:
    nonce = ("1234567890" * 7)[:digits]
    assert verify_signature(signed_with_nonce(nonce), URL, [TOKEN]).status == "invalid"


@pytest.mark.parametrize("nonce", [f".{NONCE}", f"{NONCE}x", f" {NONCE}", "\uff11" * 11])
def test_nonces_that_are_not_ascii_digits_are_invalid(nonce: str) -> None:
    # "." + nonce would let one captured V3 signature pass as a V2 signature of another nonce.
    assert verify_signature(signed_with_nonce(nonce), URL, [TOKEN]).status == "invalid"


def test_a_v3_signature_cannot_be_replayed_as_v2_with_a_dotted_nonce() -> None:
    captured = expected(f"{BASE}.{NONCE}", TOKEN)
    headers = {"X-Vobiz-Signature-V2": captured, "X-Vobiz-Signature-V2-Nonce": f".{NONCE}"}
    assert verify_signature(headers, URL, [TOKEN]).status == "invalid"


def test_new_nonces_use_the_whole_20_digit_range() -> None:
    # Uniform over 10**20 values, every leading digit turns up in 500 nonces (all ten are missing from at
    # least one only once in ~10**21 runs); a smaller range padded to 20 digits starts with 0 or 1.
    assert {new_nonce()[0] for _ in range(500)} == set("0123456789")


# -- the replay key ----------------------------------------------------------------------------------------


def replay_key(url: str, nonce: str) -> str:
    return hashlib.sha256(f"{url}\n{nonce}".encode()).hexdigest()


def test_replay_key_is_the_hash_of_the_url_without_userinfo_and_the_nonce() -> None:
    url = "https://user:pass@hooks.example.com:8443/vobiz/callbacks/hangup?t=1"
    check = verify_signature(hand_signed(), url, [TOKEN])
    assert check.url == BASE
    assert check.replay_keys == (replay_key(BASE, NONCE),)  # V2 and V3 share the nonce: one key


def test_replay_keys_cover_every_distinct_nonce() -> None:
    other = "98765432109876543210"
    headers = {
        **signed_with_nonce(other),
        "X-Vobiz-Signature-V2": expected(BASE + NONCE, TOKEN),
        "X-Vobiz-Signature-V2-Nonce": NONCE,
    }
    check = verify_signature(headers, URL, [TOKEN])
    assert (check.status, check.nonce, check.nonces) == ("valid", other, (other, NONCE))
    assert check.replay_keys == (replay_key(BASE, other), replay_key(BASE, NONCE))


def test_no_replay_key_unless_valid() -> None:
    assert verify_signature({}, URL, [TOKEN]).replay_keys == ()
    forged = hand_signed(key="forged")
    assert verify_signature(forged, URL, [TOKEN]).replay_keys == ()
    assert SignatureCheck(status="valid", nonces=(NONCE,)).replay_keys == ()  # no URL: nothing to key


# -- keep_userinfo when signing -----------------------------------------------------------------------------

USERINFO_URL = "https://user:pass@hooks.example.com:8443/vobiz/callbacks/hangup?t=1"
USERINFO_BASE = "https://user:pass@hooks.example.com:8443/vobiz/callbacks/hangup"


@pytest.mark.parametrize(
    ("version", "message"),
    [("v2", USERINFO_BASE + NONCE), ("v3", f"{USERINFO_BASE}.{NONCE}")],
    ids=["v2", "v3"],
)
def test_sign_keeps_userinfo_only_when_asked(version: str, message: str) -> None:
    assert sign(USERINFO_URL, NONCE, TOKEN, version=version, keep_userinfo=True) == expected(message, TOKEN)  # type: ignore[arg-type]
    without = message.replace("user:pass@", "")
    assert sign(USERINFO_URL, NONCE, TOKEN, version=version) == expected(without, TOKEN)  # type: ignore[arg-type]


def test_signature_headers_keep_userinfo_only_when_asked() -> None:
    kept = signature_headers(
        USERINFO_URL, TOKEN, main_account_token=MAIN_TOKEN, nonce=NONCE, keep_userinfo=True
    )
    assert kept == {
        "X-Vobiz-Signature-V2": expected(USERINFO_BASE + NONCE, TOKEN),
        "X-Vobiz-Signature-V2-Nonce": NONCE,
        "X-Vobiz-Signature-V3": expected(f"{USERINFO_BASE}.{NONCE}", TOKEN),
        "X-Vobiz-Signature-V3-Nonce": NONCE,
        "X-Vobiz-Signature-MA-V2": expected(USERINFO_BASE + NONCE, MAIN_TOKEN),
        "X-Vobiz-Signature-MA-V3": expected(f"{USERINFO_BASE}.{NONCE}", MAIN_TOKEN),
    }
    dropped = signature_headers(USERINFO_URL, TOKEN, main_account_token=MAIN_TOKEN, nonce=NONCE)
    assert dropped == signature_headers(BASE, TOKEN, main_account_token=MAIN_TOKEN, nonce=NONCE)


def test_base_url_keeps_a_url_without_userinfo_as_is_either_way() -> None:
    assert base_url_of(URL, keep_userinfo=True) == BASE


def test_base_url_drops_userinfo_up_to_the_last_at_sign() -> None:
    assert base_url_of("https://a@b:c@h.example/cb") == "https://h.example/cb"


# -- the comma-separated list and base64 ---------------------------------------------------------------------

GOOD_V3 = expected(f"{BASE}.{NONCE}", TOKEN)


def v3_header(value: str) -> dict[str, str]:
    return {"X-Vobiz-Signature-V3": value, "X-Vobiz-Signature-V3-Nonce": NONCE}


@pytest.mark.parametrize(
    "value",
    [
        f"not-base64!!,{GOOD_V3}",  # garbage before the good one (rotation time)
        f",{GOOD_V3}",  # an empty item before it
        f" , {GOOD_V3} ",
        f"{GOOD_V3},{expected(f'{BASE}.{NONCE}', 'previous-token')}",  # the good one first
        f"{GOOD_V3},not-base64!!",
    ],
    ids=["garbage-first", "empty-first", "blank-first", "good-first", "garbage-last"],
)
def test_a_good_signature_anywhere_in_the_list_is_valid(value: str) -> None:
    assert verify_signature(v3_header(value), URL, [TOKEN]).status == "valid"


def test_only_empty_or_garbage_items_are_invalid() -> None:
    assert verify_signature(v3_header(" , ,"), URL, [TOKEN]).status == "invalid"
    assert verify_signature(v3_header("!!,??"), URL, [TOKEN]).status == "invalid"


def test_the_first_configured_token_is_accepted_too() -> None:
    assert verify_signature(hand_signed(), URL, [TOKEN, "old-token"]).status == "valid"


def test_signature_without_base64_padding_is_accepted() -> None:
    assert GOOD_V3.endswith("=")
    assert "+" in GOOD_V3  # (the url-safe-alphabet case below relies on it)
    assert verify_signature(v3_header(GOOD_V3.rstrip("=")), URL, [TOKEN]).status == "valid"


@pytest.mark.parametrize(
    "mangled",
    [
        GOOD_V3[:10] + "!" + GOOD_V3[10:],  # a non-alphabet character a lax decoder would skip
        GOOD_V3[:10] + "\n" + GOOD_V3[10:],
        GOOD_V3.replace("+", "-"),  # the URL-safe alphabet is not Vobiz's
        GOOD_V3 + "==",  # too much padding
        GOOD_V3[:-4],  # truncated
    ],
    ids=["bang-inside", "newline-inside", "url-safe-alphabet", "extra-padding", "truncated"],
)
def test_a_signature_that_is_not_strict_base64_is_invalid(mangled: str) -> None:
    assert verify_signature(v3_header(mangled), URL, [TOKEN]).status == "invalid"


# -- a header no key can check does not stop the others from being checked ----------------------------------


def test_main_account_headers_are_checked_when_no_sub_account_token_is_configured() -> None:
    headers = {**hand_signed(), **ma_signed("V2", key="forged")}
    check = verify_signature(headers, URL, [], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme) == ("invalid", "MA-V2")
    good = {**hand_signed(), **ma_signed("V2")}
    check = verify_signature(good, URL, [""], main_account_tokens=[MAIN_TOKEN])
    assert (check.status, check.scheme) == ("valid", "MA-V2")


def test_a_signature_header_with_non_ascii_characters_is_invalid_not_an_error() -> None:
    # HTTP headers arrive as latin-1 text: b64decode refuses non-ASCII str with a plain ValueError.
    assert verify_signature(v3_header("\u00e9t\u00e9"), URL, [TOKEN]).status == "invalid"
    assert verify_signature(v3_header(f"\u00e9,{GOOD_V3}"), URL, [TOKEN]).status == "valid"


def test_a_check_result_cannot_be_changed() -> None:
    check = verify_signature(hand_signed(), URL, [TOKEN])
    with pytest.raises(dataclasses.FrozenInstanceError):
        check.status = "invalid"  # type: ignore[misc]
