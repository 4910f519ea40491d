"""The life of one emulated call: ring, answer, answer XML, machine detection, hangup and its callbacks.

Every call runs as an asyncio task on the server's event loop; nothing here blocks the loop. Timers
(``ring_timeout``/``hangup_on_ring``, ``time_limit``, the callee's ``talk_for``, ``<Hangup schedule>``) and
the API's ``DELETE`` end the call through :meth:`CallLifecycle.end`, which cancels the running task.
Notifications (ring, machine detection, hangup) are delivered in order on a per-call chain, each with its
own retries, without holding up the call itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from vobiz_provider.models.hangup_causes import describe_hangup_cause
from vobiz_provider.testing.emulator.call_steps import CallEnded, CallSteps
from vobiz_provider.testing.emulator.endings import (
    ACTION_URL_ERROR,
    ACTION_XML_ERROR,
    ANSWER_URL_ERROR,
    ANSWER_XML_ERROR,
    API_CANCEL,
    API_HANGUP_ANSWERED,
    BUSY,
    CALLEE_HANGUP,
    END_OF_XML,
    FAILED,
    MACHINE_HANGUP,
    NO_ANSWER,
    REDIRECT_URL_ERROR,
    REDIRECT_XML_ERROR,
    REJECTED,
    RING_TIMEOUT,
    TIME_LIMIT,
    TRANSFER_URL_ERROR,
    TRANSFER_XML_ERROR,
    XML_HANGUP,
    Ending,
)
from vobiz_provider.testing.emulator.payloads import (
    answer_fields,
    billed_seconds,
    gather_fields,
    hangup_fields,
    machine_detection_fields,
    redirect_fields,
    ring_fields,
    transfer_fields,
)
from vobiz_provider.testing.emulator.state import utcnow

if TYPE_CHECKING:
    from collections.abc import Callable

    from vobiz_provider.testing.emulator.answer_xml import Verb
    from vobiz_provider.testing.emulator.delivery import CallbackSender
    from vobiz_provider.testing.emulator.state import EmulatedCall
    from vobiz_provider.testing.emulator.switchboard import Switchboard

__all__ = ["CallLifecycle"]


class CallLifecycle(CallSteps):
    """Drives one :class:`EmulatedCall` from ``queued`` to its end.

    :param switchboard: The account the call belongs to.
    :param sender: Gives the callback sender of the running loop.
    :param call: The call.
    """

    def __init__(
        self, *, switchboard: Switchboard, sender: Callable[[], CallbackSender], call: EmulatedCall
    ) -> None:
        super().__init__(switchboard=switchboard, sender=sender, call=call)
        self._gathers = 0
        self.done = asyncio.Event()

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Start the call's task on the running loop."""
        self._main = self.switchboard.spawn(self._run())

    def end(self, ending: Ending) -> bool:
        """End the call now (idempotent). Returns False when it had already ended."""
        call = self.call
        if call.finished:
            return False
        settings = self._settings
        call.end_at = utcnow()
        call.status = ending.status
        call.hangup_cause_code = ending.code
        call.hangup_source = ending.source
        cause = describe_hangup_cause(ending.code)
        call.hangup_cause, call.hangup_cause_name = cause.sip_cause, cause.name
        billsec = billed_seconds(call, settings)
        call.total_cost = round(billsec / 60 * settings.rate_per_minute, 5)
        self.switchboard.charge(call)
        for timer in self._timers:
            timer.cancel()
        current = asyncio.current_task()
        if self._main is not None and self._main is not current:
            self._main.cancel()
        hangup_url = call.request.hangup_url
        if hangup_url:
            self._notify("hangup", hangup_url, call.request.hangup_method, hangup_fields(call, settings))
        self._close_bridge()
        self._close_recordings()
        self._after_chain(self.done.set)
        self.switchboard.call_ended(call)
        return True

    def hang_up(self) -> None:
        """End the call as the API's ``DELETE`` does: hung up when answered, canceled before."""
        self.end(API_HANGUP_ANSWERED if self.call.answer_at is not None else API_CANCEL)

    def transfer(self, url: str, method: str) -> None:
        """Transfer the A leg: drop the running XML, fetch ``url`` and run what it returns.

        The call stays up (its timers keep running); an unreachable URL ends it with 7013, invalid XML
        with 8013.
        """
        if self.call.finished:
            return
        if self._main is not None and self._main is not asyncio.current_task():
            self._main.cancel()
        self.call.xml_log.append(f"transferred to {url}")
        self._main = self.switchboard.spawn(self._run_transfer(url, method))

    async def _run_transfer(self, url: str, method: str) -> None:
        fields = transfer_fields(self.call, self._settings)
        try:
            reached, body, error = await self._fetch(kind="transfer", url=url, method=method, fields=fields)
            if not reached:
                raise CallEnded(TRANSFER_URL_ERROR)
            await self._execute(self._parse(body, error, TRANSFER_XML_ERROR, "transfer"))
        except CallEnded as ended:
            self.end(ended.ending)
            return
        self.end(END_OF_XML)

    # ------------------------------------------------------------------ helpers

    def _timer(self, delay: float, ending: Ending) -> None:
        async def fire() -> None:
            await asyncio.sleep(delay)
            self.end(ending)

        self._timers.append(self.switchboard.spawn(fire()))

    # ------------------------------------------------------------------ the call

    async def _run(self) -> None:
        call, script = self.call, self.call.script
        request = call.request
        await self.switchboard.until_released()  # queued while calls are held
        await asyncio.sleep(script.ring_after)
        if script.outcome == "failed":
            self.end(self._override(FAILED))
            return
        call.status = "ringing"
        call.ring_at = utcnow()
        if request.ring_url:
            self._notify("ring", request.ring_url, request.ring_method, ring_fields(call, self._settings))
        ring_limit = self._settings.default_ring_timeout
        if request.ring_timeout is not None:
            ring_limit = request.ring_timeout
        if request.hangup_on_ring is not None:
            ring_limit = min(ring_limit, request.hangup_on_ring)
        ring_deadline = self._scaled(ring_limit)
        if script.outcome == "ring-timeout" or script.answer_after >= ring_deadline:
            await asyncio.sleep(ring_deadline)
            self.end(self._override(RING_TIMEOUT))
            return
        await asyncio.sleep(script.answer_after)
        unanswered = {"busy": BUSY, "no-answer": NO_ANSWER, "rejected": REJECTED}
        if script.outcome in unanswered:
            self.end(self._override(unanswered[script.outcome]))
            return
        await self._answered()

    def _override(self, ending: Ending) -> Ending:
        code = self.call.script.hangup_cause_code
        return ending if code is None else Ending(status=ending.status, code=code, source=ending.source)

    async def _answered(self) -> None:
        call, script = self.call, self.call.script
        request = call.request
        call.status = "in-progress"
        call.answer_at = utcnow()
        call.machine = script.answered_by_machine
        time_limit = request.time_limit or self._settings.default_time_limit
        self._timer(self._scaled(time_limit), TIME_LIMIT)
        if script.talk_for is not None:
            self._timer(script.talk_for, self._override(CALLEE_HANGUP))
        if request.machine_detection is not None:
            if request.machine_detection_url:
                self._timers.append(self.switchboard.spawn(self._detect_machine()))
            else:
                await asyncio.sleep(script.detect_after)
                if request.machine_detection == "hangup" and script.answered_by_machine:
                    self.end(MACHINE_HANGUP)
                    return
        if script.outcome == "answer-url-error":
            self.end(self._override(ANSWER_URL_ERROR))
            return
        if script.outcome == "invalid-xml":
            self.end(self._override(ANSWER_XML_ERROR))
            return
        try:
            verbs = await self._fetch_answer()
            await self._execute(verbs)
        except CallEnded as ended:
            self.end(ended.ending)
            return
        self.end(END_OF_XML)

    async def _detect_machine(self) -> None:
        call, request = self.call, self.call.request
        await asyncio.sleep(call.script.detect_after)
        if call.finished or request.machine_detection_url is None:
            return
        self._notify(
            "machine-detection",
            request.machine_detection_url,
            request.machine_detection_method,
            machine_detection_fields(call, self._settings),
        )
        if request.machine_detection == "hangup" and call.script.answered_by_machine:
            self.end(MACHINE_HANGUP)

    # ------------------------------------------------------------------ XML

    async def _fetch_answer(self) -> list[Verb]:
        call, request = self.call, self.call.request
        fields = answer_fields(call, self._settings)
        reached, body, error = await self._fetch(
            kind="answer", url=request.answer_url, method=request.answer_method, fields=fields
        )
        if not reached and request.fallback_url:
            reached, body, error = await self._fetch(
                kind="fallback", url=request.fallback_url, method=request.fallback_method, fields=fields
            )
        if not reached:
            call.xml_log.append("answer URL unreachable")
            raise CallEnded(ANSWER_URL_ERROR)
        return self._parse(body, error, ANSWER_XML_ERROR, "answer")

    async def _media(self, verb: Verb) -> None:
        loop = verb.integer("loop", 1)
        if loop == 0:  # forever: until something else ends the call
            await asyncio.Event().wait()
        await asyncio.sleep(self.call.script.media_seconds * loop)

    async def _execute(self, verbs: list[Verb]) -> None:
        queue = list(verbs)
        while queue:
            verb = queue.pop(0)
            replacement = await self._run_verb(verb)
            if replacement is not None:
                queue = replacement

    async def _run_verb(self, verb: Verb) -> list[Verb] | None:
        name = verb.name
        if name in ("Speak", "Play"):
            await self._media(verb)
        elif name == "Wait":
            await asyncio.sleep(self._scaled(verb.integer("length", 1)))
        elif name == "PreAnswer":
            for child in verb.children:
                await self._run_verb(child)
        elif name == "Hangup":
            schedule = verb.attributes.get("schedule")
            if schedule is None:
                raise CallEnded(XML_HANGUP)
            self._timer(self._scaled(int(schedule)), XML_HANGUP)
        elif name == "Redirect":
            return await self._redirect(verb)
        elif name == "Gather":
            return await self._gather(verb)
        elif name == "DTMF":
            await self._dtmf(verb)
        elif name == "Dial":
            return await self._dial(verb)
        elif name == "Record":
            return await self._record(verb)
        elif name == "Conference":
            await self._conference(verb)
        elif name == "Stream":
            await self._stream(verb)
        return None

    async def _redirect(self, verb: Verb) -> list[Verb]:
        fields = redirect_fields(self.call, self._settings)
        reached, body, error = await self._fetch(
            kind="redirect", url=verb.text, method=verb.attributes.get("method"), fields=fields
        )
        if not reached:
            raise CallEnded(REDIRECT_URL_ERROR)
        return self._parse(body, error, REDIRECT_XML_ERROR, "redirect")

    async def _gather(self, verb: Verb) -> list[Verb] | None:
        script = self.call.script
        index = self._gathers
        self._gathers += 1
        for child in verb.children:
            await self._run_verb(child)
        input_types = set((verb.attributes.get("inputType") or "dtmf").split())
        digits = script.digits_for(index) if "dtmf" in input_types else None
        speech = script.speech if "speech" in input_types else None
        if digits is not None:
            finish = verb.attributes.get("finishOnKey", "#")
            if finish not in ("", "none") and finish in digits:
                digits = digits[: digits.index(finish)]
            digits = digits[: verb.integer("numDigits", 32)]
            input_type = "dtmf"
        elif speech is not None:
            input_type = "speech"
        else:
            await asyncio.sleep(self._scaled(verb.integer("executionTimeout", 15)))
            input_type = "dtmf" if "dtmf" in input_types else "speech"
        fields = gather_fields(self.call, self._settings, input_type=input_type, digits=digits, speech=speech)
        timed_out = digits is None and speech is None
        reached, body, error = await self._fetch(
            kind="gather", url=verb.attributes["action"], method=verb.attributes.get("method"), fields=fields
        )
        if timed_out or not verb.flag("redirect", True):
            return None  # falls through to the next verb
        if not reached:
            raise CallEnded(ACTION_URL_ERROR)
        if not body.strip():
            return None
        return self._parse(body, error, ACTION_XML_ERROR, "action")
