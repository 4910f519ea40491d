"""Fault suite: the callback store goes away for a while, then comes back (issue 9, "store outage").

On each store kind a real receiver (``vobiz-callbacks serve`` on loopback, Vobiz's 3-second budget and all)
takes distinct signed hangup callbacks from several senders that keep sending throughout, while real
:class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger` instances wait in this test's event loop,
through the shared poller, for two calls whose hangups arrive during the outage: one trigger waits from
before the outage, the other starts in the middle of it (as after a triggerer restart). The outage:

* **PostgreSQL**: a private server of the test's own (``initdb`` into a temporary directory, a free port;
  the shared server is never touched) is killed - SIGKILL to the postmaster and every backend - and
  started again (crash recovery) after the outage;
* **SQLite**: another process holds the store's write lock (``BEGIN EXCLUSIVE``) for the same span.

What must hold: during the outage every callback is answered 503 with ``Retry-After`` within 3 s; each
waiting trigger keeps waiting, logs one warning for the outage and one line when the store is back (on
SQLite, where readers are not blocked by a writer in WAL mode, it may see no outage at all); afterwards
every callback answered 200 is stored, every one answered 503 is stored once re-sent (as Vobiz re-sends),
nothing twice, and each trigger fires with its call's outcome. Each store records one row of figures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from _figures import Figures, record, size
from _ledger_helpers import TEST_SECRET
from _private_postgres import private_postgres
from _receiver_server import serve_subprocess
from _vobiz_senders import Callback, Delivery, Senders, hangup_fields, place_calls
from _waiting import async_wait_until

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import get_ledger
from vobiz_provider.ledger.schema import events
from vobiz_provider.triggers.hangup import VobizCallHangupTrigger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from vobiz_provider.ledger import CallLedger

#: Seconds the store stays away: 30 under ``./scripts/faults``, shorter in CI.
OUTAGE_SECONDS = size(ci=8, full=30)
#: Concurrent senders, each with its own task try.
SENDERS = size(ci=6, full=16)
#: Seconds between two new callbacks of one sender.
PACE = 0.25
#: Seconds of sending before the outage and after the store is back.
CALM_SECONDS = 2.0
#: Vobiz waits this long for an answer.
VOBIZ_BUDGET = 3.0
#: A 503 to a request that began this long after the store was back is no longer the outage's: one
#: ``Retry-After`` (5 s), the time the receiver asks Vobiz to give it.
RECOVERY_GRACE = 5.0
#: The trigger's poll interval: many polls during the outage, so a warning per poll would show.
POLL_INTERVAL = 0.5

AUTH_TOKEN = "outage-test-auth-token"
PUBLIC_BASE = "https://hooks.example.com/vobiz"
#: What the receiver says with a 503 when the store is down or stays locked (anything else is a bug).
OUTAGE_REASONS = ("callback store unavailable", "callback not stored within")
WARNING = "callback store cannot be read"
RECOVERED = "callback store can be read again"

pytestmark = pytest.mark.timeout(600)


# -- the two outages -----------------------------------------------------------------------------------------


class SqliteLocker:
    """Another process that holds the SQLite store's write lock (``BEGIN EXCLUSIVE``) until released."""

    SCRIPT = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "conn.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
        "conn.execute('ROLLBACK')\n"
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self._process: subprocess.Popen[str] | None = None

    def begin(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        assert line.strip() == "locked", f"the locking process did not lock the store: {line!r}"

    def end(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()  # the process rolls back and exits
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def outage_store(store_kind: str, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """The store URL and an object with ``begin()``/``end()`` that take the store away and bring it back."""
    if store_kind == "postgresql":
        with private_postgres() as server:
            yield server.url, SimpleNamespace(begin=server.kill, end=server.start)
        return
    path = tmp_path / "outage-callbacks.db"
    locker = SqliteLocker(str(path))
    try:
        yield f"sqlite:///{path}", locker
    finally:
        locker.end()


# -- helpers -------------------------------------------------------------------------------------------------


def receiver_env(store_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__VOBIZ__")}
    env.update(
        {
            "AIRFLOW__VOBIZ__CALLBACK_SECRET": TEST_SECRET,
            "AIRFLOW__VOBIZ__CALLBACK_STORE": store_url,
            "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": PUBLIC_BASE,
            "AIRFLOW__VOBIZ__REQUIRE_SIGNATURES": "true",
            "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(
                {"conn_type": "vobiz", "login": "MA_OUTAGE1", "password": AUTH_TOKEN}
            ),
        }
    )
    return env


def stored_counts(ledger: CallLedger, call_uuids: list[str]) -> dict[str, int]:
    """Stored hangup events per call UUID."""
    counts: dict[str, int] = {}
    with ledger.engine.connect() as conn:
        for start in range(0, len(call_uuids), 500):
            chunk = call_uuids[start : start + 500]
            query = (
                sa.select(events.c.call_uuid, sa.func.count())
                .where(events.c.call_uuid.in_(chunk))
                .group_by(events.c.call_uuid)
            )
            counts.update({call_uuid: count for call_uuid, count in conn.execute(query)})
    return counts


def deliver_until_acknowledged(delivery: Delivery, callback: Callback, *, give_up_at: float) -> None:
    """Send one callback and re-send it after each ``Retry-After`` until it is answered 200."""
    import httpx

    with httpx.Client(timeout=15) as client:
        while time.monotonic() < give_up_at:
            if delivery.post(client, callback).status == 200:
                return
            assert callback.retry_at is not None
            time.sleep(max(callback.retry_at - time.monotonic(), 0.0))


async def first_event(trigger: VobizCallHangupTrigger) -> dict[str, Any]:
    events_ = trigger.run()
    try:
        event = await anext(events_)
    finally:
        await events_.aclose()
    return event.payload


@dataclass
class Watched:
    """A call a task waits for: its placed call, its hangup callback, and the trigger waiting for it."""

    request_uuid: str
    destination: str
    callback: Callback
    cause_code: int
    waiting: asyncio.Task[dict[str, Any]] | None = None
    fired_at: float | None = None

    @classmethod
    def place(cls, ledger: CallLedger, task_id: str, status: str) -> Watched:
        correlation = CorrelationToken(dag_id="outage", run_id="r", task_id=task_id)
        [(call_uuid, request_uuid, destination)] = place_calls(ledger, correlation, 1)
        fields = hangup_fields(call_uuid=call_uuid, request_uuid=request_uuid, to=destination, status=status)
        return cls(
            request_uuid=request_uuid,
            destination=destination,
            callback=Callback(call_uuid=call_uuid, fields=fields, correlation=correlation),
            cause_code=int(fields["HangupCauseCode"]),
        )

    def start_waiting(self, stack: ExitStack, *, deadline: float) -> None:
        """Run the real trigger in this event loop, as the triggerer does."""
        trigger = VobizCallHangupTrigger(
            request_uuids=[self.request_uuid],
            destinations=[self.destination],
            deadline=deadline,
            poll_interval=POLL_INTERVAL,
        )
        self.waiting = asyncio.create_task(first_event(trigger))
        self.waiting.add_done_callback(self._fired)
        stack.callback(self.waiting.cancel)  # a failure must not leave it pending on a closed loop

    def _fired(self, _: object) -> None:
        self.fired_at = time.monotonic()

    def check(self, payload: dict[str, Any]) -> None:
        """The trigger ended with the call's hangup and outcome."""
        assert payload["status"] == "hangup", payload
        [call] = payload["calls"]
        fields = self.callback.fields
        expected = (self.callback.call_uuid, fields["CallStatus"], self.cause_code)
        assert (call["call_uuid"], call["status"], call["hangup_cause_code"]) == expected, call


# -- the scenario --------------------------------------------------------------------------------------------


async def test_store_outage(
    store_kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    began = time.monotonic()
    with ExitStack() as stack:
        store_url, fault = stack.enter_context(outage_store(store_kind, tmp_path))
        monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", store_url)
        monkeypatch.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "true")
        ledger = get_ledger(store_url)
        stack.callback(ledger.dispose)
        await asyncio.to_thread(ledger.upgrade)

        # The operator placed the calls before any of this: each sender's try, and the watched call.
        pool_size = int((CALM_SECONDS * 2 + OUTAGE_SECONDS + 10) / PACE) + 10
        pools = []
        for index in range(SENDERS):
            correlation = CorrelationToken(dag_id="outage", run_id="r", task_id=f"sender_{index}")
            pools.append((correlation, await asyncio.to_thread(place_calls, ledger, correlation, pool_size)))
        # The call a task waits for from before the outage, and one whose trigger starts during it (as after
        # a triggerer restart): both hang up mid-outage.
        early = await asyncio.to_thread(Watched.place, ledger, "watched_early", "busy")
        late = await asyncio.to_thread(Watched.place, ledger, "watched_late", "completed")

        served = stack.enter_context(serve_subprocess(receiver_env(store_url), "--log-level", "warning"))
        delivery = Delivery(
            local_base=f"{served.origin}/vobiz",
            public_base=PUBLIC_BASE,
            callback_secret=TEST_SECRET,
            auth_token=AUTH_TOKEN,
        )
        early.start_waiting(stack, deadline=time.time() + OUTAGE_SECONDS + 300)

        senders = Senders(delivery=delivery, pools=pools, pace=PACE)
        senders.start()
        stack.callback(senders.give_up.set)
        await async_wait_until(
            lambda: senders.acknowledged() >= SENDERS * 2 or senders.errors,
            timeout=60,
            what="callbacks stored",
        )
        # Sending as usual for a while (here the passing of time is the scenario, not a guess).
        await asyncio.sleep(CALM_SECONDS)

        # The outage.
        fault_at = time.monotonic()
        await asyncio.to_thread(fault.begin)
        hangup_threads = []
        try:
            await asyncio.sleep(OUTAGE_SECONDS / 2)
            late.start_waiting(stack, deadline=time.time() + OUTAGE_SECONDS + 300)
            # Both calls hang up mid-outage: Vobiz sends their hangups, gets 503, re-sends them.
            for watched in (early, late):
                thread = threading.Thread(
                    target=deliver_until_acknowledged,
                    args=(delivery, watched.callback),
                    kwargs={"give_up_at": time.monotonic() + OUTAGE_SECONDS + 120},
                    daemon=True,
                )
                thread.start()
                hangup_threads.append(thread)
            await asyncio.sleep(OUTAGE_SECONDS / 2)
            for watched in (early, late):
                assert not watched.waiting.done(), f"a trigger stopped waiting: {watched.waiting.result()}"
        finally:
            await asyncio.to_thread(fault.end)
        restored_at = time.monotonic()

        await asyncio.sleep(CALM_SECONDS)  # and as usual again once the store is back
        senders.stop_generating()
        all_delivered = await asyncio.to_thread(senders.join, 120)
        for thread in hangup_threads:
            await asyncio.to_thread(thread.join, 120)
        payloads = [await asyncio.wait_for(watched.waiting, timeout=120) for watched in (early, late)]

        sent = senders.all()
        every = [*sent, early.callback, late.callback]
        counts = await asyncio.to_thread(stored_counts, ledger, [cb.call_uuid for cb in every])
    elapsed = time.monotonic() - began

    # -- the figures ----------------------------------------------------------------------------------------
    attempts = [attempt for callback in every for attempt in callback.attempts]

    def from_outage(attempt: Any) -> bool:
        return (
            attempt.status == 503
            and attempt.retry_after is not None
            and any(reason in attempt.detail for reason in OUTAGE_REASONS)
            and attempt.started + attempt.elapsed >= fault_at
            and attempt.started < restored_at + RECOVERY_GRACE
        )

    expected_5xx = sum(1 for attempt in attempts if from_outage(attempt))
    unexpected_5xx = sum(
        1
        for attempt in attempts
        if attempt.status is not None and attempt.status >= 500 and not from_outage(attempt)
    )
    unanswered = sum(1 for attempt in attempts if attempt.status is None)
    answered_in_outage = [a.elapsed for a in attempts if fault_at <= a.started < restored_at]
    slowest_before = max((a.elapsed for a in attempts if a.started < fault_at), default=0.0)
    slowest = max(attempt.elapsed for attempt in attempts)
    acknowledged = [cb for cb in every if cb.acknowledged]
    refused_then_stored = [
        cb for cb in every if any(a.status == 503 for a in cb.attempts) and counts.get(cb.call_uuid)
    ]
    lost = sum(1 for cb in every if not counts.get(cb.call_uuid))
    duplicated = sum(count - 1 for count in counts.values() if count > 1)
    output = capsys.readouterr().out + caplog.text
    fired_after = ", ".join(
        f"{watched.fired_at - restored_at:.1f}" for watched in (early, late) if watched.fired_at is not None
    )
    warnings = output.count(WARNING)
    recoveries = output.count(RECOVERED)
    figures = record(
        Figures(
            scenario="store outage",
            store=store_kind,
            sent=len(every),
            acknowledged=len(acknowledged),
            stored=sum(1 for cb in every if counts.get(cb.call_uuid)),
            lost=lost,
            duplicated=duplicated,
            expected_5xx=expected_5xx,
            unexpected_5xx=unexpected_5xx,
            slowest_answer_s=round(slowest, 3),
            note=(
                f"{'kill -9 of PostgreSQL' if store_kind == 'postgresql' else 'write lock held'} for "
                f"{restored_at - fault_at:.1f} s; {SENDERS} senders, {len(attempts)} requests, "
                f"slowest answer {max(answered_in_outage, default=0.0):.3f} s during the outage, "
                f"{slowest_before:.3f} s before it; "
                f"{len(refused_then_stored)} callbacks answered 503 then stored on a re-send; "
                f"2 triggers (one started mid-outage): {warnings} warnings, {recoveries} recovery lines, "
                f"fired {fired_after} s after recovery; {elapsed:.0f} s in all"
            ),
        )
    )

    assert not senders.errors, senders.errors
    assert all_delivered, "some callbacks were never acknowledged after the store came back"
    assert unanswered == 0, f"{unanswered} requests got no answer"
    other = {(a.status, a.detail) for a in attempts if a.status != 200 and not from_outage(a)}
    assert not other, f"answers other than 200 and the outage's 503: {other}"
    assert figures.clean, figures
    assert figures.duplicated == 0, figures
    assert len(acknowledged) == len(every), figures
    slow = sorted(attempts, key=lambda a: a.elapsed)[-5:]
    assert slowest < VOBIZ_BUDGET, (
        f"slowest answer {slowest:.3f} s (Vobiz waits {VOBIZ_BUDGET:g} s); the slowest five "
        "(seconds after the outage began, answer time, status): "
        f"{[(round(a.started - fault_at, 1), round(a.elapsed, 3), a.status) for a in slow]}"
    )
    # The outage was real: callbacks sent during it were answered 503, then stored once re-sent.
    assert answered_in_outage, "nothing was sent during the outage"
    assert expected_5xx > 0 and refused_then_stored, figures
    for watched, payload in zip((early, late), payloads, strict=True):
        assert any(a.status == 503 for a in watched.callback.attempts), watched.callback.attempts
        # The trigger waited through the outage (asserted above) and fired with the call's outcome.
        watched.check(payload)
    # One warning per waiting trigger for the whole outage (not one per poll), and one line when it ends.
    if store_kind == "postgresql":
        assert (warnings, recoveries) == (2, 2), output[-4000:]
    else:  # WAL: readers are not blocked by the writer holding the lock
        assert warnings == recoveries <= 2, output[-4000:]
