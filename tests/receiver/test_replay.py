"""Replayed signatures (security review finding 4), with ``require_signatures`` on, over real HTTP.

Vobiz signs the URL without its query string and a nonce, never the body or the token, and a signature
never expires: a captured one is refused only because its nonce was seen. Before the fix a V3 signature
was accepted again as V2 with nonce ``"." + nonce``, any captured signature worked again once
``nonce_window`` (300 s) had passed, and a ring URL's signature could carry a hangup.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from test_app import (
    AUTH_TOKEN,
    OTHER_TOKEN,
    Receiver,
    call_row,
    connection_json,
    event_count,
    hangup_fields,
    new_uuid,
    ring_fields,
)

from vobiz_provider.correlation import MAX_CALL_SECONDS, token_lifetime
from vobiz_provider.ledger.schema import nonces
from vobiz_provider.signatures import (
    HEADER_MA_V2,
    HEADER_MA_V3,
    HEADER_V2,
    HEADER_V2_NONCE,
    HEADER_V3,
    HEADER_V3_NONCE,
    signature_headers,
)

NONCE = "31415926535897932384"


def _require_signatures(receiver: Receiver) -> None:
    receiver.monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "True")


def _captured_ring(receiver: Receiver, call_uuid: str) -> dict[str, str]:
    """A genuine signed ring callback, stored; returns its headers, as an eavesdropper keeps them."""
    url = receiver.url("ring")
    headers = signature_headers(url, AUTH_TOKEN, nonce=NONCE)
    response = receiver.post("ring", ring_fields(call_uuid), token=None, url=url, headers=headers)
    assert response.status_code == 200, response.text
    return headers


def test_a_v3_signature_is_not_accepted_again_as_v2_with_a_dotted_nonce(receiver: Receiver) -> None:
    _require_signatures(receiver)
    call_uuid = new_uuid()
    captured = _captured_ring(receiver, call_uuid)
    # V3 signs url + "." + N, which is what V2 signs for the nonce "." + N.
    dotted = {HEADER_V2: captured[HEADER_V3], HEADER_V2_NONCE: "." + captured[HEADER_V3_NONCE]}
    forged = hangup_fields(call_uuid)
    response = receiver.post("ring", forged, token=None, url=receiver.url("ring"), headers=dotted, bind=False)
    assert response.status_code == 403
    assert response.json() == {"detail": "invalid Vobiz signature"}
    row = call_row(receiver, call_uuid)
    assert (row.status, row.terminal) == ("ringing", False)
    assert event_count(receiver, call_uuid) == 1


def test_a_captured_signature_is_refused_long_after_it_was_first_seen(receiver: Receiver) -> None:
    _require_signatures(receiver)
    call_uuid = new_uuid()
    captured = _captured_ring(receiver, call_uuid)
    # As late as the longest-lived URL can still be called, Vobiz's retries included (~26 h): five minutes
    # was the whole memory of the receiver before the fix.
    longest = token_lifetime(ring_timeout=None, time_limit=MAX_CALL_SECONDS)
    with receiver.store.engine.begin() as conn:
        conn.execute(
            nonces.update().values(seen_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=longest))
        )
    replayed = receiver.post(
        "ring", ring_fields(new_uuid()), token=None, url=receiver.url("ring"), headers=captured
    )
    assert replayed.status_code == 403
    assert replayed.json() == {"detail": "replayed signature nonce"}
    # Only its V2 half, or only its V3 half: the same nonce signed for the same URL, the same replay.
    for header, nonce_header in ((HEADER_V2, HEADER_V2_NONCE), (HEADER_V3, HEADER_V3_NONCE)):
        half = {header: captured[header], nonce_header: captured[nonce_header]}
        response = receiver.post(
            "ring", ring_fields(new_uuid()), token=None, url=receiver.url("ring"), headers=half
        )
        assert response.status_code == 403, response.text
    with receiver.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(nonces)).scalar_one() == 1


def test_a_ring_url_cannot_end_the_call(receiver: Receiver) -> None:
    """The signature proves the route (the URL), not the body: only the hangup route ends a call."""
    _require_signatures(receiver)
    call_uuid = new_uuid()
    assert receiver.post("ring", ring_fields(call_uuid)).status_code == 200
    hangup_body = hangup_fields(call_uuid, Padding="a different body")  # freshly signed for the ring URL
    assert receiver.post("ring", hangup_body).status_code == 200
    row = call_row(receiver, call_uuid)
    assert (row.status, row.terminal, row.hangup_cause, row.duration) == ("ringing", False, None, None)
    assert receiver.post("hangup", hangup_fields(call_uuid)).status_code == 200  # the hangup route does
    assert call_row(receiver, call_uuid).status == "completed"


def test_nonces_that_are_not_digits_are_refused(receiver: Receiver) -> None:
    _require_signatures(receiver)
    url = receiver.url("hangup")
    for nonce in ("abc", "12345", "1" * 65, "1234567890abcdef1234", ".12345678901234567890"):
        response = receiver.post(
            "hangup",
            hangup_fields(new_uuid()),
            token=None,
            url=url,
            headers=signature_headers(url, AUTH_TOKEN, nonce=nonce),
        )
        assert response.status_code == 403, nonce


# -- review item 12: MA-* signatures could never be verified ------------------------------------------------

MAIN_TOKEN = "main-account-auth-token-0123"


def test_main_account_signatures_are_checked_when_the_connection_names_its_token(receiver: Receiver) -> None:
    receiver.monkeypatch.setenv(
        "AIRFLOW_CONN_VOBIZ_DEFAULT", connection_json(AUTH_TOKEN, main_account_auth_token=MAIN_TOKEN)
    )
    _require_signatures(receiver)
    url = receiver.url("hangup")
    # A sub-account callback: V2/V3 under its own token, MA-V2/MA-V3 under the main account's.
    genuine = signature_headers(url, AUTH_TOKEN, main_account_token=MAIN_TOKEN)
    assert receiver.post("hangup", hangup_fields(new_uuid()), token=None, headers=genuine).status_code == 200
    # The MA headers alone (with their nonces) verify too.
    ma_only = signature_headers(url, AUTH_TOKEN, main_account_token=MAIN_TOKEN)
    ma_only = {name: ma_only[name] for name in (HEADER_MA_V2, HEADER_MA_V3, HEADER_V2_NONCE, HEADER_V3_NONCE)}
    assert receiver.post("hangup", hangup_fields(new_uuid()), token=None, headers=ma_only).status_code == 200
    # A wrong MA signature next to valid V2/V3 ones: every header that can be checked must match.
    forged = {
        **signature_headers(url, AUTH_TOKEN, nonce="27182818284590452353"),
        **{
            name: value
            for name, value in signature_headers(
                url, AUTH_TOKEN, main_account_token=OTHER_TOKEN, nonce="27182818284590452353"
            ).items()
            if name in (HEADER_MA_V2, HEADER_MA_V3)
        },
    }
    call_uuid = new_uuid()
    response = receiver.post("hangup", hangup_fields(call_uuid), token=None, headers=forged)
    assert response.status_code == 403
    assert call_row(receiver, call_uuid) is None
