"""The verbs that connect a call to other parties: ``<Dial>`` (with ``<Number>`` and ``<User>``) and
``<Conference>``.

Attributes are those of docs.vobiz.ai/xml/dial. ``<Conference>``'s page is not in the reference notes:
its attributes are those of the ``add_conference`` helper of Vobiz's own ``vobiz-python`` SDK (a copy of
Plivo's ``ConferenceElement``), which is what Vobiz's users emit today.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar, Literal

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.xml.checks import (
    _attr,
    _boolean,
    _content,
    _digits_match,
    _finish_on_key,
    _integer,
    _method,
    _nonempty_text,
    _phone_number,
    _send_digits,
    _sip_headers,
    _sip_uri,
    _sound,
    _text_max,
    _url,
)
from vobiz_provider.xml.verbs import _V, HttpMethod, _Container, _Verb

__all__ = ["Conference", "Dial", "Number", "User"]

#: Vobiz cuts every call at 24 hours.
_DAY = 86400


@dataclass(eq=False)
class Number(_Verb):
    """``<Number>`` inside ``<Dial>``: a phone number to ring.

    :param number: The number, E.164 with or without ``+`` (``+14155550100``).
    :param send_digits: DTMF sent once the number answers: ``0-9 * #``, ``w``/``W`` pauses, optionally
        ``@<ms>`` for the tone length (``1w2@1000``).
    :param send_on_preanswer: Send ``send_digits`` on early media, before the answer.
    """

    tag: ClassVar[str] = "Number"

    number: str = field(metadata=_content(_phone_number))
    _: KW_ONLY
    send_digits: str | None = field(default=None, metadata=_attr("sendDigits", _send_digits))
    send_on_preanswer: bool | None = field(default=None, metadata=_attr("sendOnPreanswer", _boolean))


@dataclass(eq=False)
class User(_Verb):
    """``<User>`` inside ``<Dial>``: a SIP endpoint to ring.

    :param uri: The SIP URI, e.g. ``sip:alice@example.com``.
    :param sip_headers: ``name=value`` pairs, comma-separated (sent as ``X-VH-<name>``).
    """

    tag: ClassVar[str] = "User"

    uri: str = field(metadata=_content(_sip_uri))
    _: KW_ONLY
    sip_headers: str | None = field(default=None, metadata=_attr("sipHeaders", _sip_headers))


@dataclass(eq=False)
class Dial(_Container):
    """``<Dial>``: ring one or more numbers or SIP users (the B leg) and bridge the first to answer.

    Several children ring at once; the losers end with ``LOSE_RACE`` (9000). Vobiz posts the outcome
    (``DialStatus``, ``DialBLegUUID``, ...) to ``action`` when the B leg ends, and the B leg's events
    (``DialAction=answer|connected|digits|hangup``) to ``callbackUrl``.

    :param action: URL that receives the outcome; with ``redirect`` (Vobiz's default) its XML runs next.
    :param method: ``POST`` (default) or ``GET`` for ``action``.
    :param callback_url: URL that receives the B leg's events.
    :param callback_method: ``POST`` (default) or ``GET`` for ``callback_url``.
    :param redirect: Run the XML ``action`` returns (Vobiz's default true); ``False`` goes on with the
        verbs after the ``<Dial>``.
    :param caller_id: Caller ID shown to the B leg: a number you own at Vobiz, E.164.
    :param caller_name: Caller name shown to the B leg (at most 50 characters).
    :param timeout: Seconds the B leg rings before giving up (Vobiz's effective default 120).
    :param time_limit: Longest bridge in seconds (Vobiz's default 14400).
    :param hangup_on_star: The caller ends the bridge by pressing ``*``.
    :param dial_music: ``real`` (the ring tone, default) or the URL of an XML document of ``Play``/``Speak``.
    :param confirm_sound: URL of XML played to the B leg before it is bridged.
    :param confirm_key: Key the B leg must press to accept the call (Vobiz marks its enforcement
        "unverified").
    :param confirm_timeout: Seconds the B leg has to press ``confirm_key``.
    :param digits_match: Digit patterns of the A leg posted to ``callback_url`` (``DialDigitsMatch``),
        comma-separated, e.g. ``"*1,*2"``.
    :param digits_match_b_leg: The same for the B leg.
    :param sip_headers: ``name=value`` pairs, comma-separated, sent to the B leg as ``X-VH-<name>``.
    """

    tag: ClassVar[str] = "Dial"
    allowed: ClassVar[tuple[type[_Verb], ...]] = (Number, User)

    _: KW_ONLY
    action: str | None = field(default=None, metadata=_attr("action", _url))
    method: HttpMethod | None = field(default=None, metadata=_attr("method", _method))
    callback_url: str | None = field(default=None, metadata=_attr("callbackUrl", _url))
    callback_method: HttpMethod | None = field(default=None, metadata=_attr("callbackMethod", _method))
    redirect: bool | None = field(default=None, metadata=_attr("redirect", _boolean))
    caller_id: str | None = field(default=None, metadata=_attr("callerId", _phone_number))
    caller_name: str | None = field(default=None, metadata=_attr("callerName", _text_max(50)))
    timeout: int | None = field(default=None, metadata=_attr("timeout", _integer(1, _DAY)))
    time_limit: int | None = field(default=None, metadata=_attr("timeLimit", _integer(1, _DAY)))
    hangup_on_star: bool | None = field(default=None, metadata=_attr("hangupOnStar", _boolean))
    dial_music: str | None = field(default=None, metadata=_attr("dialMusic", _sound("real")))
    confirm_sound: str | None = field(default=None, metadata=_attr("confirmSound", _url))
    confirm_key: str | None = field(default=None, metadata=_attr("confirmKey", _finish_on_key))
    confirm_timeout: int | None = field(default=None, metadata=_attr("confirmTimeout", _integer(1, 120)))
    digits_match: str | None = field(default=None, metadata=_attr("digitsMatch", _digits_match))
    digits_match_b_leg: str | None = field(default=None, metadata=_attr("digitsMatchBLeg", _digits_match))
    sip_headers: str | None = field(default=None, metadata=_attr("sipHeaders", _sip_headers))
    children: list[_Verb] = field(default_factory=list, init=False)

    def number(
        self, number: str, *, send_digits: str | None = None, send_on_preanswer: bool | None = None
    ) -> Number:
        """Append a :class:`Number` and return it; see :class:`Number` for the parameters."""
        return self._append(Number(number, send_digits=send_digits, send_on_preanswer=send_on_preanswer))

    def user(self, uri: str, *, sip_headers: str | None = None) -> User:
        """Append a :class:`User` and return it; see :class:`User` for the parameters."""
        return self._append(User(uri, sip_headers=sip_headers))

    def _append(self, child: _V) -> _V:
        return self.add(child)

    def _check(self) -> None:
        super()._check()
        if self.method is not None and self.action is None:
            raise VobizValidationError("<Dial> method needs action")
        if self.callback_method is not None and self.callback_url is None:
            raise VobizValidationError("<Dial> callbackMethod needs callbackUrl")
        if self.confirm_timeout is not None and self.confirm_key is None:
            raise VobizValidationError("<Dial> confirmTimeout needs confirmKey")

    def check_parties(self) -> None:
        """Raise unless there is a party to ring; checked when the document renders, since the parties
        are added after the ``<Dial>`` is built."""
        if not self.children:
            raise VobizValidationError("<Dial> needs at least one <Number> or <User>")


ConferenceFileFormat = Literal["mp3", "wav"]


@dataclass(eq=False)
class Conference(_Verb):
    """``<Conference>``: put the caller in a named conference room.

    :param name: The room's name (the element's content).
    :param muted: Join muted.
    :param enter_sound: ``beep:1``, ``beep:2`` or the URL of XML played when someone joins.
    :param exit_sound: The same when someone leaves.
    :param start_conference_on_enter: Starting the conference when this caller joins (default true).
    :param end_conference_on_exit: End it for everyone when this caller leaves.
    :param stay_alone: Stay in the room when alone (default true).
    :param wait_sound: URL of XML played while waiting for the conference to start.
    :param max_members: Most members, 2-250.
    :param record: Record the conference.
    :param record_file_format: ``mp3`` (default) or ``wav``.
    :param time_limit: Most seconds in the conference.
    :param hangup_on_star: Leave the conference by pressing ``*``.
    :param action: URL that receives the conference's details when the caller leaves.
    :param method: ``POST`` or ``GET`` for ``action``.
    :param callback_url: URL that receives the conference events (``ConferenceEnter``, ``ConferenceExit``...).
    :param callback_method: ``POST`` or ``GET`` for ``callback_url``.
    :param digits_match: Digit patterns posted to ``callback_url``, comma-separated.
    :param floor_event: Post ``ConferenceFloor`` events to ``callback_url``.
    :param redirect: Run the XML ``action`` returns (default true).
    :param relay_dtmf: Relay key presses to the other members.
    """

    tag: ClassVar[str] = "Conference"

    name: str = field(metadata=_content(_nonempty_text))
    _: KW_ONLY
    muted: bool | None = field(default=None, metadata=_attr("muted", _boolean))
    enter_sound: str | None = field(default=None, metadata=_attr("enterSound", _sound("beep:1", "beep:2")))
    exit_sound: str | None = field(default=None, metadata=_attr("exitSound", _sound("beep:1", "beep:2")))
    start_conference_on_enter: bool | None = field(
        default=None, metadata=_attr("startConferenceOnEnter", _boolean)
    )
    end_conference_on_exit: bool | None = field(default=None, metadata=_attr("endConferenceOnExit", _boolean))
    stay_alone: bool | None = field(default=None, metadata=_attr("stayAlone", _boolean))
    wait_sound: str | None = field(default=None, metadata=_attr("waitSound", _url))
    max_members: int | None = field(default=None, metadata=_attr("maxMembers", _integer(2, 250)))
    record: bool | None = field(default=None, metadata=_attr("record", _boolean))
    record_file_format: ConferenceFileFormat | None = field(
        default=None, metadata=_attr("recordFileFormat", _sound("mp3", "wav", urls=False))
    )
    time_limit: int | None = field(default=None, metadata=_attr("timeLimit", _integer(1, _DAY)))
    hangup_on_star: bool | None = field(default=None, metadata=_attr("hangupOnStar", _boolean))
    action: str | None = field(default=None, metadata=_attr("action", _url))
    method: HttpMethod | None = field(default=None, metadata=_attr("method", _method))
    callback_url: str | None = field(default=None, metadata=_attr("callbackUrl", _url))
    callback_method: HttpMethod | None = field(default=None, metadata=_attr("callbackMethod", _method))
    digits_match: str | None = field(default=None, metadata=_attr("digitsMatch", _digits_match))
    floor_event: bool | None = field(default=None, metadata=_attr("floorEvent", _boolean))
    redirect: bool | None = field(default=None, metadata=_attr("redirect", _boolean))
    relay_dtmf: bool | None = field(default=None, metadata=_attr("relayDTMF", _boolean))

    def _check(self) -> None:
        super()._check()
        if self.record_file_format is not None and not self.record:
            raise VobizValidationError("<Conference> recordFileFormat is used only with record=True")
        if self.callback_method is not None and self.callback_url is None:
            raise VobizValidationError("<Conference> callbackMethod needs callbackUrl")
