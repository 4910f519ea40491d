"""What the callee does: a test's script for one destination."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["OUTCOMES", "CallScript", "Outcome"]

Outcome = Literal[
    "completed",
    "busy",
    "no-answer",
    "failed",
    "rejected",
    "machine",
    "answer-url-error",
    "invalid-xml",
    "ring-timeout",
]

OUTCOMES: tuple[str, ...] = (
    "completed",
    "busy",
    "no-answer",
    "failed",
    "rejected",
    "machine",
    "answer-url-error",
    "invalid-xml",
    "ring-timeout",
)


@dataclass(frozen=True, kw_only=True)
class CallScript:
    """How the emulated callee behaves for one destination. All timings are real seconds.

    The timeline of a call: the request is accepted (``queued``); after ``ring_after`` the phone rings
    (Ring callback); after a further ``answer_after`` the callee answers, or - for ``busy``,
    ``no-answer`` and ``rejected`` - the call ends there. ``failed`` ends the call after ``ring_after``
    without ringing. ``ring-timeout`` rings until the request's ``ring_timeout``/``hangup_on_ring``
    (or the default 120 s, all scaled by the ``time_scale`` setting).

    Once answered, the answer XML runs; the callee hangs up ``talk_for`` seconds after answering unless
    the XML, ``time_limit`` or ``DELETE`` ends the call first.

    :param outcome: ``completed`` (answered by a person), ``busy``, ``no-answer``, ``failed``,
        ``rejected``, ``machine`` (answered by a machine), ``answer-url-error`` (the answer and fallback
        URLs are treated as unreachable without being contacted: 7011), ``invalid-xml`` (their XML is
        treated as invalid without being fetched: 8011) or ``ring-timeout``.
    :param ring_after: Seconds from the accepted request to ringing.
    :param answer_after: Seconds of ringing before the callee answers (or rejects, or the call gives
        up for ``busy``/``no-answer``).
    :param talk_for: Seconds the callee stays on the line after answering (``None``: until the call is
        ended by the XML, ``time_limit`` or the API).
    :param answered_by_machine: An answering machine picks up (what machine detection reports); implied by
        ``outcome="machine"``.
    :param digits: What the callee presses at a ``<Gather>``: a string used for every Gather, or a list
        used one item per Gather in order; ``None`` (or a list that ran out) means the Gather times out.
    :param speech: What the callee says at a speech ``<Gather>`` (``None``: nothing).
    :param media_seconds: Nominal playing time of every ``<Speak>`` and ``<Play>`` (times ``loop``).
    :param detect_after: Seconds from answer to the machine-detection result.
    :param hangup_cause_code: Overrides the hangup cause code the outcome would produce (e.g. 2000 for
        an invalid number with ``outcome="failed"``).
    :param record_for: Seconds the callee speaks into a ``<Record>`` before falling silent (the recording
        then ends: ``RecordingTimeout``), unless its ``maxLength`` comes first.
    :param conference_for: Seconds the callee stays in a ``<Conference>`` (``None``: until its
        ``timeLimit`` or the end of the call).
    :param stream_for: Seconds a ``<Stream>`` lasts before the server closes it (``None``: until its
        ``streamTimeout`` or the end of the call).

    As the B leg of a ``<Dial>`` (a ``<Number>`` with this script), ``outcome`` decides whether it answers
    (``completed``, ``machine``), is busy (``busy``, ``rejected``), does not answer (``no-answer``,
    ``ring-timeout``, or ``answer_after`` beyond the Dial's ``timeout``) or fails (``failed`` and the URL
    and XML errors); ``ring_after + answer_after`` is when it answers and ``talk_for`` how long the bridge
    lasts.
    """

    outcome: Outcome = "completed"
    ring_after: float = 0.01
    answer_after: float = 0.05
    talk_for: float | None = 0.1
    answered_by_machine: bool = False
    digits: str | list[str] | tuple[str, ...] | None = None
    speech: str | None = None
    media_seconds: float = 0.01
    detect_after: float = 0.0
    hangup_cause_code: int | None = None
    record_for: float = 0.05
    conference_for: float | None = 0.05
    stream_for: float | None = 0.05

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: must be one of {', '.join(OUTCOMES)}; got {self.outcome!r}")
        for name in ("ring_after", "answer_after", "media_seconds", "detect_after", "record_for"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)!r}")
        if self.talk_for is not None and self.talk_for < 0:
            raise ValueError(f"talk_for: must not be negative, got {self.talk_for!r}")
        if isinstance(self.digits, list):
            object.__setattr__(self, "digits", tuple(self.digits))
        if self.outcome == "machine" and not self.answered_by_machine:
            object.__setattr__(self, "answered_by_machine", True)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def answered(
        cls,
        after: float = 0.05,
        talk_for: float | None = 0.1,
        *,
        digits: str | list[str] | None = None,
        speech: str | None = None,
        machine: bool = False,
        ring_after: float = 0.01,
    ) -> CallScript:
        """The callee answers after ``after`` seconds of ringing and stays ``talk_for`` seconds."""
        return cls(
            outcome="completed",
            answer_after=after,
            talk_for=talk_for,
            digits=digits,
            speech=speech,
            answered_by_machine=machine,
            ring_after=ring_after,
        )

    @classmethod
    def busy(cls, after: float = 0.05) -> CallScript:
        """The line is busy: the call ends after ``after`` seconds of ringing (3010 Busy Line)."""
        return cls(outcome="busy", answer_after=after)

    @classmethod
    def no_answer(cls, after: float = 0.05) -> CallScript:
        """Nobody answers: the call ends after ``after`` seconds of ringing (3000 No Answer)."""
        return cls(outcome="no-answer", answer_after=after)

    @classmethod
    def rejected(cls, after: float = 0.05) -> CallScript:
        """The callee rejects the call after ``after`` seconds of ringing (3020 Rejected)."""
        return cls(outcome="rejected", answer_after=after)

    @classmethod
    def failed(cls, after: float = 0.01, *, cause_code: int | None = None) -> CallScript:
        """The call fails without ringing (default 2000 Invalid Destination Address)."""
        return cls(outcome="failed", ring_after=after, hangup_cause_code=cause_code)

    @classmethod
    def machine(cls, after: float = 0.05, talk_for: float | None = 0.1) -> CallScript:
        """An answering machine picks up after ``after`` seconds of ringing."""
        return cls(outcome="machine", answer_after=after, talk_for=talk_for, answered_by_machine=True)

    @classmethod
    def answer_url_error(cls, after: float = 0.05) -> CallScript:
        """Answered, but the answer (and fallback) URL counts as unreachable: 7011."""
        return cls(outcome="answer-url-error", answer_after=after)

    @classmethod
    def invalid_xml(cls, after: float = 0.05) -> CallScript:
        """Answered, but the answer XML counts as invalid: 8011."""
        return cls(outcome="invalid-xml", answer_after=after)

    @classmethod
    def ring_timeout(cls) -> CallScript:
        """Rings until ``ring_timeout``/``hangup_on_ring`` (6010)."""
        return cls(outcome="ring-timeout")

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for the control API)."""
        data = dataclasses.asdict(self)
        if isinstance(self.digits, tuple):
            data["digits"] = list(self.digits)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallScript:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        data = dict(data)
        if "machine" in data:  # the constructor's spelling
            data["answered_by_machine"] = data.pop("machine")
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown CallScript field(s): {', '.join(unknown)}")
        return cls(**data)

    def digits_for(self, index: int) -> str | None:
        """The digits pressed at the ``index``-th Gather (0-based), or ``None`` for a timeout."""
        if self.digits is None or isinstance(self.digits, str):
            return self.digits
        return self.digits[index] if index < len(self.digits) else None
