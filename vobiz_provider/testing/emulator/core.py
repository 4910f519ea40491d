"""The emulator object: account state, calls, scripts, faults and the record of everything that happened.

One :class:`VobizEmulator` serves one Vobiz account. Its ASGI app (:attr:`VobizEmulator.app`) and the call
lifecycle run on one event loop (the server's); the test thread reads the records and waits on them with
the ``wait_for_*`` methods, which are thread-safe. Everything the emulator sends is built from the shared
models of :mod:`vobiz_provider.models`, so it cannot drift from what the client and the receiver parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from vobiz_provider.testing.emulator.script import CallScript
from vobiz_provider.testing.emulator.settings import EmulatorSettings
from vobiz_provider.testing.emulator.state import (
    CallbackAttempt,
    EmulatedCall,
    Fault,
    ReceivedRequest,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import httpx
    from starlette.applications import Starlette

    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.testing.emulator.delivery import CallbackSender
    from vobiz_provider.testing.emulator.lifecycle import CallLifecycle

__all__ = ["VobizEmulator"]


class VobizEmulator:
    """A strict local Vobiz account: API, call lifecycle and callbacks.

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
        self._lifecycles: dict[str, CallLifecycle] = {}
        self._requests: list[ReceivedRequest] = []
        self._callbacks: list[CallbackAttempt] = []
        self._faults: list[Fault] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fired: deque[float] = deque()
        self._cdr_ids = 0
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._sender: CallbackSender | None = None
        self._app: Starlette | None = None

    # ================================================================== scripting

    def script(self, destination: str, script: CallScript) -> None:
        """Make calls to ``destination`` (exact match, as sent in ``to``) follow ``script``."""
        with self._cond:
            self._scripts[destination] = script

    def clear_scripts(self) -> None:
        """Forget every per-destination script (the default script stays)."""
        with self._cond:
            self._scripts.clear()

    @property
    def scripts(self) -> dict[str, CallScript]:
        """The per-destination scripts (a copy)."""
        with self._cond:
            return dict(self._scripts)

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
        """Forget calls, records, scripts and faults; cancel running calls without callbacks.

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
            self._lifecycles.clear()
            self._requests.clear()
            self._callbacks.clear()
            self._faults.clear()
            self._fired.clear()
            self._cond.notify_all()
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

    # ================================================================== records (thread-safe reads)

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
            return [
                r
                for r in self._callbacks
                if (kind is None or r.kind == kind) and (call_uuid is None or r.call_uuid == call_uuid)
            ]

    def _wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
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
            found = [
                r
                for r in self._callbacks
                if (kind is None or r.kind == kind) and (call_uuid is None or r.call_uuid == call_uuid)
            ]
            return found if len(found) >= count else None

        return self._wait(ready, timeout, f"{count} {kind or 'any'} callback(s)")

    def wait_for_call(self, call_uuid: str, timeout: float = 10.0) -> EmulatedCall:
        """Block until the call has ended and its callbacks were delivered (or gave up)."""

        def ready() -> EmulatedCall | None:
            call = self._calls.get(call_uuid)
            if call is None:
                return None
            lifecycle = self._lifecycles.get(call_uuid)
            return call if call.finished and (lifecycle is None or lifecycle.done.is_set()) else None

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

    # ================================================================== internals used by the app

    @property
    def app(self) -> Starlette:
        """The ASGI app (created on first use)."""
        if self._app is None:
            from vobiz_provider.testing.emulator.app import create_app

            self._app = create_app(self)
        return self._app

    @property
    def sender(self) -> CallbackSender:
        """The callback sender bound to the running loop (created on first use on each loop)."""
        import httpx

        from vobiz_provider.testing.emulator.delivery import CallbackSender

        loop = asyncio.get_running_loop()
        if self._sender is None or self._http_loop is not loop:
            # Vobiz does not queue its own webhooks behind a connection pool: no connection limit, and
            # the 3 s budget (settings.callback_timeout, passed per request) covers only the exchange.
            self._http = httpx.AsyncClient(
                follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            )
            self._http_loop = loop
            self._sender = CallbackSender(client=self._http, settings=self.settings, log=self._log_callback)
        return self._sender

    async def aclose(self) -> None:
        """Cancel running calls and close the HTTP client (called when the server stops)."""
        tasks = [t for t in list(self._tasks) if t.get_loop() is asyncio.get_running_loop()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None and self._http_loop is asyncio.get_running_loop():
            await self._http.aclose()
            self._http = None
            self._sender = None
            self._http_loop = None

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

    def log_request(self, request: ReceivedRequest) -> None:
        """Store a received API request."""
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def _log_callback(self, attempt: CallbackAttempt) -> None:
        with self._cond:
            if attempt.call_uuid in self._calls:  # not reset meanwhile
                self._callbacks.append(attempt)
            self._cond.notify_all()

    def call_ended(self, call: EmulatedCall) -> None:
        """Wake up waiters after a call ended."""
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

    def billed_seconds(self, call: EmulatedCall) -> int:
        """Talk seconds rounded up to the billing pulse (0 when never answered)."""
        talk = call.talk_seconds
        pulse = self.settings.billing_pulse
        return 0 if talk <= 0 else math.ceil(talk / pulse) * pulse

    def charge(self, call: EmulatedCall) -> None:
        """Take an ended call's cost from the balance."""
        with self._cond:
            self.settings.balance = round(self.settings.balance - call.total_cost, 5)

    def describe_cause(self, code: int) -> tuple[str, str]:
        """``(HangupCause, HangupCauseName)`` of a hangup cause code, from the shared cause table."""
        from vobiz_provider.models.hangup_causes import describe_hangup_cause

        cause = describe_hangup_cause(code)
        return cause.sip_cause, cause.name

    def place_calls(self, request: MakeCallRequest) -> tuple[str | list[str], list[EmulatedCall]]:
        """Create one call per destination and start their lifecycles (on the running loop).

        :return: The ``request_uuid`` value of the response and the calls.
        """
        from vobiz_provider.testing.emulator.lifecycle import CallLifecycle

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
        for call in calls:
            lifecycle = CallLifecycle(emulator=self, call=call)
            with self._cond:
                self._lifecycles[call.call_uuid] = lifecycle
            lifecycle.start()
        return response_value, calls

    def lifecycle(self, call_uuid: str) -> CallLifecycle | None:
        """The lifecycle driving a call."""
        with self._cond:
            return self._lifecycles.get(call_uuid)

    # ------------------------------------------------------------------ callback bodies (shared models)

    def _common(self, call: EmulatedCall) -> dict[str, Any]:
        return {
            "call_uuid": call.call_uuid,
            "request_uuid": call.request_uuid,
            "a_leg_request_uuid": call.request_uuid,
            "from_number": call.from_number,
            "to": call.to,
            "direction": "outbound",
            "session_start": call.ring_at or call.created_at,
            "stir_attestation": "Not Applicable",
        }

    def ring_fields(self, call: EmulatedCall) -> dict[str, str]:
        """Form fields of the Ring callback."""
        from vobiz_provider.models.callbacks import RingCallback

        return RingCallback(**self._common(call)).to_form(timezone=self.settings.timezone)

    def answer_fields(self, call: EmulatedCall) -> dict[str, str]:
        """Form fields of the answer (``StartApp``) request."""
        from vobiz_provider.models.callbacks import AnswerCallback

        extra: dict[str, Any] = {"a_leg_uuid": call.call_uuid, "STIRVerification": "Not Applicable"}
        if call.request.caller_name:
            extra["caller_name"] = call.request.caller_name
        return AnswerCallback(**self._common(call), **extra).to_form(timezone=self.settings.timezone)

    def machine_detection_fields(self, call: EmulatedCall) -> dict[str, str]:
        """Form fields of the MachineDetection callback."""
        from vobiz_provider.models.callbacks import MachineDetectionCallback

        common = self._common(call)
        del common["session_start"], common["stir_attestation"]
        return MachineDetectionCallback(
            **common,
            a_leg_uuid=call.call_uuid,
            machine=bool(call.machine),
            if_machine="hangup" if call.request.machine_detection == "hangup" else "continue",
        ).to_form(timezone=self.settings.timezone)

    def gather_fields(
        self, call: EmulatedCall, *, input_type: str, digits: str | None, speech: str | None
    ) -> dict[str, str]:
        """Form fields posted to a ``<Gather>`` action URL."""
        from vobiz_provider.models.callbacks import GatherCallback

        return GatherCallback(
            **self._common(call),
            a_leg_uuid=call.call_uuid,
            call_status="in-progress",
            input_type=input_type,
            digits=digits or "",
            speech=speech or "",
            speech_confidence_score=0.95 if speech else 0.0,
            billed_amount="0.00",
        ).to_form(timezone=self.settings.timezone)

    def redirect_fields(self, call: EmulatedCall) -> dict[str, str]:
        """Form fields of a ``<Redirect>`` request (``Event=Redirect``)."""
        from vobiz_provider.models.callbacks import VobizCallback

        return VobizCallback(
            call_uuid=call.call_uuid,
            from_number=call.from_number,
            to=call.to,
            event="Redirect",
            caller_name=call.request.caller_name or "",
            direction="outbound",
            call_status=call.status,
        ).to_form(timezone=self.settings.timezone)

    def transfer_fields(self, call: EmulatedCall) -> dict[str, str]:
        """Form fields sent to a transfer URL (the standard call parameters, ``Event=Transfer``)."""
        from vobiz_provider.models.callbacks import VobizCallback

        return VobizCallback(
            **self._common(call),
            a_leg_uuid=call.call_uuid,
            event="Transfer",
            call_status=call.status,
        ).to_form(timezone=self.settings.timezone)

    def hangup_fields(self, call: EmulatedCall) -> dict[str, str]:
        """Form fields of the Hangup callback (the Plivo superset)."""
        from vobiz_provider.models.callbacks import HangupCallback

        billsec = self.billed_seconds(call)
        fields: dict[str, Any] = {
            **self._common(call),
            "a_leg_uuid": call.call_uuid,
            "call_status": call.status,
            "start_time": call.created_at,
            "answer_time": call.answer_at,
            "end_time": call.end_at,
            "duration": call.talk_seconds,
            "bill_duration": billsec,
            "bill_rate": f"{self.settings.rate_per_minute:.5f}",
            "total_cost": f"{call.total_cost:.5f}",
            "hangup_cause": call.hangup_cause,
            "hangup_cause_code": call.hangup_cause_code,
            "hangup_cause_name": call.hangup_cause_name,
            "hangup_source": call.hangup_source,
            # both spellings: STIRVerification (Plivo) and stir_verification (the make-call doc table)
            "STIRVerification": "Not Applicable",
            "stir_verification": "Not Applicable",
        }
        if self.settings.main_account_token is not None:
            fields["parent_auth_id"] = "MA_PARENT0001"
        return HangupCallback(**fields).to_form(timezone=self.settings.timezone)
