"""Receiver fuzz (issue 9): ``vobiz-callbacks serve`` as a real server, fed generated requests (hypothesis).

The requests mix everything a callback can get wrong: valid and invalid correlation tokens (expired, of
another route, of another secret, tampered, missing), every callback kind and unknown ones, methods,
content types, bodies (form, JSON, garbage, empty, chunked, oversize), field values (every time format
Vobiz's pages show, blanks, names where codes are expected, unknown fields, control characters, NUL, huge
values), signature headers (valid, invalid, missing, malformed nonce, replayed), query strings and sizes;
and some are Vobiz's retries of a callback sent before. The properties, per store:

* no answer is ever >= 500 (the store is up all along) and every answer comes within Vobiz's 3 s;
* an authentic callback (valid token and signature, a call its try placed, a readable form) is answered
  200 whatever its values are; a request failing authentication never is;
* every callback answered 200 is in the store, once: the store holds exactly the callbacks acknowledged;
* at the end the receiver still runs and stores a known-good signed callback.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import sqlalchemy as sa
from _figures import Figures, record, size
from _ledger_helpers import token_for
from _receiver_process import AUTH_TOKEN, SECRET, VOBIZ_TIMEOUT, ReceiverProcess, signed_post
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from vobiz_provider.correlation import CALLBACK_KINDS, CorrelationToken, callback_url
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import events
from vobiz_provider.signatures import base_url_of, signature_headers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: Generated requests per store: >= 10,000 under ./scripts/faults; CI's size keeps the file within ~90 s.
EXAMPLES = size(ci=800, full=10_000)
#: The receiver's body (and query string) limit during the fuzz, a quarter of the default so that
#: oversize query strings still fit the 64 KiB URLs httpx sends.
MAX_BODY = 16_384
#: Longest value in a query string (httpx sends no URL over 64 KiB).
MAX_QUERY_VALUE = 6_000
TRIES = 20
CALLS_PER_TRY = 50
#: Fields whose change makes a callback name another call (so binding, not parsing, decides).
IDENTITY_FIELDS = frozenset({"CallUUID", "RequestUUID", "To"})
#: Fields whose change may give a call another CallUUID when it is accepted.
RENAMING_FIELDS = IDENTITY_FIELDS | {"ALegUUID", "ALegRequestUUID"}
#: Unknown field carrying the fuzz's own id of each callback (never mutated, never a Vobiz field).
SEQ_FIELD = "XFuzzSeq"

TIME_SPELLINGS = [
    "2026-12-02 21:22:36",
    "2026-12-02 21:22:36.000000",
    "2026-12-02 21:22:36 UTC",
    "2026-12-02 21:22:36.000000 UTC",
    "2026-12-02T21:22:36Z",
    "2026-12-02T21:22:36+05:30",
    "2026-12-02T21:22:36.123456+00:00",
    "2026-13-45 99:99:99",
    "02/12/2026 21:22",
    "1764710556",
    "0000-00-00 00:00:00",
]
ODD_VALUES = [
    "",
    " ",
    "null",
    "None",
    "undefined",
    "NORMAL_CLEARING",
    "Normal Hangup",
    "-1",
    "0",
    "1e309",
    "NaN",
    "inf",
    "0x10",
    "4000.5",
    "99999999999999999999999",
    "true",
    "false",
    "yes",
    "\u0663\u0662",
    "\x00",
    "a\x00b",
    "\x1b[31mred",
    "line\r\nInjected: header",
    "\t",
    "\u202e",
    "<Response/>",
    "' OR 1=1 --",
    "%00",
]
VOBIZ_FIELDS = [
    "CallUUID",
    "RequestUUID",
    "ALegUUID",
    "ALegRequestUUID",
    "From",
    "To",
    "Direction",
    "Event",
    "CallStatus",
    "CallerName",
    "SessionStart",
    "StartTime",
    "AnswerTime",
    "EndTime",
    "Duration",
    "BillDuration",
    "BillRate",
    "TotalCost",
    "HangupCause",
    "HangupCauseCode",
    "HangupCauseName",
    "HangupSource",
    "Machine",
    "IfMachine",
    "Digits",
    "InputType",
    "Speech",
    "SpeechConfidenceScore",
    "BilledAmount",
    "ForwardedFrom",
    "STIRAttestation",
    "STIRVerification",
    "ParentAuthID",
    "timestamp",
]
UNKNOWN_FIELDS = [
    "Foo",
    "calluuid",
    "Call UUID",
    "X-Extra",
    "\u00e9v\u00e9nement",
    "a\x00b",
    "Evil\r\nName",
    "_",
]
UNKNOWN_KINDS = [
    "Hangup",
    "HANGUP",
    "machine_detection",
    "hangup ",
    "callback",
    "health",
    "..",
    "../health",
    "hangup\x00",
    "\u00e9",
    "x" * 300,
    "%2e%2e",
]
SIGNED_OK = ("valid", "v2-only", "v3-only", "lowercase", "comma-list")
SIGNED_BAD = (
    "missing",
    "wrong-token",
    "bad-nonce",
    "no-nonce",
    "garbage",
    "other-url",
    "replayed",
    "ma-only",
)
TOKENS_OK = ("valid",)
TOKENS_BAD = ("missing", "empty", "other-route", "expired", "other-secret", "tampered", "garbage", "twice")
FORM_TYPES = (
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "Application/X-WWW-Form-Urlencoded",
)
OTHER_TYPES = ("application/json", "text/plain", "multipart/form-data; boundary=xyz", "text/xml", "*/*")


@dataclass(frozen=True)
class Call:
    """A call the operator recorded as placed by try ``try_index``."""

    try_index: int
    request_uuid: str
    call_uuid: str
    destination: str


@dataclass
class Pool:
    """The tries and their placed calls the fuzz's callbacks may belong to."""

    tries: list[CorrelationToken]
    calls: list[list[Call]]


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request and what the fuzz expects of it."""

    method: str
    kind: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    chunked: bool
    seq: int
    nonce: str | None
    authentic: bool  # must be answered 200
    forged: bool  # must not be answered 200
    signed_url: str
    call: str = ""  # RequestUUID of the placed call it names
    renames: bool = False  # names that call with other identity fields (a CallUUID of its own...)


@dataclass
class Tally:
    """What the fuzz sent and saw."""

    sent: int = 0
    answered_200: int = 0
    unexpected_5xx: int = 0
    slowest: float = 0.0
    slow: list[tuple[float, str]] = field(default_factory=list)  # the five slowest answers, and to what
    statuses: dict[int, int] = field(default_factory=dict)
    # seq of each callback answered 200 -> the replay keys of its answered sends
    acknowledged: dict[int, set[str]] = field(default_factory=dict)
    # Calls an accepted callback gave another CallUUID (the first CallUUID a call gets is its own for good)
    renamed: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    # The callbacks answered 200: kind, URL, body, seq and nonce (for retries and replays).
    history: list[tuple[str, str, bytes, int, str]] = field(default_factory=list)


def replay_key(signed_url: str, nonce: str) -> str:
    """The key the receiver stores a signed callback's nonce under (``SignatureCheck.replay_keys``)."""
    return hashlib.sha256(f"{base_url_of(signed_url)}\n{nonce}".encode()).hexdigest()


