"""The building blocks of an emulated call, and the verbs that reach beyond the caller.

:class:`CallSteps` holds what every step of :class:`~vobiz_provider.testing.emulator.lifecycle.CallLifecycle`
uses (timers, ordered notifications, XML fetches) and runs ``<Dial>``, ``<Record>``, ``<Conference>``,
``<Stream>`` and ``<DTMF>``:

* ``<Dial>`` rings each ``<Number>``/``<User>`` as its destination's :class:`CallScript` says (answered,
  busy, no answer, failed); the first to answer within ``timeout`` is bridged for its ``talk_for`` (at most
  ``timeLimit``). ``callbackUrl`` gets ``DialAnswer``, ``DialConnected`` and ``DialHangup``; ``action``
  gets ``DialStatus`` once the B leg ended, and its XML runs next unless ``redirect="false"``. When the A
  leg ends during the bridge, ``DialHangup`` and the action follow its Hangup callback. The losing legs of
  a simultaneous dial send no events.
* ``<Record>`` lasts the callee's ``record_for`` plus the silence ``timeout`` (at most ``maxLength``);
  ``recordSession`` records in the background until the call ends, or, with ``startOnDialAnswer``, from
  the next ``<Dial>``'s answer to the end of its bridge (the reference does not say when such a recording
  stops). Each recording posts ``action`` (``redirect`` defaults to false) and ``RecordStop`` with its
  ``RecordUrl`` to ``callbackUrl``; one the hangup cut short ends ``HungUp``, after the Hangup callback.
* ``<Conference>`` and ``<Stream>`` are accepted and timed: they last the script's ``conference_for`` /
  ``stream_for``, at most their ``timeLimit`` / ``streamTimeout``; they post no events.
* ``<DTMF>`` with invalid content is ignored, as documented; ``async="false"`` waits while the tones play
  (0.1 s a tone, ``w`` 0.5 s, ``W`` 1 s, all scaled).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import TYPE_CHECKING, Any

from vobiz_provider.models.hangup_causes import describe_hangup_cause
from vobiz_provider.testing.emulator.answer_xml import InvalidXmlError, Verb, dtmf_is_valid, parse_response
from vobiz_provider.testing.emulator.endings import ACTION_URL_ERROR, ACTION_XML_ERROR, Ending
from vobiz_provider.testing.emulator.payloads import (
    dial_action_fields,
    dial_event_fields,
    record_action_fields,
    record_stop_fields,
)
from vobiz_provider.testing.emulator.state import utcnow

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from vobiz_provider.testing.emulator.delivery import CallbackSender
    from vobiz_provider.testing.emulator.script import CallScript
    from vobiz_provider.testing.emulator.settings import EmulatorSettings
    from vobiz_provider.testing.emulator.state import EmulatedCall
    from vobiz_provider.testing.emulator.switchboard import Switchboard

__all__ = ["CallEnded", "CallSteps"]

#: B-leg script outcomes that answer (a B leg runs no XML of its own, so the XML errors answer too).
_ANSWERING = frozenset({"completed", "machine", "answer-url-error", "invalid-xml"})
#: Seconds a tone of ``<DTMF>`` takes.
_TONE_SECONDS = {"w": 0.5, "W": 1.0}


class CallEnded(Exception):
    """Raised inside the XML interpreter to stop with an ending."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending)
        self.ending = ending


