"""Receiver kill -9 (issue 9): ``vobiz-callbacks serve`` SIGKILLed at random moments under 64 senders.

At least 64 threads send distinct, validly signed callbacks (ring, answer and hangup of calls their tries
placed) as fast as the receiver answers. Meanwhile the receiver's process group is killed with SIGKILL at
random moments, several times, and restarted each time on the same port and store. Each sender records
which callbacks were answered 200; a callback whose request failed (connection refused or cut, or any
other answer) is re-sent afterwards, as Vobiz retries it, with a new nonce. Then:

* every callback answered 200 is in the store (nothing acknowledged is lost with the process);
* every callback not answered is stored once re-sent (the re-send is answered 200, "duplicate" when the
  first try was committed before the kill cut its answer);
* no callback is stored twice.

The seed of the kill moments is printed (``VOBIZ_FAULTS_SEED`` replays it).
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa
from _figures import Figures, record, size
from _receiver_process import ReceiverProcess, signed_post
from _waiting import wait_until

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import events

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: Callbacks sent (three per call), SIGKILLs of the receiver, concurrent senders.
CALLBACKS = size(ci=300, full=4_500)
KILLS = size(ci=2, full=6)
SENDERS = 64
KINDS = ("ring", "answer", "hangup")
CALLS_PER_TRY = 50


@dataclass(frozen=True)
class Callback:
    """One distinct callback: the ``kind`` callback of a placed call."""

    index: int
    kind: str
    correlation: CorrelationToken
    call_uuid: str
    request_uuid: str
    destination: str

    def fields(self) -> dict[str, str]:
        fields = {
            "CallUUID": self.call_uuid,
            "RequestUUID": self.request_uuid,
            "ALegRequestUUID": self.request_uuid,
            "From": "+911171366900",
            "To": self.destination,
            "Direction": "outbound",
            "SessionStart": "2026-12-02 21:22:36.000000 UTC",
        }
        if self.kind == "ring":
            fields.update(Event="Ring", CallStatus="ringing")
        elif self.kind == "answer":
            fields.update(Event="StartApp", CallStatus="in-progress", ALegUUID=self.call_uuid)
        else:
            fields.update(
                Event="Hangup",
                CallStatus="completed",
                HangupCause="NORMAL_CLEARING",
                HangupCauseCode="4000",
                Duration="12",
                BillDuration="60",
                StartTime="2026-12-02 21:22:36",
                AnswerTime="2026-12-02 21:22:41",
                EndTime="2026-12-02 21:22:53",
            )
        return fields


@dataclass
class Run:
    """What the senders and the killer saw (shared between threads, under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    up: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    acknowledged: set[int] = field(default_factory=set)
    unanswered: set[int] = field(default_factory=set)
    statuses: dict[str, int] = field(default_factory=dict)
    unexpected_5xx: int = 0
    slowest: float = 0.0
    kill_moments: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def outcome(self, callback: Callback, status: int | None, what: str, elapsed: float | None) -> None:
        with self.lock:
            self.done += 1
            self.statuses[what] = self.statuses.get(what, 0) + 1
            if elapsed is not None:
                self.slowest = max(self.slowest, elapsed)
            if status is not None and status >= 500:
                self.unexpected_5xx += 1
            (self.acknowledged if status == 200 else self.unanswered).add(callback.index)


def place_calls(store_url: str, count: int) -> list[Callback]:
    """Record ``count`` calls, CALLS_PER_TRY per try, as the operator does; three callbacks for each."""
    ledger = CallLedger(store_url)
    callbacks: list[Callback] = []
    try:
        for first in range(0, count, CALLS_PER_TRY):
            correlation = CorrelationToken(
                dag_id="kill", run_id="run", task_id=f"call_{first // CALLS_PER_TRY}", try_number=1
            )
            calls = [
                (str(uuid.uuid4()), str(uuid.uuid4()), f"+9197{n:08d}")
                for n in range(first, min(count, first + CALLS_PER_TRY))
            ]
            ledger.register_fired_calls(
                request_uuids=[request for request, _, _ in calls],
                destinations=[destination for _, _, destination in calls],
                correlation=correlation,
            )
            for request_uuid, call_uuid, destination in calls:
                for kind in KINDS:
                    callbacks.append(
                        Callback(len(callbacks), kind, correlation, call_uuid, request_uuid, destination)
                    )
        return callbacks
    finally:
        ledger.dispose()


def send_once(client: httpx.Client, receiver: ReceiverProcess, callback: Callback) -> tuple[int | None, str]:
    """POST ``callback`` signed with a fresh nonce: its status, or ``None`` and why when no answer came.

    The reason of a 200 says whether the callback was new (``stored``) or stored before (``duplicate``:
    committed before a kill cut its answer), or that it was answered with XML (``answer``).
    """
    try:
        response = signed_post(client, receiver, callback.kind, callback.correlation, callback.fields())
    except httpx.TransportError as err:
        return None, type(err).__name__
    what = str(response.status_code)
    if response.status_code >= 500:  # say why: the reason is part of the figures
        what += f" {response.text[:100]!r}"
    if response.status_code == 200:
        is_json = response.headers.get("content-type", "").startswith("application/json")
        what += f" {response.json()['status']}" if is_json else " xml"
    return response.status_code, what


def stored_counts(store_url: str) -> dict[tuple[str, str], int]:
    """Event rows per ``(call_uuid, kind)``."""
    ledger = CallLedger(store_url)
    try:
        ledger.upgrade()
        query = sa.select(events.c.call_uuid, events.c.kind, sa.func.count()).group_by(
            events.c.call_uuid, events.c.kind
        )
        with ledger.engine.connect() as conn:
            return {(call_uuid, kind): n for call_uuid, kind, n in conn.execute(query)}
    finally:
        ledger.dispose()


@pytest.fixture
def killed_receiver(fault_store_url: str, tmp_path: Path) -> Iterator[ReceiverProcess]:
    with ReceiverProcess(store_url=fault_store_url, log=tmp_path / "receiver.log") as receiver:
        yield receiver


def test_receiver_kill(store_kind: str, fault_store_url: str, killed_receiver: ReceiverProcess) -> None:
    receiver = killed_receiver
    seed = int(os.environ.get("VOBIZ_FAULTS_SEED") or time.time_ns() % 1_000_000)
    print(
        f"receiver kill -9 on {store_kind}: seed {seed} (VOBIZ_FAULTS_SEED={seed} replays the kill moments)"
    )
    rng = random.Random(seed)
    callbacks = place_calls(fault_store_url, CALLBACKS // len(KINDS))
    rng.shuffle(callbacks)
    work: queue.Queue[Callback] = queue.Queue()
    for callback in callbacks:
        work.put(callback)
    run = Run()
    run.up.set()
    # Kill moments: after a random number of answers, then a random fraction of a second more.
    total = len(callbacks)
    thresholds = sorted(rng.sample(range(total // 10, total * 9 // 10), KILLS))
    started = time.monotonic()

    def sender() -> None:
        with httpx.Client(timeout=15, limits=httpx.Limits(max_keepalive_connections=1)) as client:
            while True:
                try:
                    callback = work.get_nowait()
                except queue.Empty:
                    return
                begun = time.perf_counter()
                status, what = send_once(client, receiver, callback)
                run.outcome(callback, status, what, time.perf_counter() - begun if status else None)
                if status is None:
                    run.up.wait(120)  # the receiver is down: wait for it, as Vobiz waits to retry

    def killer() -> None:
        try:
            for threshold in thresholds:
                wait_until(lambda t=threshold: run.done >= t, timeout=300, interval=0.002)
                time.sleep(rng.uniform(0, 0.05))
                run.up.clear()
                with run.lock:
                    run.kill_moments.append(run.done)
                receiver.kill9()
                receiver.start()
                run.up.set()
        except BaseException as err:  # reported by the test, never left hanging
            run.errors.append(repr(err))
            run.up.set()

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(SENDERS)]
    killing = threading.Thread(target=killer, daemon=True)
    killing.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    killing.join(600)
    sending = time.monotonic() - started
    assert not any(thread.is_alive() for thread in [*threads, killing]), "senders or killer stuck"
    assert not run.errors, run.errors
    assert len(run.kill_moments) == KILLS

    # Vobiz's retries: every callback not answered 200 is sent again (new nonce) until it is answered.
    if not receiver.alive:
        receiver.start()
    by_index = {callback.index: callback for callback in callbacks}
    resent: dict[int, int] = {}
    resend_statuses: dict[str, int] = {}
    with httpx.Client(timeout=15) as client:
        for index in sorted(run.unanswered):
            for _attempt in range(3):
                begun = time.perf_counter()
                status, what = send_once(client, receiver, by_index[index])
                resend_statuses[what] = resend_statuses.get(what, 0) + 1
                if status is not None:
                    run.slowest = max(run.slowest, time.perf_counter() - begun)
                    if status >= 500:
                        run.unexpected_5xx += 1
                if status == 200:
                    resent[index] = status
                    break
    assert receiver.alive

    counts = stored_counts(fault_store_url)
    stored = {callback.index for callback in callbacks if counts.get((callback.call_uuid, callback.kind))}
    lost_acknowledged = run.acknowledged - stored
    lost_unanswered = run.unanswered - stored
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    figures = record(
        Figures(
            scenario="receiver kill -9",
            store=store_kind,
            sent=total,
            acknowledged=len(run.acknowledged),
            stored=len(stored),
            lost=len(lost_acknowledged) + len(lost_unanswered),
            duplicated=duplicated,
            unexpected_5xx=run.unexpected_5xx,
            slowest_answer_s=run.slowest,
            note=(
                f"{KILLS} kills at answers {run.kill_moments}, {SENDERS} senders, {sending:.0f} s; "
                f"{len(run.unanswered)} unanswered re-sent: "
                + " ".join(f"{what}:{n}" for what, n in sorted(resend_statuses.items()))
                + "; first sends: "
                + " ".join(f"{what}:{n}" for what, n in sorted(run.statuses.items()))
            ),
        )
    )
    assert not lost_acknowledged, f"{len(lost_acknowledged)} callbacks answered 200 are not in the store"
    assert not lost_unanswered, f"{len(lost_unanswered)} re-sent callbacks are not in the store"
    assert set(resent) == run.unanswered, "some re-sent callbacks were never answered 200"
    assert duplicated == 0
    assert len(counts) == total == len(stored)
    assert figures.clean
