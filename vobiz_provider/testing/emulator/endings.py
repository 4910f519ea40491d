"""How emulated calls end: :class:`Ending` and the endings the emulator produces."""

from __future__ import annotations

from dataclasses import dataclass

from vobiz_provider.models.hangup_causes import OUTCOMES

__all__ = ["Ending"]


@dataclass(frozen=True, kw_only=True)
class Ending:
    """How a call ended.

    :param status: The final ``CallStatus``.
    :param code: The Vobiz hangup cause code.
    :param source: The ``HangupSource``.
    """

    status: str
    code: int
    source: str

    @classmethod
    def preset(cls, name: str) -> Ending:
        """The ending of one of the shared outcome presets (``vobiz_provider.models.hangup_causes``)."""
        preset = OUTCOMES[name]
        return cls(status=str(preset.status.value), code=preset.code, source=preset.source)


# The endings the emulator produces: the shared presets, plus the XML/URL errors of later documents.
CALLEE_HANGUP = Ending.preset("completed")
END_OF_XML = Ending.preset("completed_by_xml")
XML_HANGUP = Ending(
    status="completed", code=4000, source="Answer XML"
)  # <Hangup/>: "Normal Hangup" (docs: xml/hangup)
API_HANGUP_ANSWERED = Ending.preset("hangup_api")
API_CANCEL = Ending.preset("canceled")
BUSY = Ending.preset("busy")
NO_ANSWER = Ending.preset("no_answer")
REJECTED = Ending.preset("rejected")
FAILED = Ending.preset("failed")
RING_TIMEOUT = Ending.preset("ring_timeout")
TIME_LIMIT = Ending.preset("time_limit")
MACHINE_HANGUP = Ending.preset("machine_hangup")
ANSWER_URL_ERROR = Ending.preset("answer_url_error")
ANSWER_XML_ERROR = Ending.preset("invalid_answer_xml")
ACTION_URL_ERROR = Ending(status="completed", code=7012, source="Error")
ACTION_XML_ERROR = Ending(status="completed", code=8012, source="Error")
REDIRECT_URL_ERROR = Ending(status="completed", code=7014, source="Error")
REDIRECT_XML_ERROR = Ending(status="completed", code=8014, source="Error")
TRANSFER_URL_ERROR = Ending(status="completed", code=7013, source="Error")
TRANSFER_XML_ERROR = Ending(status="completed", code=8013, source="Error")
