"""The verbs that capture or carry a call's audio: ``<Record>`` and ``<Stream>`` (docs.vobiz.ai/xml/record,
docs.vobiz.ai/xml/stream)."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar, Literal

from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.xml.checks import (
    _attr,
    _boolean,
    _choice,
    _content,
    _finish_keys,
    _integer,
    _method,
    _nonempty_text,
    _stream_url,
    _url,
)
from vobiz_provider.xml.verbs import HttpMethod, _Verb

__all__ = ["Record", "Stream"]

FileFormat = Literal["mp3", "wav"]
TranscriptionType = Literal["auto", "hybrid"]
AudioTrack = Literal["inbound", "outbound", "both"]
StreamContentType = Literal[
    "audio/x-l16;rate=8000", "audio/x-l16;rate=16000", "audio/x-l16;rate=24000", "audio/x-mulaw;rate=8000"
]

_DAY = 86400


@dataclass(eq=False)
class Record(_Verb):
    """``<Record>``: record the caller (until silence, a key or ``max_length``) or, with
    ``record_session``, the whole call in the background.

    Vobiz posts ``RecordingID`` (and the file's URL) to ``action``, and ``Event=RecordStop`` with
    ``RecordUrl``, ``RecordingDuration`` and ``RecordingEndReason`` to ``callback_url`` once the file is
    ready.

    :param action: URL that receives the recording's details.
    :param method: ``POST`` (default) or ``GET`` for ``action``.
    :param file_format: ``mp3`` (default) or ``wav``.
    :param redirect: Run the XML ``action`` returns (Vobiz's default is **false**: the verbs after the
        ``<Record>`` run).
    :param timeout: Seconds of silence that end the recording (Vobiz's default 60).
    :param max_length: Longest recording in seconds (Vobiz's default 60).
    :param play_beep: Beep before recording (Vobiz's default true).
    :param finish_on_key: Keys that end the recording (Vobiz's default ``1234567890*#``); ``""`` or
        ``"none"`` disables them.
    :param record_session: Record the whole call in the background while the next verbs run.
    :param start_on_dial_answer: Start recording when a following ``<Dial>`` is answered (records the
        bridge).
    :param transcription_type: ``auto`` or ``hybrid``.
    :param transcription_url: URL that receives the transcription.
    :param transcription_method: ``POST`` or ``GET`` for ``transcription_url``.
    :param callback_url: URL that receives ``RecordStop`` with the recording's URL.
    :param callback_method: ``POST`` or ``GET`` for ``callback_url``.
    """

    tag: ClassVar[str] = "Record"

    _: KW_ONLY
    action: str | None = field(default=None, metadata=_attr("action", _url))
    method: HttpMethod | None = field(default=None, metadata=_attr("method", _method))
    file_format: FileFormat | None = field(default=None, metadata=_attr("fileFormat", _choice("mp3", "wav")))
    redirect: bool | None = field(default=None, metadata=_attr("redirect", _boolean))
    timeout: int | None = field(default=None, metadata=_attr("timeout", _integer(1, _DAY)))
    max_length: int | None = field(default=None, metadata=_attr("maxLength", _integer(1, _DAY)))
    play_beep: bool | None = field(default=None, metadata=_attr("playBeep", _boolean))
    finish_on_key: str | None = field(default=None, metadata=_attr("finishOnKey", _finish_keys))
    record_session: bool | None = field(default=None, metadata=_attr("recordSession", _boolean))
    start_on_dial_answer: bool | None = field(default=None, metadata=_attr("startOnDialAnswer", _boolean))
    transcription_type: TranscriptionType | None = field(
        default=None, metadata=_attr("transcriptionType", _choice("auto", "hybrid"))
    )
    transcription_url: str | None = field(default=None, metadata=_attr("transcriptionUrl", _url))
    transcription_method: HttpMethod | None = field(
        default=None, metadata=_attr("transcriptionMethod", _method)
    )
    callback_url: str | None = field(default=None, metadata=_attr("callbackUrl", _url))
    callback_method: HttpMethod | None = field(default=None, metadata=_attr("callbackMethod", _method))

    def _check(self) -> None:
        super()._check()
        for method, url in (
            ("method", "action"),
            ("transcription_method", "transcription_url"),
            ("callback_method", "callback_url"),
        ):
            if getattr(self, method) is not None and getattr(self, url) is None:
                raise VobizValidationError(f"<Record> {method} needs {url}")
        if self.transcription_url is not None and self.transcription_type is None:
            raise VobizValidationError("<Record> transcriptionUrl needs transcriptionType")


@dataclass(eq=False)
class Stream(_Verb):
    """``<Stream>``: send the call's audio to a WebSocket (and, bidirectional, play audio it sends back).

    :param url: The ``wss://`` (or ``ws://``) URL of the WebSocket server.
    :param bidirectional: The server may send audio back.
    :param audio_track: ``inbound`` (the caller), ``outbound`` or ``both``.
    :param stream_timeout: Longest stream in seconds (Vobiz's default 86400).
    :param status_callback_url: URL that receives the stream's events (``StartStream``, ``StopStream``...).
    :param status_callback_method: ``POST`` or ``GET`` for ``status_callback_url``.
    :param content_type: ``audio/x-l16;rate=8000`` (default), ``audio/x-l16;rate=16000``,
        ``audio/x-l16;rate=24000`` or ``audio/x-mulaw;rate=8000``.
    :param extra_headers: ``name=value`` pairs, comma-separated, sent to the WebSocket server.
    :param keep_call_alive: Keep the call up after the stream ends (needs ``bidirectional``).
    :param max_retries: Reconnection attempts when the WebSocket drops.
    """

    tag: ClassVar[str] = "Stream"

    url: str = field(metadata=_content(_stream_url))
    _: KW_ONLY
    bidirectional: bool | None = field(default=None, metadata=_attr("bidirectional", _boolean))
    audio_track: AudioTrack | None = field(
        default=None, metadata=_attr("audioTrack", _choice("inbound", "outbound", "both"))
    )
    stream_timeout: int | None = field(default=None, metadata=_attr("streamTimeout", _integer(1, _DAY)))
    status_callback_url: str | None = field(default=None, metadata=_attr("statusCallbackUrl", _url))
    status_callback_method: HttpMethod | None = field(
        default=None, metadata=_attr("statusCallbackMethod", _method)
    )
    content_type: StreamContentType | None = field(
        default=None,
        metadata=_attr(
            "contentType",
            _choice(
                "audio/x-l16;rate=8000",
                "audio/x-l16;rate=16000",
                "audio/x-l16;rate=24000",
                "audio/x-mulaw;rate=8000",
            ),
        ),
    )
    extra_headers: str | None = field(default=None, metadata=_attr("extraHeaders", _nonempty_text))
    keep_call_alive: bool | None = field(default=None, metadata=_attr("keepCallAlive", _boolean))
    max_retries: int | None = field(default=None, metadata=_attr("maxRetries", _integer(0, 10)))

    def _check(self) -> None:
        super()._check()
        if self.keep_call_alive and not self.bidirectional:
            raise VobizValidationError("<Stream> keepCallAlive needs bidirectional=True")
        if self.status_callback_method is not None and self.status_callback_url is None:
            raise VobizValidationError("<Stream> statusCallbackMethod needs statusCallbackUrl")
