"""How the receiver reads a request cheaply without reading it differently: the correlation token from the
query string, the form with its control characters escaped, and the standalone server's direct route to the
receiver."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from vobiz_provider.models.callbacks import carries_free_text
from vobiz_provider.receiver.app import MAX_FIELDS, _parse_form, _query_param
from vobiz_provider.receiver.pipeline import CallbackRejected
from vobiz_provider.receiver.server_app import ServerApp
from vobiz_provider.untrusted import control_character

if TYPE_CHECKING:
    from starlette.requests import Request

# -- the correlation token ----------------------------------------------------------------------------------

_QUERY_PART = st.sampled_from(
    ["t=abc.DEF_-1", "t=", "t", "t=a%2Eb", "t=a+b", "x=1", "tt=2", "", "t=%ZZ", "a=t=3"]
)


@given(st.lists(_QUERY_PART, max_size=5))
def test_the_token_is_read_as_starlettes_query_params_read_it(parts: list[str]) -> None:
    query = "&".join(parts)
    assert _query_param(query.encode(), "t") == QueryParams(query).get("t", "")


# -- the form ------------------------------------------------------------------------------------------------

_NAMES = st.sampled_from(["CallUUID", "HangupCause", "To", "Speech", "X-PH-Note", "Digits"])


@given(st.dictionaries(_NAMES, st.text(alphabet=st.characters(max_codepoint=0x2FF)), max_size=6))
def test_no_field_keeps_a_control_character_it_may_not_carry(fields: dict[str, str]) -> None:
    body = urlencode(fields)
    lower_hex = re.sub("%[0-9A-F]{2}", lambda escape: escape.group().lower(), body)
    for raw in (body, lower_hex):
        parsed = _parse_form(raw.encode(), what="form body")
        assert set(parsed) == set(fields)
        for name, value in parsed.items():
            assert control_character(value, line_breaks=carries_free_text(name)) is None, (raw, name)


_FORM_PIECES = st.sampled_from(
    ["CallUUID", "To", "=", "&", "&&", "+", "%2B", "%3A", "%20", "%e2%82%ac", "%ff", "%", "%4", "x", "é", "1"]
)


def _as_parse_qsl_reads_it(raw: bytes) -> dict[str, str] | str:
    """What the receiver answered reading forms with ``urllib.parse.parse_qsl``: the fields, or why not."""
    try:
        text = "&".join(part for part in raw.decode("utf-8").split("&") if part)
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=MAX_FIELDS
        )
    except UnicodeDecodeError:
        return "form body is not valid UTF-8"
    except ValueError as err:
        if "Max number of fields" in str(err):
            return f"form body has more than {MAX_FIELDS} fields"
        return "form body is not a valid form encoding"
    return dict(pairs)


@given(st.lists(_FORM_PIECES, max_size=30).map("".join))
def test_a_form_is_read_as_parse_qsl_reads_it(text: str) -> None:
    raw = text.encode()
    try:
        read: dict[str, str] | str = _parse_form(raw, what="form body")
    except CallbackRejected as err:
        assert err.status_code == 400
        read = err.reason
    assert read == _as_parse_qsl_reads_it(raw)


def test_more_fields_than_allowed_are_refused() -> None:
    raw = "&".join(f"f{index}=1" for index in range(MAX_FIELDS + 1)).encode()
    with pytest.raises(CallbackRejected, match=f"more than {MAX_FIELDS} fields"):
        _parse_form(raw, what="form body")
    assert len(_parse_form(raw[: raw.rindex(b"&")], what="form body")) == MAX_FIELDS


@pytest.mark.parametrize(
    "raw",
    [
        b"HangupCause=USER%1bBUSY",  # lower-case hex
        b"HangupCause=USER%1BBUSY",
        b"HangupCause=USER\x1bBUSY",  # the byte itself, not percent-encoded
        b"HangupCause=USER%0aBUSY",
        b"HangupCause=USER%00BUSY",
    ],
)
def test_a_control_character_however_encoded_is_escaped(raw: bytes) -> None:
    [(name, value)] = _parse_form(raw, what="form body").items()
    assert name == "HangupCause"
    assert value.startswith("USER\\") and value.endswith("BUSY")
    assert control_character(value) is None


def test_a_form_without_control_characters_is_read_as_it_was_sent() -> None:
    fields = {"CallUUID": "c-1", "Speech": "yes please", "X-PH-Note": "50% off", "Digits": "1#"}
    assert _parse_form(urlencode(fields).encode(), what="form body") == fields


# -- the standalone server's direct route --------------------------------------------------------------------


async def test_only_callbacks_take_the_direct_route_and_the_rest_is_served_as_before() -> None:
    handled: list[str] = []

    async def handle(kind: str, request: Request) -> Response:
        handled.append(f"{request.method} {kind} {request.query_params.get('t')}")
        return PlainTextResponse("direct")

    async def routed(request: Request) -> Response:
        return PlainTextResponse(f"root {request.method}")

    root = Starlette(
        routes=[
            Route("/vobiz/callbacks/{kind}", routed, methods=["POST", "GET"]),
            Route("/vobiz/health", routed),
        ]
    )
    app = ServerApp(root=root, handle_callback=handle)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        posted = await client.post("/vobiz/callbacks/hangup?t=abc", data={"CallUUID": "c"})
        got = await client.get("/vobiz/callbacks/answer?t=def&Digits=1")
        head = await client.head("/vobiz/callbacks/answer?t=x")
        put = await client.put("/vobiz/callbacks/hangup?t=x")
        deeper = await client.post("/vobiz/callbacks/hangup/more?t=x")
        health = await client.get("/vobiz/health")
    assert (posted.text, got.text) == ("direct", "direct")
    assert handled == ["POST hangup abc", "GET answer def"]
    assert head.status_code == 200 and head.text == ""  # HEAD: the root's route, as before
    assert put.status_code == 405
    assert deeper.status_code == 404
    assert health.text == "root GET"
    assert app.state is root.state