class CallSteps:
    """Timers, ordered notifications, XML fetches and the verbs that involve others, for one call.

    :param switchboard: The account the call belongs to.
    :param sender: Gives the callback sender of the running loop.
    :param call: The call.
    """

    def __init__(
        self, *, switchboard: Switchboard, sender: Callable[[], CallbackSender], call: EmulatedCall
    ) -> None:
        self.switchboard = switchboard
        self._sender = sender
        self.call = call
        self._main: asyncio.Task[None] | None = None
        self._timers: list[asyncio.Task[None]] = []
        self._chain: asyncio.Task[Any] | None = None
        #: Recordings running: each ``<Record>`` verb with when it started (``None``: waits for a Dial).
        self._recordings: list[tuple[Verb, datetime | None]] = []
        #: The bridge in progress: the ``<Dial>``, its B leg and when it was answered.
        self._bridge: tuple[Verb, dict[str, Any], float] | None = None

    @property
    def _settings(self) -> EmulatorSettings:
        return self.switchboard.settings

    # ------------------------------------------------------------------ helpers

    def _scaled(self, seconds: float) -> float:
        return seconds * self._settings.time_scale

    def _notify(self, kind: str, url: str, method: str | None, fields: dict[str, str]) -> None:
        """Queue a callback behind the call's earlier ones (delivered in order, retried on its own)."""
        previous = self._chain

        async def send() -> None:
            if previous is not None:
                await asyncio.wait({previous})  # whatever became of it; our own cancellation still stops us
            await self._sender().notify(
                kind=kind, url=url, method=method or "POST", fields=fields, call_uuid=self.call.call_uuid
            )

        self._chain = self.switchboard.spawn(send())

    def _after_chain(self, callback: Any) -> None:
        previous = self._chain

        async def wait() -> None:
            if previous is not None:
                await asyncio.wait({previous})
            callback()

        self._chain = self.switchboard.spawn(wait())

    async def _fetch(
        self, *, kind: str, url: str, method: str | None, fields: dict[str, str]
    ) -> tuple[bool, str, str | None]:
        result = await self._sender().fetch_xml(
            kind=kind, url=url, method=method or "POST", fields=fields, call_uuid=self.call.call_uuid
        )
        return result.reached, result.body, result.error

    def _parse(self, body: str, error: str | None, failure: Ending, what: str) -> list[Verb]:
        if error is not None:
            self.call.xml_log.append(f"{what} XML refused: {error}")
            raise CallEnded(failure)
        try:
            verbs = parse_response(body)
        except InvalidXmlError as exc:
            self.call.xml_log.append(f"{what} XML invalid: {exc}")
            raise CallEnded(failure) from None
        self.call.xml_log.append(f"{what} XML: {', '.join(v.name for v in verbs) or '(empty)'}")
        return verbs

    async def _action(
        self, verb: Verb, kind: str, fields: dict[str, str], *, redirect: bool
    ) -> list[Verb] | None:
        """Post ``fields`` to the verb's ``action``: with ``redirect``, fetch it and return its XML."""
        action = verb.attributes.get("action")
        if action is None:
            return None
        method = verb.attributes.get("method")
        if not redirect:
            self._notify(kind, action, method, fields)
            return None
        reached, body, error = await self._fetch(kind=kind, url=action, method=method, fields=fields)
        if not reached:
            raise CallEnded(ACTION_URL_ERROR)
        if not body.strip():
            return None
        return self._parse(body, error, ACTION_XML_ERROR, f"{verb.name} action")

    # ------------------------------------------------------------------ <Dial>

    def _leg_result(self, script: CallScript, timeout: float) -> tuple[str, int, float]:
        """How an unanswered B leg ends: ``DialStatus``, cause code, and after how many seconds."""
        rings_for = script.ring_after + script.answer_after
        if script.outcome == "failed":
            status, code, after = "failed", 2000, script.ring_after
        elif script.outcome in ("busy", "rejected") and rings_for < timeout:
            status, code, after = "busy", 3010 if script.outcome == "busy" else 3020, rings_for
        elif script.outcome == "no-answer" and rings_for < timeout:
            status, code, after = "no-answer", 3000, rings_for
        else:  # rings until the Dial's timeout
            status, code, after = "no-answer", 3000, timeout
        return status, script.hangup_cause_code or code, after

    async def _dial(self, verb: Verb) -> list[Verb] | None:
        call, settings = self.call, self._settings
        timeout = self._scaled(verb.integer("timeout", 120))
        legs = [(child.text, self.switchboard.script_for(child.text)) for child in verb.children]
        answering = [
            (script.ring_after + script.answer_after, index)
            for index, (_, script) in enumerate(legs)
            if script.outcome in _ANSWERING and script.ring_after + script.answer_after < timeout
        ]
        callback, callback_method = verb.attributes.get("callbackUrl"), verb.attributes.get("callbackMethod")
        b_leg: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "from": verb.attributes.get("callerId") or call.from_number,
        }
        if answering:
            delay, index = min(answering)
            target, script = legs[index]
            b_leg["to"] = target
            await asyncio.sleep(delay)
            call.xml_log.append(f"Dial: B leg {index + 1} of {len(legs)} answered")
            if callback:
                for event in ("DialAnswer", "DialConnected"):
                    fields = dial_event_fields(call, settings, event=event, b_leg=b_leg)
                    self._notify("dial", callback, callback_method, fields)
            self._start_dial_recordings()
            limit = self._scaled(verb.integer("timeLimit", 14400))
            talk = limit if script.talk_for is None else min(script.talk_for, limit)
            self._bridge = (verb, b_leg, asyncio.get_running_loop().time())
            await asyncio.sleep(talk)
            self._bridge = None
            code = 4000 if script.talk_for is not None and script.talk_for <= limit else 6000
            status, rang = "completed", True
            b_leg.update(duration=math.ceil(talk), source="Callee" if code == 4000 else "Vobiz")
            call.xml_log.append(f"Dial: bridge ended ({describe_hangup_cause(code).name})")
        else:
            results = [self._leg_result(script, timeout) for _, script in legs]
            statuses = {status for status, _, _ in results}
            status = next(s for s in ("no-answer", "busy", "failed") if s in statuses)
            code = next(c for s, c, _ in results if s == status)
            await asyncio.sleep(max(after for _, _, after in results))
            rang = any(script.outcome != "failed" for _, script in legs)
            b_leg.update(to=legs[0][0], duration=0, source="Vobiz" if status == "no-answer" else "Callee")
            call.xml_log.append(f"Dial: no B leg answered ({status})")
        cause = describe_hangup_cause(code)
        b_leg.update(cause_code=code, cause=cause.sip_cause, cause_name=cause.name)
        if callback:
            fields = dial_event_fields(call, settings, event="DialHangup", b_leg=b_leg)
            self._notify("dial", callback, callback_method, fields)
        self._stop_dial_recordings()
        fields = dial_action_fields(
            call,
            settings,
            dial_status=status,
            rang=rang,
            hangup_cause=cause.sip_cause,
            b_leg_uuid=b_leg["uuid"] if answering else None,
        )
        return await self._action(verb, "dial-action", fields, redirect=verb.flag("redirect", True))

    def _close_bridge(self) -> None:
        """The A leg ended during a bridge: the B leg goes with it (``DialHangup``, then the action)."""
        if self._bridge is None:
            return
        verb, b_leg, answered = self._bridge
        self._bridge = None
        cause = describe_hangup_cause(4000)
        b_leg.update(
            duration=math.ceil(asyncio.get_running_loop().time() - answered),
            source="Caller",
            cause_code=cause.code,
            cause=cause.sip_cause,
            cause_name=cause.name,
        )
        call, settings = self.call, self._settings
        callback = verb.attributes.get("callbackUrl")
        if callback:
            fields = dial_event_fields(call, settings, event="DialHangup", b_leg=b_leg)
            self._notify("dial", callback, verb.attributes.get("callbackMethod"), fields)
        action = verb.attributes.get("action")
        if action:
            fields = dial_action_fields(
                call,
                settings,
                dial_status="completed",
                rang=True,
                hangup_cause=cause.sip_cause,
                b_leg_uuid=b_leg["uuid"],
            )
            self._notify("dial-action", action, verb.attributes.get("method"), fields)

    # ------------------------------------------------------------------ <Record>

    async def _record(self, verb: Verb) -> list[Verb] | None:
        if verb.flag("recordSession", False):
            start = None if verb.flag("startOnDialAnswer", False) else utcnow()
            self._recordings.append((verb, start))
            self.call.xml_log.append("Record: session recording " + ("armed" if start is None else "started"))
            return None
        start = utcnow()
        entry = (verb, start)
        self._recordings.append(entry)
        longest = self._scaled(verb.integer("maxLength", 60))
        until_silence = self.call.script.record_for + self._scaled(verb.integer("timeout", 60))
        length, reason = (
            (longest, "maxLength") if until_silence >= longest else (until_silence, "RecordingTimeout")
        )
        await asyncio.sleep(length)
        self._recordings.remove(entry)
        recording = self._recording(verb, start, reason)
        self._post_record_stop(verb, recording)
        fields = record_action_fields(self.call, self._settings, recording=recording)
        return await self._action(verb, "record-action", fields, redirect=verb.flag("redirect", False))

    def _recording(self, verb: Verb, start: datetime, reason: str) -> dict[str, Any]:
        end = utcnow()
        recording_id = str(uuid.uuid4())
        file_format = verb.attributes.get("fileFormat", "mp3")
        base = self._settings.recording_base_url.rstrip("/")
        self.call.xml_log.append(f"Record: recording {recording_id} ended ({reason})")
        return {
            "id": recording_id,
            "url": f"{base}/{self._settings.auth_id}/{recording_id}.{file_format}",
            "duration_ms": max(0, int((end - start).total_seconds() * 1000)),
            "start_ms": int(start.timestamp() * 1000),
            "end_ms": int(end.timestamp() * 1000),
            "end_reason": reason,
        }

    def _post_record_stop(self, verb: Verb, recording: dict[str, Any]) -> None:
        callback = verb.attributes.get("callbackUrl")
        if callback:
            fields = record_stop_fields(self.call, self._settings, recording=recording)
            self._notify("record", callback, verb.attributes.get("callbackMethod"), fields)

    def _start_dial_recordings(self) -> None:
        now = utcnow()
        self._recordings = [(verb, now if start is None else start) for verb, start in self._recordings]

    def _stop_dial_recordings(self) -> None:
        for verb, start in list(self._recordings):
            if (
                start is not None
                and verb.flag("recordSession", False)
                and verb.flag("startOnDialAnswer", False)
            ):
                self._recordings.remove((verb, start))
                self._post_record_stop(verb, self._recording(verb, start, "HungUp"))

    def _close_recordings(self) -> None:
        """The call ended: the recordings still running end ``HungUp`` (after the Hangup callback)."""
        running, self._recordings = self._recordings, []
        for verb, start in running:
            if start is not None:
                self._post_record_stop(verb, self._recording(verb, start, "HungUp"))

    # ------------------------------------------------------------------ <Conference>, <Stream>, <DTMF>

    async def _stay(self, what: str, stay: float | None, limit: float) -> None:
        length = limit if stay is None else min(stay, limit)
        self.call.xml_log.append(f"{what}: joined")
        await asyncio.sleep(length)
        self.call.xml_log.append(f"{what}: left" + (" (time limit)" if stay is None or stay > limit else ""))

    async def _conference(self, verb: Verb) -> None:
        limit = self._scaled(verb.integer("timeLimit", 14400))
        await self._stay(f"Conference {verb.text!r}", self.call.script.conference_for, limit)

    async def _stream(self, verb: Verb) -> None:
        limit = self._scaled(verb.integer("streamTimeout", 86400))
        await self._stay("Stream", self.call.script.stream_for, limit)

    async def _dtmf(self, verb: Verb) -> None:
        if not dtmf_is_valid(verb.text):
            self.call.xml_log.append("DTMF ignored: invalid content")
            return
        self.call.xml_log.append(f"DTMF sent: {verb.text}")
        if not verb.flag("async", True):
            await asyncio.sleep(self._scaled(sum(_TONE_SECONDS.get(key, 0.1) for key in verb.text)))
