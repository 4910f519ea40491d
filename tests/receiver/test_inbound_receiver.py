"""Inbound calls: the receiver as a Vobiz application's answer URL, over real HTTP on loopback.

The emulator places the call (``place_inbound_call``: answer URL, the Gather executed with digits, the
hangup), signed with the emulator account's auth token (the ``vobiz_default`` connection); the URLs come from
``vobiz-callbacks inbound-url``. Each request is stored before it is answered, once, and refused (nothing
stored) without the application token, a valid signature or a fresh nonce.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from _dagtest import callback_receiver  # noqa: F401 (fixture)

from vobiz_provider.config import get_settings
from vobiz_provider.ledger import get_ledger
from vobiz_provider.models.inbound import application_token, inbound_url, parse_applications
from vobiz_provider.receiver.cli import main as cli_main
from vobiz_provider.signatures import signature_headers
from vobiz_provider.testing import place_inbound_call

CALLER = "+919876543210"
LINE = "+918000000001"
APPLICATIONS = {
    "incident-line": {
        "message": "This is the incident line.",
        "gather": {
            "prompt": "Press 1 to acknowledge the incident.",
            "num_digits": 1,
            "reply_message": "Acknowledged. Goodbye.",
        },
    }
}


@pytest.fixture
def inbound(monkeypatch: pytest.MonkeyPatch, vobiz_emulator: Any, callback_receiver: str, capsys: Any):  # noqa: F811
    """The incident line configured; returns (answer URL, hangup URL) as the CLI prints them."""
    monkeypatch.setenv("AIRFLOW__VOBIZ__INBOUND_APPLICATIONS", json.dumps(APPLICATIONS))
    capsys.readouterr()
    assert cli_main(["inbound-url", "incident-line"]) == 0
    lines = capsys.readouterr().out.splitlines()
    answer = lines[0].removeprefix("Answer URL (method POST): ")
    hangup = lines[1].removeprefix("Hangup URL (method POST): ")
    return answer, hangup


def _rows() -> list[Any]:
    return get_ledger(get_settings().callback_store).inbound_events_after(0)


def test_cli_prints_signed_urls_with_the_application_token(inbound, callback_receiver):  # noqa: F811
    answer, hangup = inbound
    token = application_token("incident-line", get_settings().signing_secret)
    assert answer.endswith(f"/vobiz/inbound/incident-line?t={token}")
    assert hangup.endswith(f"/vobiz/inbound/incident-line/hangup?t={token}")
    assert answer.startswith("http://vobiz:")  # credentials: Vobiz signs only such URLs
    assert answer.split("@", 1)[1].startswith(callback_receiver.removeprefix("http://"))


def test_unknown_application_and_missing_base_url_are_refused_by_the_cli(monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW__VOBIZ__INBOUND_APPLICATIONS", json.dumps(APPLICATIONS))
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", "https://hooks.example.com/vobiz")
    assert cli_main(["inbound-url", "sales"]) == 2
    assert "no inbound application 'sales' in [vobiz] inbound_applications (configured: incident-line)" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("AIRFLOW__VOBIZ__INBOUND_APPLICATIONS", '{"bad name!": {"message": "x"}}')
    assert cli_main(["inbound-url", "x"]) == 2
    assert "the name must match" in capsys.readouterr().err


def test_an_inbound_call_is_answered_and_its_call_digits_and_hangup_are_stored(inbound, vobiz_emulator):
    answer_url, hangup_url = inbound

    result = place_inbound_call(
        answer_url,
        auth_token=vobiz_emulator.auth_token,
        from_number=CALLER,
        to_number=LINE,
        digits="1",
        hangup_url=hangup_url,
        duration=31,
    )

    assert [(step.kind, step.status) for step in result.steps] == [
        ("answer", 200),
        ("gather", 200),
        ("hangup", 200),
    ]
    assert result.answer.content_type == "application/xml"
    gather = next(ET.fromstring(result.answer.body).iter("Gather"))
    assert gather.get("numDigits") == "1"
    assert "/vobiz/inbound/incident-line/digits?t=" in gather.get("action", "")
    assert result.spoken == [
        "This is the incident line.",
        "Press 1 to acknowledge the incident.",
        "Acknowledged. Goodbye.",
    ]
    rows = _rows()
    assert [(row.kind, row.call_uuid, row.application) for row in rows] == [
        ("call", result.call_uuid, "incident-line"),
        ("digits", result.call_uuid, "incident-line"),
        ("hangup", result.call_uuid, "incident-line"),
    ]
    assert (rows[0].from_number, rows[0].to_number) == (CALLER, LINE)
    assert rows[1].digits == "1"
    assert (rows[2].hangup_cause_code, rows[2].hangup_cause_name, rows[2].duration) == (
        4000,
        "Normal Hangup",
        31,
    )


def test_a_vobiz_retry_is_answered_again_but_stored_once(inbound, vobiz_emulator):
    answer_url, _ = inbound
    first = place_inbound_call(
        answer_url, auth_token=vobiz_emulator.auth_token, from_number=CALLER, to_number=LINE
    )
    again = place_inbound_call(
        answer_url,
        auth_token=vobiz_emulator.auth_token,
        from_number=CALLER,
        to_number=LINE,
        call_uuid=first.call_uuid,
    )

    assert (first.answer.status, again.answer.status) == (200, 200)
    assert again.answer.body == first.answer.body
    assert [row.kind for row in _rows()] == ["call", "digits"]  # the two Gathers timed out: one "" press


def _post(url: str, fields: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, data=fields, headers=headers, timeout=10)


def test_refusals_store_nothing(inbound, vobiz_emulator, monkeypatch):
    answer_url, _ = inbound
    token = vobiz_emulator.auth_token
    fields = {"CallUUID": "c-refused", "From": CALLER, "To": LINE, "Direction": "inbound"}
    signed = signature_headers(answer_url, token)
    bare = answer_url.split("?", 1)[0]

    assert _post(bare, fields, signed).status_code == 403  # no application token
    wrong = answer_url.replace("?t=", "?t=x")
    assert _post(wrong, fields, signature_headers(wrong, token)).status_code == 403
    assert _post(answer_url, fields, {}).status_code == 403  # unsigned
    assert _post(answer_url, fields, signature_headers(answer_url, "another-auth-token")).status_code == 403
    other = answer_url.replace("incident-line", "sales").split("?", 1)[0]
    sales = f"{other}?t={application_token('sales', get_settings().signing_secret)}"
    assert _post(sales, fields, signature_headers(sales, token)).status_code == 404  # not configured
    digits_url = answer_url.replace("/incident-line?", "/incident-line/nope?")
    assert _post(digits_url, fields, signature_headers(digits_url, token)).status_code == 404
    missing = signature_headers(answer_url, token)
    assert _post(answer_url, {"From": CALLER}, missing).status_code == 422
    assert _rows() == []

    # A signature replayed on another body: refused; the same body again is Vobiz's retry.
    headers = signature_headers(answer_url, token)
    assert _post(answer_url, fields, headers).status_code == 200
    assert _post(answer_url, fields, headers).status_code == 200
    assert _post(answer_url, {**fields, "CallUUID": "c-other"}, headers).status_code == 403
    assert [row.call_uuid for row in _rows()] == ["c-refused"]


def test_applications_are_validated_with_the_field_named():
    assert parse_applications(None) == {}
    apps = parse_applications(json.dumps(APPLICATIONS))
    assert apps["incident-line"].conn_id == "vobiz_default"
    with pytest.raises(ValueError, match=r"inbound_applications\['x'\]: invalid keypad prompt|num_digits"):
        parse_applications('{"x": {"gather": {"prompt": "p", "num_digits": 99}}}')
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_applications("{")
    with pytest.raises(ValueError, match="conn_id must be a non-empty string"):
        parse_applications('{"x": {"message": "m", "conn_id": ""}}')
    assert (apps["incident-line"].rate_limit, apps["incident-line"].rate_burst) == (5.0, 100)
    with pytest.raises(
        ValueError, match=r"inbound_applications\['x'\]: rate_limit .*greater than or equal to 0"
    ):
        parse_applications('{"x": {"message": "m", "rate_limit": -1}}')
    with pytest.raises(ValueError, match=r"rate_burst .*greater than or equal to 1"):
        parse_applications('{"x": {"message": "m", "rate_burst": 0}}')
    url = inbound_url("https://h.example/vobiz", "x", "s" * 32, kind="hangup", credentials=False)
    assert url == f"https://h.example/vobiz/inbound/x/hangup?t={application_token('x', 's' * 32)}"


def test_an_application_over_its_rate_is_answered_429_and_nothing_is_stored(
    monkeypatch,
    vobiz_emulator,
    callback_receiver,  # noqa: F811
    capsys,
):
    applications = {
        "busy-line": {"message": "Busy line.", "rate_limit": 0.001, "rate_burst": 2},
        "quiet-line": {"message": "Quiet line."},
    }
    monkeypatch.setenv("AIRFLOW__VOBIZ__INBOUND_APPLICATIONS", json.dumps(applications))
    urls = {}
    for name in applications:
        capsys.readouterr()
        assert cli_main(["inbound-url", name]) == 0
        urls[name] = capsys.readouterr().out.splitlines()[0].removeprefix("Answer URL (method POST): ")
    token = vobiz_emulator.auth_token
    busy = urls["busy-line"]

    def call(url: str, call_uuid: str) -> httpx.Response:
        fields = {"CallUUID": call_uuid, "From": CALLER, "To": LINE, "Direction": "inbound"}
        return _post(url, fields, signature_headers(url, token))

    assert [call(busy, f"c-{n}").status_code for n in range(2)] == [200, 200]
    refused = call(busy, "c-2")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "too many requests for this inbound application" in refused.text
    assert call(urls["quiet-line"], "c-3").status_code == 200  # each application has its own budget
    assert [(row.application, row.call_uuid) for row in _rows()] == [
        ("busy-line", "c-0"),
        ("busy-line", "c-1"),
        ("quiet-line", "c-3"),
    ]
