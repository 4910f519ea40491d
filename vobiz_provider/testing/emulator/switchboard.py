"""The account state of an emulator: calls, scripts, faults, limits, billing and the log of what happened.

The ASGI app and the call lifecycles run on one event loop (the server's); the test thread reads the logs
and waits on them with the ``wait_for_*`` methods. Every read and write goes through one condition
variable, so all of it is thread-safe. The switchboard knows neither the app nor the lifecycle: it keeps
each call's :class:`CallDriver` without knowing what it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from vobiz_provider.testing.emulator.script import CallScript
from vobiz_provider.testing.emulator.settings import EmulatorSettings
from vobiz_provider.testing.emulator.state import CallbackAttempt, EmulatedCall, Fault, ReceivedRequest

_Found = TypeVar("_Found")

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from vobiz_provider.models.call import MakeCallRequest

__all__ = ["CallDriver", "Switchboard"]


class CallDriver(Protocol):
    """What runs one call (the call lifecycle), as the switchboard and the API see it."""

    #: Set once the call has ended and its callbacks were delivered (or gave up).
    done: asyncio.Event

    def hang_up(self) -> None:
        """End the call as the API's ``DELETE`` does."""

    def transfer(self, url: str, method: str) -> None:
        """Drop the running XML and run the one ``url`` returns."""


