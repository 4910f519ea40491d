"""Secure by default (issue 9, item 3): signed callbacks are required, over the URLs the provider issues.

Vobiz signs only callback URLs that carry credentials, so every URL the provider issues has
``vobiz:<password>@`` derived from its correlation token and ``[vobiz] callback_secret``; the receiver
rebuilds that URL to check a signature made over it with its credentials (Vobiz's Python sample) or without
them (its other samples). Rotations of both secrets are exercised here over real HTTP: the callback secret
(fallbacks) and the signing auth token (``signature_conn_ids``).
"""

from __future__ import annotations

import base64
import time

import pytest
from _ledger_helpers import token_for
from test_app import (
    AUTH_TOKEN,
    SECRET,
    Receiver,
    call_row,
    connection_json,
    hangup_fields,
    new_uuid,
    nothing_stored,
    ti,
)

from vobiz_provider.correlation import callback_credentials, callback_url
from vobiz_provider.receiver.pipeline import SETTINGS_TTL
from vobiz_provider.signatures import signature_headers

OLD_SECRET = "the-callback-secret-before-rotation-0123456789"
NEW_TOKEN = "auth-token-of-the-migrated-connection"


def _signed_post(receiver: Receiver, url: str, call_uuid: str, *, token: str = AUTH_TOKEN, keep: bool) -> int:
    receiver.place(hangup_fields(call_uuid))
    headers = signature_headers(url, token, keep_userinfo=keep)
    return receiver.client.post(url, data=hangup_fields(call_uuid), headers=headers).status_code


@pytest.mark.parametrize("keep", [True, False], ids=["userinfo-kept", "userinfo-stripped"])
def test_a_signature_over_the_issued_url_counts_with_or_without_its_credentials(
    receiver: Receiver, keep: bool
) -> None:
    url = receiver.url("hangup")
    token = token_for(ti(), "hangup", secret=SECRET)
    user, password = callback_credentials(url.split("t=", 1)[1], SECRET)
    assert url.startswith(f"http://{user}:{password}@127.0.0.1:")
    call_uuid = new_uuid()
    assert _signed_post(receiver, url, call_uuid, keep=keep) == 200
    assert call_row(receiver, call_uuid).status == "completed"
    # Signed over the same host and path with other credentials: not the URL that was issued.
    other = callback_url(receiver.base_url, "hangup", token).replace("http://", "http://vobiz:guessed@")
    forged = new_uuid()
    receiver.place(hangup_fields(forged))
    headers = signature_headers(other, AUTH_TOKEN, keep_userinfo=True)
    assert receiver.client.post(url, data=hangup_fields(forged), headers=headers).status_code == 403
    assert nothing_stored(receiver, forged)


def test_the_basic_auth_header_is_not_what_authenticates(receiver: Receiver) -> None:
    """It repeats credentials derived from the URL's own token: the token and the signature decide."""
    url = receiver.url("hangup")
    call_uuid = new_uuid()
    receiver.place(hangup_fields(call_uuid))
    wrong = "Basic " + base64.b64encode(b"vobiz:wrong").decode()
    headers = {**signature_headers(url, AUTH_TOKEN), "Authorization": wrong}
    assert receiver.client.post(url, data=hangup_fields(call_uuid), headers=headers).status_code == 200


def test_urls_issued_under_the_old_callback_secret_work_until_it_is_removed(receiver: Receiver) -> None:
    receiver.monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET_FALLBACKS", OLD_SECRET)
    old_url = receiver.url("hangup", secret=OLD_SECRET)  # issued before the rotation, its credentials too
    new_url = receiver.url("hangup")
    assert old_url.split("@")[0] != new_url.split("@")[0]
    for keep in (True, False):
        assert _signed_post(receiver, old_url, new_uuid(), keep=keep) == 200
        assert _signed_post(receiver, new_url, new_uuid(), keep=keep) == 200

    receiver.monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_SECRET_FALLBACKS")
    # Letting the receiver's cached [vobiz] settings expire is the behaviour here (time, not a guess).
    time.sleep(SETTINGS_TTL + 0.1)
    call_uuid = new_uuid()
    receiver.place(hangup_fields(call_uuid))
    refused = receiver.client.post(
        old_url, data=hangup_fields(call_uuid), headers=signature_headers(old_url, AUTH_TOKEN)
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "invalid correlation token: correlation token has a bad signature"
    assert nothing_stored(receiver, call_uuid)
    assert _signed_post(receiver, new_url, new_uuid(), keep=True) == 200


def test_two_signing_connections_during_a_token_migration(receiver: Receiver) -> None:
    """``signature_conn_ids`` names both connections while Vobiz may sign with either auth token."""
    receiver.monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_MIGRATED", connection_json(NEW_TOKEN))
    receiver.monkeypatch.setenv("AIRFLOW__VOBIZ__SIGNATURE_CONN_IDS", "vobiz_default,vobiz_migrated")
    url = receiver.url("hangup")
    assert _signed_post(receiver, url, new_uuid(), token=AUTH_TOKEN, keep=False) == 200
    assert _signed_post(receiver, url, new_uuid(), token=NEW_TOKEN, keep=True) == 200
    assert _signed_post(receiver, url, new_uuid(), token="neither-token", keep=False) == 403

    # Migration over: only the call's own connection (vobiz_default) signs; the other token is refused.
    receiver.monkeypatch.delenv("AIRFLOW__VOBIZ__SIGNATURE_CONN_IDS")
    time.sleep(SETTINGS_TTL + 0.1)
    assert _signed_post(receiver, url, new_uuid(), token=NEW_TOKEN, keep=False) == 403
    assert _signed_post(receiver, url, new_uuid(), token=AUTH_TOKEN, keep=True) == 200