def place_pool(store_url: str) -> Pool:
    """Record, as the operator does after ``POST /Call/``, TRIES tries of CALLS_PER_TRY calls each."""
    ledger = CallLedger(store_url)
    try:
        tries, calls = [], []
        for index in range(TRIES):
            correlation = CorrelationToken(dag_id="fuzz", run_id="run", task_id=f"call_{index}", try_number=1)
            placed = [
                Call(index, str(uuid.uuid4()), str(uuid.uuid4()), f"+9198{index:03d}{n:05d}")
                for n in range(CALLS_PER_TRY)
            ]
            ledger.register_fired_calls(
                request_uuids=[call.request_uuid for call in placed],
                destinations=[call.destination for call in placed],
                correlation=correlation,
            )
            tries.append(correlation)
            calls.append(placed)
        return Pool(tries=tries, calls=calls)
    finally:
        ledger.dispose()


def base_fields(kind: str, call: Call) -> dict[str, str]:
    """The fields Vobiz sends with a ``kind`` callback of ``call``."""
    fields = {
        "CallUUID": call.call_uuid,
        "RequestUUID": call.request_uuid,
        "ALegRequestUUID": call.request_uuid,
        "From": "+911171366900",
        "To": call.destination,
        "Direction": "outbound",
        "SessionStart": "2026-12-02 21:22:36.000000 UTC",
    }
    extra = {
        "ring": {"Event": "Ring", "CallStatus": "ringing"},
        "answer": {"Event": "StartApp", "CallStatus": "in-progress", "ALegUUID": call.call_uuid},
        "machine-detection": {"Event": "MachineDetection", "CallStatus": "in-progress", "Machine": "false"},
        "gather": {"Event": "Gather", "CallStatus": "in-progress", "Digits": "1", "InputType": "dtmf"},
        "hangup": {
            "Event": "Hangup",
            "CallStatus": "completed",
            "HangupCause": "NORMAL_CLEARING",
            "HangupCauseCode": "4000",
            "HangupCauseName": "Normal Hangup",
            "HangupSource": "Callee",
            "Duration": "12",
            "BillDuration": "60",
            "StartTime": "2026-12-02 21:22:36",
            "AnswerTime": "2026-12-02 21:22:41",
            "EndTime": "2026-12-02 21:22:53",
        },
    }
    return {**fields, **extra.get(kind, extra["hangup"])}


