"""Fault suite: the callback store goes away for a while, then comes back (issue 9, "store outage").

On each store kind a real receiver (``vobiz-callbacks serve`` on loopback, Vobiz's 3-second budget and all)
takes distinct signed hangup callbacks from several senders that keep sending throughout, while a real
:class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger` waits in this test's event loop, through
the shared poller, for a call whose hangup arrives during the outage:

* **PostgreSQL**: a private server of the test's own (``initdb`` into a temporary directory, a free port;
  the shared server is never touched) is killed - SIGKILL to the postmaster and every backend - and
  started again (crash recovery) after the outage;
* **SQLite**: another process holds the store's write lock (``BEGIN EXCLUSIVE``) for the same span.

What must hold: during the outage every callback is answered 503 with ``Retry-After`` within 3 s; the
waiting trigger keeps waiting, logs one warning for the outage and one line when the store is back (on
SQLite, where readers are not blocked by a writer in WAL mode, it may see no outage at all); afterwards
every callback answered 200 is stored, every one answered 503 is stored once re-sent (as Vobiz re-sends),
nothing twice, and the trigger fires with the call's outcome. Each store records one row of figures.
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
#: A 503 to a request that began this long after the store was back is no longer the outage's.
RECOVERY_GRACE = 3.0
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
        watched_try = CorrelationToken(dag_id="outage", run_id="r", task_id="watched")
        [(watched_call, watched_request, watched_to)] = await asyncio.to_thread(
            place_calls, ledger, watched_try, 1
        )
        watched = Callback(
            call_uuid=watched_call,
            fields=hangup_fields(
                call_uuid=watched_call, request_uuid=watched_request, to=watched_to, status="busy"
            ),
            correlation=watched_try,
        )

        served = stack.enter_context(serve_subprocess(receiver_env(store_url), "--log-level", "warning"))
        delivery = Delivery(
            local_base=f"{served.origin}/vobiz",
            public_base=PUBLIC_BASE,
            callback_secret=TEST_SECRET,
            auth_token=AUTH_TOKEN,
        )
        trigger = VobizCallHangupTrigger(
            request_uuids=[watched_request],
            destinations=[watched_to],
            deadline=time.time() + OUTAGE_SECONDS + 300,
            poll_interval=POLL_INTERVAL,
        )
        waiting = asyncio.create_task(first_event(trigger))
        stack.callback(waiting.cancel)  # a failure below must not leave it pending on a closed loop
        fired: list[float] = []
        waiting.add_done_callback(lambda _: fired.append(time.monotonic()))

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
        hangup_thread = None
        try:
            await asyncio.sleep(OUTAGE_SECONDS / 2)
            # The watched call hangs up mid-outage: Vobiz sends its hangup, gets 503, re-sends it.
            hangup_thread = threading.Thread(
                target=deliver_until_acknowledged,
                args=(delivery, watched),
                kwargs={"give_up_at": time.monotonic() + OUTAGE_SECONDS + 120},
                daemon=True,
            )
            hangup_thread.start()
            await asyncio.sleep(OUTAGE_SECONDS / 2)
            assert not waiting.done(), f"the trigger stopped waiting during the outage: {waiting.result()}"
        finally:
            await asyncio.to_thread(fault.end)
        restored_at = time.monotonic()

        await asyncio.sleep(CALM_SECONDS)  # and as usual again once the store is back
        senders.stop_generating()
        all_delivered = await asyncio.to_thread(senders.join, 120)
        await asyncio.to_thread(hangup_thread.join, 120)
        payload = await asyncio.wait_for(waiting, timeout=120)

        sent = senders.all()
        counts = await asyncio.to_thread(stored_counts, ledger, [cb.call_uuid for cb in [*sent, watched]])
    elapsed = time.monotonic() - began

    # -- the figures ----------------------------------------------------------------------------------------
    every = [*sent, watched]
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
    slowest = max(attempt.elapsed for attempt in attempts)
    acknowledged = [cb for cb in every if cb.acknowledged]
    refused_then_stored = [
        cb for cb in every if any(a.status == 503 for a in cb.attempts) and counts.get(cb.call_uuid)
    ]
    lost = sum(1 for cb in every if not counts.get(cb.call_uuid))
    duplicated = sum(count - 1 for count in counts.values() if count > 1)
    output = capsys.readouterr().out + caplog.text
    [fired_at] = fired
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
                f"{len(refused_then_stored)} callbacks answered 503 then stored on a re-send; "
                f"trigger: {warnings} warning, {recoveries} recovery line, fired "
                f"{fired_at - restored_at:.1f} s after recovery; {elapsed:.0f} s in all"
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
    assert slowest < VOBIZ_BUDGET, f"slowest answer {slowest:.3f} s (Vobiz waits {VOBIZ_BUDGET:g} s)"
    # The outage was real: callbacks sent during it were answered 503, then stored once re-sent.
    assert answered_in_outage, "nothing was sent during the outage"
    assert expected_5xx > 0 and refused_then_stored, figures
    assert any(a.status == 503 for a in watched.attempts), watched.attempts

    # The trigger waited through the outage and fired with the call's outcome once its hangup was stored.
    assert payload["status"] == "hangup", payload
    assert fired_at > restored_at
    [call] = payload["calls"]
    assert (call["call_uuid"], call["status"], call["hangup_cause_code"]) == (watched_call, "busy", 3010), (
        call
    )
    if store_kind == "postgresql":
        assert (warnings, recoveries) == (1, 1), output[-4000:]
    else:  # WAL: readers are not blocked by the writer holding the lock
        assert warnings == recoveries <= 1, output[-4000:]