class Switchboard:
    """The state of one emulated Vobiz account.

    :param settings: The settings (default :class:`EmulatorSettings`).
    :param default_script: Script for destinations without their own (default: answered after 50 ms,
        callee hangs up after 100 ms).
    :param setting_overrides: Individual settings, e.g. ``cps=1`` (applied on top of ``settings``).
    """

    def __init__(
        self,
        *,
        settings: EmulatorSettings | None = None,
        default_script: CallScript | None = None,
        **setting_overrides: Any,
    ) -> None:
        self.settings = settings or EmulatorSettings()
        if setting_overrides:
            self.settings.update(**setting_overrides)
        self.default_script = default_script or CallScript.answered()
        self._cond = threading.Condition()
        self._scripts: dict[str, CallScript] = {}
        self._calls: dict[str, EmulatedCall] = {}
        self._drivers: dict[str, CallDriver] = {}
        self._requests: list[ReceivedRequest] = []
        self._callbacks: list[CallbackAttempt] = []
        self._faults: list[Fault] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fired: deque[float] = deque()
        self._cdr_ids = 0
        self._holding = False
        self._held: list[asyncio.Future[None]] = []

    # ================================================================== scripting

    def script(self, destination: str, script: CallScript) -> None:
        """Make calls to ``destination`` (exact match, as sent in ``to``) follow ``script``."""
        with self._cond:
            self._scripts[destination] = script

    def script_for(self, destination: str) -> CallScript:
        """The script calls to ``destination`` follow (its own, else the default script)."""
        with self._cond:
            return self._scripts.get(destination, self.default_script)

    def clear_scripts(self) -> None:
        """Forget every per-destination script (the default script stays)."""
        with self._cond:
            self._scripts.clear()

    @property
    def scripts(self) -> dict[str, CallScript]:
        """The per-destination scripts (a copy)."""
        with self._cond:
            return dict(self._scripts)

    # ================================================================== holding calls

    def hold_calls(self) -> None:
        """Keep every call that has not started ringing ``queued`` until :meth:`release_calls`.

        As when Vobiz queues calls behind the account's limits: the API accepts the request at once, the
        phone rings only later. Lets a test place many calls and choose the moment they all start.
        """
        with self._cond:
            self._holding = True

    def release_calls(self, *, per_second: float | None = None) -> None:
        """Let held calls (and calls placed from now on) go on: each rings after its script's
        ``ring_after``, counted from its release.

        :param per_second: Release the held calls in the order they were placed, this many per second, as
            Vobiz dials the calls it queued at the account's CPS; ``None`` releases them all at once.
        """
        if per_second is not None and per_second <= 0:
            raise ValueError(f"per_second must be positive, got {per_second!r}")
        with self._cond:
            self._holding = False
            held, self._held = self._held, []
        for position, waiter in enumerate(held):
            delay = position / per_second if per_second else 0.0
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                loop = waiter.get_loop()
                loop.call_soon_threadsafe(loop.call_later, delay, _wake, waiter)

    @property
    def holding(self) -> bool:
        """Whether calls are held in ``queued`` (:meth:`hold_calls`)."""
        with self._cond:
            return self._holding

    async def until_released(self) -> None:
        """Return at once, or when :meth:`release_calls` (or :meth:`reset`) is called."""
        with self._cond:
            if not self._holding:
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._held.append(waiter)
        await waiter

    def configure(self, **changes: Any) -> None:
        """Change settings (validated), e.g. ``emulator.configure(error_shape="envelope")``."""
        with self._cond:
            self.settings.update(**changes)

    def inject_fault(
        self,
        *,
        method: str | None = "POST",
        path_contains: str = "/Call/",
        status: int | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        accept: bool = False,
        count: int | None = 1,
        body: Any = None,
    ) -> Fault:
        """Make the next matching API request(s) misbehave.

        * ``status`` alone: answer with that status (an error body in the configured shape, or ``body``)
          without processing the request - e.g. ``503`` or ``429`` (with ``retry_after``).
        * ``delay``: wait that long before answering (a client with a shorter read timeout times out).
        * ``accept=True``: process the request for real first (the call IS placed), then apply ``delay``
          and/or replace the answer with ``status`` - the "outcome unknown" cases.

        :param method: HTTP method to match (``None``: any).
        :param path_contains: Substring of the path to match.
        :param status: Status to answer with.
        :param retry_after: ``Retry-After`` header to send with it.
        :param delay: Seconds to wait before answering.
        :param accept: Process the request before misbehaving.
        :param count: Number of requests affected (``None``: all until :meth:`clear_faults`).
        :param body: JSON body to send instead of the default error body.
        :return: The fault (its ``hits`` counts the requests it affected).
        """
        if status is None and delay <= 0:
            raise ValueError("inject_fault: give a status, a delay or both")
        fault = Fault(
            method=method,
            path_contains=path_contains,
            status=status,
            retry_after=retry_after,
            delay=delay,
            accept=accept,
            count=count,
            body=body,
        )
        with self._cond:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._cond:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, counted as used (``None`` when none matches)."""
        with self._cond:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def reset(self, *, settings: bool = False) -> None:
        """Forget calls, logs, scripts and faults; cancel running calls without callbacks.

        Safe to call from any thread.

        :param settings: Also restore the default settings (in place) and the default script.
        """
        with self._cond:
            if settings:
                defaults = EmulatorSettings()
                self.settings.update(**{name: getattr(defaults, name) for name in EmulatorSettings.names()})
                self.default_script = CallScript.answered()
            # Tasks of a loop that is gone (an in-process test loop) can never finish: forget them.
            self._tasks = {task for task in self._tasks if not task.get_loop().is_closed()}
            tasks = list(self._tasks)
            self._scripts.clear()
            self._calls.clear()
            self._drivers.clear()
            self._requests.clear()
            self._callbacks.clear()
            self._faults.clear()
            self._fired.clear()
            self._cond.notify_all()
        self.release_calls()
        for task in tasks:
            loop = task.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                task.cancel()
            else:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(task.cancel)

    # ================================================================== logs (thread-safe reads)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every API request received, in order (headers as received, auth token included)."""
        with self._cond:
            return list(self._requests)

    @property
    def callbacks(self) -> list[CallbackAttempt]:
        """Every request the emulator made to the application (each attempt), in order."""
        with self._cond:
            return list(self._callbacks)

    @property
    def calls(self) -> dict[str, EmulatedCall]:
        """The calls by call UUID, in creation order."""
        with self._cond:
            return dict(self._calls)

    def call(self, call_uuid: str) -> EmulatedCall:
        """One call by UUID (``KeyError`` when unknown)."""
        with self._cond:
            return self._calls[call_uuid]

    def calls_for_request(self, request_uuid: str) -> list[EmulatedCall]:
        """The calls placed by one Make-Call request (several for a bulk dial)."""
        with self._cond:
            return [
                c
                for c in self._calls.values()
                if c.request_uuid == request_uuid or c.call_uuid == request_uuid
            ]

    def callbacks_of(self, kind: str | None = None, *, call_uuid: str | None = None) -> list[CallbackAttempt]:
        """The callback attempts of one kind and/or call."""
        with self._cond:
            return self._matching_callbacks(kind, call_uuid)

    def _matching_callbacks(self, kind: str | None, call_uuid: str | None) -> list[CallbackAttempt]:
        return [
            a
            for a in self._callbacks
            if (kind is None or a.kind == kind) and (call_uuid is None or a.call_uuid == call_uuid)
        ]

    def driver(self, call_uuid: str) -> CallDriver | None:
        """What drives a call (``None`` when unknown)."""
        with self._cond:
            return self._drivers.get(call_uuid)

    # ================================================================== waiting

    def _wait(self, predicate: Callable[[], _Found | None], timeout: float, what: str) -> _Found:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"emulator: timed out after {timeout} s waiting for {what}")
                self._cond.wait(remaining)

    def wait_for_callbacks(
        self,
        kind: str | None = None,
        count: int = 1,
        timeout: float = 10.0,
        *,
        call_uuid: str | None = None,
    ) -> list[CallbackAttempt]:
        """Block until at least ``count`` callback attempts of ``kind`` (and ``call_uuid``) were made.

        Do not call it on the emulator's own event loop (use :meth:`await_callbacks` there).

        :return: The matching attempts.
        :raises TimeoutError: when they did not come in time.
        """

        def ready() -> list[CallbackAttempt] | None:
            found = self._matching_callbacks(kind, call_uuid)
            return found if len(found) >= count else None

        return self._wait(ready, timeout, f"{count} {kind or 'any'} callback(s)")

    def wait_for_call(self, call_uuid: str, timeout: float = 10.0) -> EmulatedCall:
        """Block until the call has ended and its callbacks were delivered (or gave up)."""

        def ready() -> EmulatedCall | None:
            call = self._calls.get(call_uuid)
            if call is None:
                return None
            driver = self._drivers.get(call_uuid)
            return call if call.finished and (driver is None or driver.done.is_set()) else None

        return self._wait(ready, timeout, f"call {call_uuid} to end")

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Block until no call is running and no callback is in flight."""
        self._wait(
            lambda: not self._tasks and all(c.finished for c in self._calls.values()),
            timeout,
            "the emulator to become idle",
        )

    async def await_callbacks(
        self, kind: str | None = None, count: int = 1, timeout: float = 10.0, *, call_uuid: str | None = None
    ) -> list[CallbackAttempt]:
        """Async twin of :meth:`wait_for_callbacks` (does not block the event loop)."""
        return await asyncio.to_thread(self.wait_for_callbacks, kind, count, timeout, call_uuid=call_uuid)

    async def await_call(self, call_uuid: str, timeout: float = 10.0) -> EmulatedCall:
        """Async twin of :meth:`wait_for_call`."""
        return await asyncio.to_thread(self.wait_for_call, call_uuid, timeout)

    async def await_idle(self, timeout: float = 10.0) -> None:
        """Async twin of :meth:`wait_until_idle`."""
        await asyncio.to_thread(self.wait_until_idle, timeout)

    # ================================================================== used by the app and the lifecycles

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a tracked task on the running loop."""
        task = asyncio.get_running_loop().create_task(coro)
        with self._cond:
            self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        with self._cond:
            self._tasks.discard(task)
            self._cond.notify_all()

    async def cancel_tasks(self) -> None:
        """Cancel the tracked tasks of the running loop and wait for them to finish."""
        tasks = [t for t in list(self._tasks) if t.get_loop() is asyncio.get_running_loop()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def log_request(self, request: ReceivedRequest) -> None:
        """Store a received API request."""
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def log_callback(self, attempt: CallbackAttempt) -> None:
        """Store a finished callback attempt (dropped when its call was forgotten by :meth:`reset`)."""
        with self._cond:
            if attempt.call_uuid in self._calls:  # not reset meanwhile
                self._callbacks.append(attempt)
            self._cond.notify_all()

    def create_calls(self, request: MakeCallRequest) -> tuple[str | list[str], list[EmulatedCall]]:
        """Create one call per destination, each following its destination's script, and count the request
        in the CPS window.

        :return: The ``request_uuid`` value of the response and the calls.
        """
        destinations = list(request.to)
        call_uuids = [str(uuid.uuid4()) for _ in destinations]
        if self.settings.request_uuid_shape == "list":
            request_uuids = list(call_uuids)
            response_value: str | list[str] = list(request_uuids)
        elif len(destinations) == 1:
            request_uuids = list(call_uuids)
            response_value = call_uuids[0]
        else:
            shared = str(uuid.uuid4())
            request_uuids = [shared] * len(destinations)
            response_value = shared
        calls = []
        with self._cond:
            self._fired.append(time.monotonic())
            for destination, call_uuid, request_uuid in zip(
                destinations, call_uuids, request_uuids, strict=True
            ):
                call = EmulatedCall(
                    call_uuid=call_uuid,
                    request_uuid=request_uuid,
                    from_number=request.from_number,
                    to=destination,
                    request=request,
                    script=self._scripts.get(destination, self.default_script),
                )
                self._calls[call_uuid] = call
                calls.append(call)
        return response_value, calls

    def attach(self, call_uuid: str, driver: CallDriver) -> None:
        """Record what drives a call (see :meth:`driver`)."""
        with self._cond:
            self._drivers[call_uuid] = driver

    def call_ended(self, call: EmulatedCall) -> None:
        """Give an ended call its CDR id and wake up waiters."""
        with self._cond:
            self._cdr_ids += 1
            call.cdr_id = self._cdr_ids
            self._cond.notify_all()

    # ------------------------------------------------------------------ limits and money

    def active_calls(self) -> list[EmulatedCall]:
        """Calls not yet ended."""
        with self._cond:
            return [c for c in self._calls.values() if not c.finished]

    def check_cps(self) -> tuple[bool, int]:
        """Whether one more ``POST /Call/`` fits in the sliding one-second window (and the current count)."""
        now = time.monotonic()
        with self._cond:
            while self._fired and now - self._fired[0] >= 1.0:
                self._fired.popleft()
            return len(self._fired) < self.settings.cps, len(self._fired)

    def charge(self, call: EmulatedCall) -> None:
        """Take an ended call's cost from the balance."""
        with self._cond:
            self.settings.balance = round(self.settings.balance - call.total_cost, 5)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
