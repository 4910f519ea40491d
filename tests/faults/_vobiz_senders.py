"""Senders that behave as Vobiz does towards a receiver: distinct signed callbacks, a 503 re-sent later.

Each :class:`Sender` is a thread with its own HTTP client and its own task try (correlation token), whose
calls the test placed in the store beforehand. It sends a new hangup callback every ``pace`` seconds while
:attr:`Senders.generating` is set, and re-sends every callback answered 503 once its ``Retry-After`` has
passed, as Vobiz retries a callback that was not acknowledged, until it gets a 200 or the senders give up.
Every attempt is kept (when it started, how long the answer took, the status), so the test can tell the
503s of the outage from any other 5xx and find the slowest answer.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from _ledger_helpers import token_for

from vobiz_provider.correlation import CorrelationToken, callback_url
from vobiz_provider.signatures import signature_headers

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

#: Seconds a sender waits for an answer before counting the attempt as unanswered (Vobiz waits 3 s; a
#: longer client timeout lets the test see how late a slow answer really is).
CLIENT_TIMEOUT = 15.0


@dataclass(frozen=True)
class Attempt:
    """One request: ``status`` ``None`` when no answer came (connection error or client timeout)."""

    started: float
    elapsed: float
    status: int | None
    retry_after: str | None
    detail: str = ""


@dataclass
class Callback:
    """One distinct callback and every attempt to deliver it."""

    call_uuid: str
    fields: dict[str, str]
    correlation: CorrelationToken
    attempts: list[Attempt] = field(default_factory=list)
    retry_at: float | None = None

    @property
    def acknowledged(self) -> bool:
        return any(attempt.status == 200 for attempt in self.attempts)


def hangup_fields(*, call_uuid: str, request_uuid: str, to: str, status: str = "completed") -> dict[str, str]:
    """A hangup callback as Vobiz sends it."""
    busy = status == "busy"
    return {
        "CallUUID": call_uuid,
        "RequestUUID": request_uuid,
        "ALegUUID": call_uuid,
        "ALegRequestUUID": request_uuid,
        "From": "+911171366900",
        "To": to,
        "Direction": "outbound",
        "Event": "Hangup",
        "CallStatus": status,
        "HangupCause": "USER_BUSY" if busy else "NORMAL_CLEARING",
        "HangupCauseCode": "3010" if busy else "4000",
        "HangupCauseName": "User Busy" if busy else "Normal Hangup",
        "HangupSource": "Callee",
        "Duration": "0" if busy else "12",
        "BillDuration": "0" if busy else "60",
        "StartTime": "2026-12-03 06:30:00",
        "AnswerTime": "" if busy else "2026-12-03 06:30:05",
        "EndTime": "2026-12-03 06:30:17",
        "SessionStart": "2026-12-03 01:00:00.000000",
    }


def place_calls(ledger: CallLedger, correlation: CorrelationToken, count: int) -> list[tuple[str, str, str]]:
    """Record, as the operator does, that ``correlation``'s try placed ``count`` calls; their
    ``(call_uuid, request_uuid, destination)``."""
    calls = [(str(uuid.uuid4()), str(uuid.uuid4()), f"+9190{index:08d}") for index in range(count)]
    ledger.open_placement(correlation, destinations=count, expires_at=time.time() + 3600)
    ledger.register_fired_calls(
        request_uuids=[request for _, request, _ in calls],
        destinations=[destination for _, _, destination in calls],
        correlation=correlation,
    )
    return calls


@dataclass
class Delivery:
    """Where callbacks go: the receiver's local origin, the public base URL Vobiz signs, the secrets."""

    local_base: str
    public_base: str
    callback_secret: str
    auth_token: str

    def post(self, client: httpx.Client, callback: Callback, kind: str = "hangup") -> Attempt:
        """Send ``callback`` once, signed afresh as Vobiz signs each request, and time the answer."""
        token = token_for(callback.correlation, kind, secret=self.callback_secret)
        headers = signature_headers(callback_url(self.public_base, kind, token), self.auth_token)
        started = time.monotonic()
        try:
            response = client.post(
                callback_url(self.local_base, kind, token), data=callback.fields, headers=headers
            )
        except httpx.HTTPError:
            attempt = Attempt(
                started=started, elapsed=time.monotonic() - started, status=None, retry_after=None
            )
        else:
            attempt = Attempt(
                started=started,
                elapsed=time.monotonic() - started,
                status=response.status_code,
                retry_after=response.headers.get("Retry-After"),
                detail=response.text[:200] if response.status_code != 200 else "",
            )
        callback.attempts.append(attempt)
        if attempt.status != 200:
            callback.retry_at = time.monotonic() + _retry_delay(attempt)
        else:
            callback.retry_at = None
        return attempt


def _retry_delay(attempt: Attempt) -> float:
    try:
        return max(float(attempt.retry_after or 5), 0.5)
    except ValueError:
        return 5.0


class Senders:
    """``count`` sender threads, each with its own try and its own pool of placed calls.

    :param delivery: Where and how to send.
    :param pools: Per sender, its try and the calls it placed.
    :param pace: Seconds between two new callbacks of one sender.
    """

    def __init__(
        self,
        *,
        delivery: Delivery,
        pools: list[tuple[CorrelationToken, list[tuple[str, str, str]]]],
        pace: float,
    ) -> None:
        self.delivery = delivery
        self.pace = pace
        self.generating = threading.Event()
        self.generating.set()
        self.give_up = threading.Event()
        self.callbacks: list[list[Callback]] = [[] for _ in pools]
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._run, args=(index, correlation, calls), daemon=True)
            for index, (correlation, calls) in enumerate(pools)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def all(self) -> list[Callback]:
        return [callback for sent in self.callbacks for callback in sent]

    def acknowledged(self) -> int:
        return sum(callback.acknowledged for callback in self.all())

    def stop_generating(self) -> None:
        """Send no new callback; keep re-sending the unacknowledged ones."""
        self.generating.clear()

    def join(self, timeout: float) -> bool:
        """Wait until every sender has delivered all its callbacks; ``False`` if some still were not."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if any(thread.is_alive() for thread in self._threads):
            self.give_up.set()
            for thread in self._threads:
                thread.join(CLIENT_TIMEOUT + 5)
            return False
        return True

    def _run(self, index: int, correlation: CorrelationToken, calls: list[tuple[str, str, str]]) -> None:
        sent = self.callbacks[index]
        unplaced = iter(calls)
        next_new = time.monotonic()
        try:
            with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
                while not self.give_up.is_set():
                    now = time.monotonic()
                    due = [cb for cb in sent if cb.retry_at is not None and cb.retry_at <= now]
                    if due:
                        self.delivery.post(client, due[0])
                        continue
                    if self.generating.is_set() and now >= next_new:
                        placed = next(unplaced, None)
                        if placed is not None:
                            call_uuid, request_uuid, destination = placed
                            callback = Callback(
                                call_uuid=call_uuid,
                                fields=hangup_fields(
                                    call_uuid=call_uuid, request_uuid=request_uuid, to=destination
                                ),
                                correlation=correlation,
                            )
                            sent.append(callback)
                            next_new = now + self.pace
                            self.delivery.post(client, callback)
                            continue
                    waiting = [cb.retry_at for cb in sent if cb.retry_at is not None]
                    if not self.generating.is_set() and not waiting:
                        return
                    wake = min([*waiting, next_new if self.generating.is_set() else now + 0.05])
                    time.sleep(min(max(wake - now, 0.005), 0.05))
        except BaseException as err:  # reported by the test, never swallowed
            self.errors.append(err)