values = st.one_of(
    st.sampled_from(TIME_SPELLINGS),
    st.sampled_from(ODD_VALUES),
    st.text(max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=200, max_value=40_000).map(lambda n: "9" * n),
)


def token_text(pool: Pool, try_index: int, route: str, variant: str) -> str | None:
    """The ``t`` parameter of a ``variant`` token of try ``try_index`` for ``route``."""
    correlation = pool.tries[try_index]
    token_route = route if route in CALLBACK_KINDS else "hangup"
    good = token_for(correlation, token_route, secret=SECRET)
    if variant == "valid":
        return good
    if variant == "missing":
        return None
    if variant == "empty":
        return ""
    if variant == "other-route":
        other = "ring" if token_route in ("answer", "gather", "dial", "record") else "answer"
        return token_for(correlation, other, secret=SECRET)
    if variant == "expired":
        return token_for(correlation, token_route, secret=SECRET, lifetime=-60)
    if variant == "other-secret":
        return token_for(correlation, token_route, secret="another-callback-secret-0123456789abcdef")
    if variant == "tampered":
        middle = len(good) // 2
        return good[:middle] + ("A" if good[middle] != "A" else "B") + good[middle + 1 :]
    if variant == "garbage":
        return "not-a-token.\u00e9\x7f"
    raise AssertionError(variant)


def signature(url: str, variant: str, nonce: str, replayed: str | None) -> dict[str, str]:
    """Signature headers of ``variant`` for a request to ``url``."""
    good = signature_headers(url, AUTH_TOKEN, nonce=nonce)
    v2, v3 = "X-Vobiz-Signature-V2", "X-Vobiz-Signature-V3"
    if variant == "valid":
        return good
    if variant == "v2-only":
        return {key: value for key, value in good.items() if key.startswith(v2)}
    if variant == "v3-only":
        return {key: value for key, value in good.items() if key.startswith(v3)}
    if variant == "lowercase":
        return {key.lower(): value for key, value in good.items()}
    if variant == "comma-list":  # during a token rotation Vobiz may send two
        other = signature_headers(url, "an-older-auth-token", nonce=nonce)
        return {**good, v3: f"{other[v3]}, {good[v3]}"}
    if variant == "missing":
        return {}
    if variant == "wrong-token":
        return signature_headers(url, "someone-elses-auth-token", nonce=nonce)
    if variant == "bad-nonce":
        return {
            **signature_headers(url, AUTH_TOKEN, nonce="12ab"),
            f"{v3}-Nonce": "12ab",
            f"{v2}-Nonce": "12ab",
        }
    if variant == "no-nonce":
        return {v2: good[v2], v3: good[v3]}
    if variant == "garbage":
        return {v2: "%%%not base64", f"{v2}-Nonce": nonce, v3: "", f"{v3}-Nonce": nonce}
    if variant == "other-url":
        return signature_headers("https://evil.example/vobiz/callbacks/hangup", AUTH_TOKEN, nonce=nonce)
    if variant == "replayed":
        return signature_headers(url, AUTH_TOKEN, nonce=replayed or nonce)
    if variant == "ma-only":  # no main-account token is configured: it checks nothing, so it is unsigned
        return {"X-Vobiz-Signature-MA-V3": good[v3], f"{v3}-Nonce": nonce}
    raise AssertionError(variant)


