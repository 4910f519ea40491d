"""CallPlacer, the one way a call is placed: against the emulator over loopback HTTP and a SQLite ledger."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from vobiz_provider.calls.placement import CallPlacer
from vobiz_provider.calls.templating import RECEIVER_ANSWER_PLACEHOLDER
from vobiz_provider.config import MIN_NONCE_WINDOW, VobizSettings
from vobiz_provider.correlation import CorrelationToken, callback_credentials, token_lifetime
from vobiz_provider.exceptions import InvalidCorrelationTokenError, VobizError, VobizValidationError
from vobiz_provider.hooks.vobiz import VobizHook
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import placements
from vobiz_provider.models.answer import AnswerSpec
from vobiz_provider.models.call import MakeCallRequest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from vobiz_provider.testing import EmulatorHandle

SECRET = "placement-test-secret-0123456789abcdef"
BASE = "https://hooks.example.com/vobiz"
CALLER = "+14155550100"
log = logging.getLogger("test_placement")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[CallLedger]:
    ledger = CallLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.dispose()


@pytest.fixture
def placer(
    vobiz_emulator: EmulatorHandle, ledger: CallLedger, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CallPlacer]:
    monkeypatch.setenv("AIRFLOW_CONN_VOBIZ_DEFAULT", vobiz_emulator.connection_json())
    hook = VobizHook()
    yield CallPlacer(hook=hook, log=log, settings=VobizSettings(callback_secret=SECRET), ledger=ledger)
    hook.close()


def _token(try_number: int = 1) -> CorrelationToken:
    return CorrelationToken(dag_id="reminders", run_id="r1", task_id="call", try_number=try_number)


def _request(**fields: Any) -> MakeCallRequest:
    return MakeCallRequest.build(
        **{"from_number": CALLER, "to": "+14155550101", "answer_url": RECEIVER_ANSWER_PLACEHOLDER, **fields}
    )


def _tokens(url: str) -> list[str]:
    return parse_qs(urlsplit(url).query)["t"]


def _bare(url: str) -> str:
    """``url`` without the ``user:password@`` the placer puts in it."""
    parts = urlsplit(url)
    return url.replace(f"{parts.username}:{parts.password}@", "", 1)


def test_plan_points_the_empty_callback_urls_at_the_receiver(placer: CallPlacer) -> None:
    own = "https://example.com/my-hangup"
    spec = AnswerSpec.build(message="Hello")
    planned = placer.plan(_request(), correlation=_token(), callback_base_url=BASE, spec=spec)
    kept = placer.plan(
        _request(hangup_url=own, machine_detection=True), correlation=_token(), callback_base_url=BASE
    )

    request = planned.request
    assert _bare(request.answer_url).startswith(f"{BASE}/callbacks/answer?t=")
    assert request.hangup_url is not None and _bare(request.hangup_url).startswith(
        f"{BASE}/callbacks/hangup?t="
    )
    assert request.ring_url is not None and _bare(request.ring_url).startswith(f"{BASE}/callbacks/ring?t=")
    assert request.machine_detection_url is None  # machine detection is off
    tokens = {kind: _tokens(getattr(request, f"{kind}_url"))[0] for kind in ("answer", "hangup", "ring")}
    # Each URL carries credentials, so that Vobiz signs its callbacks: derived from its token and the
    # callback secret (nothing stored), never the auth token.
    for kind, token in tokens.items():
        parts = urlsplit(getattr(request, f"{kind}_url"))
        assert (parts.username, parts.password) == callback_credentials(token, SECRET)
    assert len({urlsplit(getattr(request, f"{kind}_url")).password for kind in tokens}) == 3
    assert CorrelationToken.decode(tokens["answer"], SECRET, kind="answer") == _token()
    assert CorrelationToken.decode(tokens["answer"], SECRET, kind="gather") == _token()
    # One token per URL, each opening its own route only (finding 5).
    for kind, token in tokens.items():
        assert CorrelationToken.decode(token, SECRET, kind=kind) == _token()
        for other in {"answer", "hangup", "ring"} - {kind}:
            with pytest.raises(InvalidCorrelationTokenError, match="not issued"):
                CorrelationToken.decode(token, SECRET, kind=other)
    # Valid while Vobiz may still call them: queue, ring timeout, time limit, retries; then expired.
    lifetime = token_lifetime(ring_timeout=None, time_limit=None)
    assert planned.expires_at is not None and planned.expires_at - time.time() == pytest.approx(
        lifetime, abs=60
    )
    with pytest.raises(InvalidCorrelationTokenError, match="expired"):
        CorrelationToken.decode(tokens["hangup"], SECRET, kind="hangup", now=planned.expires_at)
    assert "Hello" not in request.answer_url
    assert planned.receiver_hears_hangup and planned.routed == ("hangup", "ring")
    # The user's own hangup URL stays theirs: the receiver never hears the hangup.
    assert kept.request.hangup_url == own
    assert kept.routed == ("ring", "machine-detection") and not kept.receiver_hears_hangup


def test_callback_urls_never_outlive_the_memory_of_signature_nonces(placer: CallPlacer) -> None:
    """A signature never expires: its nonce is remembered as long as its URL works (Vobiz retries too)."""
    longest = token_lifetime(ring_timeout=None, time_limit=10**9)  # time limit capped at Vobiz's 24 h
    assert longest == 3600 + 120 + 86400 + 3600 < MIN_NONCE_WINDOW <= VobizSettings().nonce_window
    planned = placer.plan(_request(time_limit=10**9), correlation=_token(), callback_base_url=BASE)
    assert planned.expires_at is not None and planned.expires_at - time.time() < MIN_NONCE_WINDOW
    # Only a ring timeout of days could go further: refused before anything is issued or dialled.
    with pytest.raises(VobizValidationError, match="longer than \\[vobiz\\] nonce_window"):
        placer.plan(_request(ring_timeout=7 * 86400), correlation=_token(), callback_base_url=BASE)


def test_place_stores_the_answer_first_then_dials_then_records_the_fired_call(
    placer: CallPlacer, ledger: CallLedger, vobiz_emulator: EmulatorHandle
) -> None:
    spec = AnswerSpec.build(message="Your appointment is tomorrow.")
    planned = placer.plan(_request(), correlation=_token(), callback_base_url=BASE, spec=spec)

    placed = placer.place(planned)

    [post] = [r for r in vobiz_emulator.requests if r.method == "POST"]
    assert post.body["answer_url"] == planned.request.answer_url
    entry = ledger.load_answer_entry(_token())
    assert entry is not None and entry.spec == spec and entry.callback_base_url == BASE
    [fired] = ledger.lookup(request_uuids=placed.request_uuids)
    assert (fired.to, fired.source, fired.task_id, fired.try_number) == ("+14155550101", "fired", "call", 1)
    with ledger.engine.connect() as conn:
        [placement] = conn.execute(sa.select(placements)).mappings().all()
    # Opened before dialling, registered once Vobiz accepted: the receiver binds callbacks to this try.
    assert (placement["ti_key"], placement["try_number"], placement["destinations"]) == (
        _token().ti_key,
        1,
        1,
    )
    assert placement["opened_at"] <= placement["registered_at"]
    assert placement["expires_at"].timestamp() == pytest.approx(planned.expires_at, abs=1)


def test_a_ledger_that_cannot_open_the_placement_places_no_call(
    placer: CallPlacer, ledger: CallLedger, vobiz_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ledger, "open_placement", broken)
    planned = placer.plan(_request(), correlation=_token(), callback_base_url=BASE)  # hangup and ring only
    assert planned.routed == ("hangup", "ring")
    with pytest.raises(
        VobizError,
        match="the receiver would refuse its callbacks and a retry could not find it; no call was placed",
    ):
        placer.place(planned)
    assert vobiz_emulator.requests == []


def test_nothing_goes_to_the_receiver_without_a_token_or_a_base_url(
    placer: CallPlacer, ledger: CallLedger
) -> None:
    placed = placer.place(
        placer.plan(
            _request(answer_url="https://example.com/a.xml"),
            correlation=None,
            callback_base_url=None,
            register=False,
        )
    )
    request = placed.placement.request
    assert (request.hangup_url, request.ring_url) == (None, None)
    assert ledger.lookup(request_uuids=placed.request_uuids) == []
    with pytest.raises(VobizValidationError, match="needs the callback receiver"):
        placer.plan(
            _request(), correlation=_token(), callback_base_url=None, spec=AnswerSpec.build(message="x")
        )


def test_a_bad_base_url_is_refused_before_anything_is_stored_or_sent(
    placer: CallPlacer, ledger: CallLedger, vobiz_emulator: EmulatorHandle
) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        placer.plan(
            _request(), correlation=_token(), callback_base_url="hooks", spec=AnswerSpec.build(message="x")
        )
    assert ledger.load_answer_entry(_token()) is None
    assert vobiz_emulator.requests == []


def test_an_unwritable_ledger_places_no_call(
    placer: CallPlacer, ledger: CallLedger, vobiz_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ledger, "save_answer", broken)
    planned = placer.plan(
        _request(), correlation=_token(), callback_base_url=BASE, spec=AnswerSpec.build(message="x")
    )
    with pytest.raises(
        VobizError, match=r"could not record the call in the Vobiz call ledger before dialling \(OSError\)"
    ):
        placer.place(planned)
    assert vobiz_emulator.requests == []


def test_require_receiver_names_the_connection_and_the_settings(placer: CallPlacer) -> None:
    assert placer.require_receiver(BASE, what="Task 'x'") == BASE
    with pytest.raises(VobizValidationError) as err:
        placer.require_receiver(None, what="Task 'x'", instead="pass your own answer_url")
    message = str(err.value)
    assert message.startswith("Task 'x': message and gather are served to Vobiz by the callback receiver")
    assert "'vobiz_default'" in message and "AIRFLOW__VOBIZ__CALLBACK_BASE_URL" in message
    assert message.endswith("(or pass your own answer_url); no call was placed")


async def test_aplace_is_the_same_placement_on_the_event_loop(
    placer: CallPlacer, ledger: CallLedger, vobiz_emulator: EmulatorHandle
) -> None:
    spec = AnswerSpec.build(message="Async hello")
    base = await placer.acallback_base_url()
    assert base is None  # neither the connection nor [vobiz] name a receiver here
    planned = placer.plan(_request(), correlation=_token(2), callback_base_url=BASE, spec=spec)
    placed = await placer.aplace(planned)
    entry = ledger.load_answer_entry(_token(2))
    assert entry is not None and entry.spec == spec
    assert [record.try_number for record in ledger.lookup(request_uuids=placed.request_uuids)] == [2]
    await placer.hook.aclose()