def requests(pool: Pool, base_url: str, tally: Tally) -> st.SearchStrategy[FuzzRequest]:
    """Generated requests; ``tally.history`` (callbacks sent before) feeds Vobiz-style retries."""

    @st.composite
    def build(draw: st.DrawFn) -> FuzzRequest:
        seq = tally.sent
        nonce = f"{draw(st.integers(min_value=0, max_value=10**12)):012d}{seq:08d}"
        # What is drawn never depends on the history (hypothesis insists): picks are reduced modulo it.
        resend, pick = draw(st.integers(min_value=0, max_value=19)) == 0, draw(st.integers(0, 10**6))
        method = draw(
            st.sampled_from(["POST"] * 12 + ["GET"] * 4 + ["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
        )
        known_kind = draw(st.integers(0, 9)) > 0
        kind = draw(st.sampled_from(CALLBACK_KINDS if known_kind else UNKNOWN_KINDS))
        try_index = draw(st.integers(0, TRIES - 1))
        binding = draw(
            st.sampled_from(["own"] * 8 + ["other-try", "unknown-request", "null-request", "no-ids"])
        )
        call = pool.calls[try_index][draw(st.integers(0, CALLS_PER_TRY - 1))]
        if binding == "other-try":
            call = pool.calls[(try_index + 1) % TRIES][draw(st.integers(0, CALLS_PER_TRY - 1))]
        fields = base_fields(kind, call)
        if binding == "unknown-request":
            fields["RequestUUID"] = fields["ALegRequestUUID"] = str(uuid.uuid4())
        elif binding == "null-request":
            fields["RequestUUID"] = fields["ALegRequestUUID"] = draw(st.sampled_from(["null", "", "None"]))
        elif binding == "no-ids":
            fields["RequestUUID"] = fields["ALegRequestUUID"] = ""
            fields["CallUUID"] = draw(st.sampled_from(["", "null"]))
            fields.pop("ALegUUID", None)
        mutations = draw(
            st.lists(st.tuples(st.sampled_from(VOBIZ_FIELDS + UNKNOWN_FIELDS), values), max_size=6)
        )
        for name, value in mutations:
            fields[name] = value
        dropped = draw(st.lists(st.sampled_from(sorted(fields)), max_size=2))
        for name in dropped:
            fields.pop(name, None)
        fields[SEQ_FIELD] = str(seq)
        touched = {name for name, _ in mutations} | set(dropped)

        token_variant = draw(st.sampled_from(TOKENS_OK * 8 + TOKENS_BAD))
        token = token_text(pool, try_index, kind, "valid" if token_variant == "twice" else token_variant)
        query: list[tuple[str, str]] = [] if token is None else [("t", token)]
        if token_variant == "twice":
            query.append(("t", "second-token"))
        query += draw(
            st.lists(
                st.tuples(st.sampled_from(["x", "utm", "T", "t2", ""]), st.text(max_size=10)), max_size=2
            )
        )
        path_kind = quote(kind, safe="")
        signed_url = f"{base_url}/callbacks/{path_kind}"
        sig_variant = draw(st.sampled_from(SIGNED_OK * 4 + SIGNED_BAD))
        replayed = None
        if sig_variant == "replayed":
            # A nonce already accepted on this very URL, on another body: a captured signature reused.
            same_url = [entry for entry in tally.history if entry[0] == kind]
            if same_url:
                replayed = same_url[pick % len(same_url)][4]
            else:
                sig_variant = "valid"
        headers = signature(signed_url, sig_variant, nonce, replayed)
        lowered = {key.lower(): value for key, value in headers.items()}
        sent_nonce = lowered.get("x-vobiz-signature-v3-nonce") or lowered.get("x-vobiz-signature-v2-nonce")

        encoding = draw(
            st.sampled_from(
                ["form"] * 10
                + ["form-latin1", "json", "garbage", "empty", "oversize", "no-equals", "many-fields"]
            )
        )
        form = list(fields.items())
        if encoding == "oversize":
            form.append(("Padding", "p" * (MAX_BODY + draw(st.integers(1, 5000)))))
        if encoding == "many-fields":
            form += [(f"F{n}", "1") for n in range(draw(st.integers(150, 400)))]
        if method == "GET":
            query += [(name, value[:MAX_QUERY_VALUE]) for name, value in form]
            body = b""
        elif encoding in ("form", "oversize", "many-fields"):
            body = urlencode(form).encode()
        elif encoding == "form-latin1":
            body = urlencode(form, encoding="latin-1", errors="replace").encode()
        elif encoding == "json":
            body = json.dumps(fields).encode()
        elif encoding == "garbage":
            body = draw(st.binary(max_size=300))
        elif encoding == "no-equals":
            body = urlencode(form).encode() + b"&loose"
        else:
            body = b""
        content_type = draw(
            st.sampled_from([*FORM_TYPES * 3, *OTHER_TYPES, None])
            if encoding not in ("json",)
            else st.sampled_from(["application/json", FORM_TYPES[0]])
        )
        if content_type is not None:
            headers["Content-Type"] = content_type
        headers.update(
            draw(
                st.dictionaries(
                    st.sampled_from(["X-Forwarded-For", "X-Forwarded-Proto", "User-Agent", "Accept", "Host"]),
                    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
                        str.strip
                    ),
                    max_size=2,
                )
            )
        )
        chunked = method != "GET" and bool(body) and draw(st.booleans())

        size_ok = len(urlencode(query)) <= MAX_BODY if method == "GET" else len(body) <= MAX_BODY
        readable = (method == "GET" or (encoding == "form" and content_type in FORM_TYPES)) and size_ok
        # Only names of a call (and a valid token) decide binding: a field left out may be one of them.
        authentic = (
            method in ("POST", "GET")
            and known_kind
            and binding == "own"
            and not touched & IDENTITY_FIELDS
            and token_variant == "valid"
            and sig_variant in SIGNED_OK
            and readable
            and len([name for name, _ in form]) <= 200
        )
        # Two tokens, the first one valid: which one counts is the framework's business; no promise.
        forged = token_variant not in ("valid", "twice") or sig_variant not in SIGNED_OK or not known_kind
        if tally.history and resend:  # drawn all the same: hypothesis wants the same draws every time
            # Vobiz's retry of a callback sent before: the same URL and body, a new nonce.
            kind, url, body, old_seq, _ = tally.history[pick % len(tally.history)]
            return FuzzRequest(
                method="POST",
                kind=kind,
                query=[("t", url.split("?t=", 1)[1])],
                headers={**signature_headers(url, AUTH_TOKEN, nonce=nonce), "Content-Type": FORM_TYPES[0]},
                body=body,
                chunked=False,
                seq=old_seq,
                nonce=nonce,
                authentic=True,  # stored before: answered 200 ("duplicate"), stored once
                forged=False,
                signed_url=url,
                call="",
            )
        return FuzzRequest(
            method=method,
            kind=kind,
            query=query,
            headers=headers,
            body=body,
            chunked=chunked,
            seq=seq,
            nonce=sent_nonce,
            authentic=authentic,
            forged=forged,
            signed_url=signed_url,
            call=call.request_uuid,
            renames=binding != "own" or bool(touched & RENAMING_FIELDS),
        )

    return build()


def send(client: httpx.Client, base_url: str, request: FuzzRequest) -> httpx.Response:
    path_kind = quote(request.kind, safe="")
    url = f"{base_url}/callbacks/{path_kind}"
    if request.query:
        url += "?" + urlencode(request.query)
    content: Any = iter([request.body]) if request.chunked else request.body
    return client.request(request.method, url, content=content or None, headers=request.headers)


def stored_events(store_url: str) -> list[tuple[str | None, str]]:
    """``(nonce, XFuzzSeq)`` of every event row."""
    ledger = CallLedger(store_url)
    try:
        ledger.upgrade()
        with ledger.engine.connect() as conn:
            rows = conn.execute(sa.select(events.c.nonce, events.c.fields)).all()
        return [(nonce, (fields or {}).get(SEQ_FIELD, "")) for nonce, fields in rows]
    finally:
        ledger.dispose()


@pytest.fixture
def fuzzed_receiver(fault_store_url: str, tmp_path: Path) -> Iterator[ReceiverProcess]:
    with ReceiverProcess(
        store_url=fault_store_url, log=tmp_path / "receiver.log", settings={"max_body_bytes": str(MAX_BODY)}
    ) as receiver:
        yield receiver


def test_receiver_fuzz(store_kind: str, fault_store_url: str, fuzzed_receiver: ReceiverProcess) -> None:
    receiver = fuzzed_receiver
    pool = place_pool(fault_store_url)
    tally = Tally()
    started = time.monotonic()

    with httpx.Client(timeout=30) as client:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same requests on every run: CI failures reproduce
            database=None,  # no .hypothesis directory in the repository
            phases=[Phase.generate],  # every example is one request: counts stay exact, state stays simple
            suppress_health_check=list(HealthCheck),
        )
        @given(request=requests(pool, receiver.base_url, tally))
        def one_request(request: FuzzRequest) -> None:
            tally.sent += 1
            begun = time.perf_counter()
            try:
                response = send(client, receiver.base_url, request)
            except httpx.HTTPError as err:
                tally.violations.append(
                    f"#{request.seq} {request.method} {request.kind!r}: no answer: {err!r}"
                )
                return
            elapsed = time.perf_counter() - begun
            tally.slowest = max(tally.slowest, elapsed)
            status = response.status_code
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            what = f"#{request.seq} {request.method} {request.kind!r} -> {status} {response.text[:200]!r}"
            tally.slow = sorted([*tally.slow, (elapsed, f"{what} ({len(request.body)} bytes)")])[-5:]
            if status >= 500:
                tally.unexpected_5xx += 1
                tally.violations.append(f"5xx: {what}")
            if elapsed >= VOBIZ_TIMEOUT:
                tally.violations.append(f"slower than {VOBIZ_TIMEOUT} s ({elapsed:.2f} s): {what}")
            if status == 200 and request.renames:
                tally.renamed.add(request.call)
            if request.authentic and request.call not in tally.renamed and status != 200:
                sent = request.body[:600] if request.method != "GET" else urlencode(request.query[1:])[:600]
                tally.violations.append(f"authentic callback refused: {what}; sent {sent!r}")
            if status == 200:
                tally.answered_200 += 1
                if request.forged:
                    tally.violations.append(f"forged request accepted: {what}")
                if request.nonce is None:
                    tally.violations.append(f"200 without a signature nonce: {what}")
                else:
                    keys = tally.acknowledged.setdefault(request.seq, set())
                    keys.add(replay_key(request.signed_url, request.nonce))
            if (
                status == 200
                and request.method == "POST"
                and request.query
                and request.query[0][0] == "t"
                and request.nonce
                and request.seq == tally.sent - 1
            ):
                # Accepted: its nonce is spent on this URL, and Vobiz may send it again.
                url = f"{request.signed_url}?t={request.query[0][1]}"
                tally.history.append((request.kind, url, request.body, request.seq, request.nonce))

        one_request()

        # Still up, and still storing: a known-good signed callback at the end.
        final_call = pool.calls[0][0]
        final = signed_post(
            client,
            receiver,
            "hangup",
            pool.tries[0],
            {**base_fields("hangup", final_call), SEQ_FIELD: "final", "HangupCause": "USER_BUSY"},
            nonce="99999999999999999999",
        )
        health = client.get(f"{receiver.base_url}/health")
    duration = time.monotonic() - started
    alive = receiver.alive

    rows = stored_events(fault_store_url)
    stored_keys = [nonce for nonce, _ in rows]
    final_key = replay_key(callback_url(receiver.base_url, "hangup", "x"), "99999999999999999999")
    matched: dict[int, int] = {}
    key_owner = {key: seq for seq, keys in tally.acknowledged.items() for key in keys}
    unacknowledged = 0
    for key in stored_keys:
        if key == final_key:
            continue
        seq = key_owner.get(key or "")
        if seq is None:
            unacknowledged += 1
        else:
            matched[seq] = matched.get(seq, 0) + 1
    lost = sorted(set(tally.acknowledged) - set(matched))
    duplicated = sum(count - 1 for count in matched.values())
    figures = record(
        Figures(
            scenario="receiver fuzz",
            store=store_kind,
            sent=tally.sent,
            acknowledged=len(tally.acknowledged),
            stored=len(rows) - (final_key in stored_keys),
            lost=len(lost),
            duplicated=duplicated,
            unexpected_5xx=tally.unexpected_5xx,
            slowest_answer_s=tally.slowest,
            note=(
                f"{tally.answered_200} answers 200 (retries included), statuses "
                + " ".join(f"{code}:{n}" for code, n in sorted(tally.statuses.items()))
                + f"; {duration:.0f} s"
            ),
        )
    )
    print(f"receiver fuzz on {store_kind}: {tally.sent} requests in {duration:.1f} s; slowest answers:")
    for elapsed, what in reversed(tally.slow):
        print(f"  {elapsed:.3f} s: {what}")
    assert tally.sent >= EXAMPLES
    assert not tally.violations, f"{len(tally.violations)} violations, first ones:\n" + "\n".join(
        tally.violations[:20]
    )
    assert final.status_code == 200, final.text
    assert health.status_code == 200 and alive
    assert final_key in stored_keys
    assert unacknowledged == 0, f"{unacknowledged} stored callbacks were never answered 200"
    assert not lost, f"answered 200 but not stored: callbacks {lost[:20]}"
    assert figures.clean and figures.duplicated == 0
    assert figures.stored == figures.acknowledged
