"""What the emulator says about a call: callback forms for the application and JSON for the API.

Pure functions of an :class:`~vobiz_provider.testing.EmulatedCall` and the
:class:`~vobiz_provider.testing.EmulatorSettings`; no state. Callback forms are built with the shared
models of :mod:`vobiz_provider.models.callbacks`, so they cannot drift from what the receiver parses.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from vobiz_provider.models.callbacks import (
    AnswerCallback,
    DialActionCallback,
    DialCallback,
    GatherCallback,
    HangupCallback,
    MachineDetectionCallback,
    RecordActionCallback,
    RecordCallback,
    RingCallback,
    VobizCallback,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from vobiz_provider.testing.emulator.settings import EmulatorSettings
    from vobiz_provider.testing.emulator.state import EmulatedCall

__all__ = [
    "answer_fields",
    "api_id",
    "billed_seconds",
    "cdr",
    "dial_action_fields",
    "dial_event_fields",
    "finished_call",
    "gather_fields",
    "hangup_fields",
    "iso",
    "listed_call",
    "live_call",
    "machine_detection_fields",
    "queued_call",
    "record_action_fields",
    "record_stop_fields",
    "redirect_fields",
    "ring_fields",
    "transfer_fields",
]


def api_id() -> str:
    """A fresh ``api_id`` for an API response."""
    return str(uuid.uuid4())


def iso(value: datetime | None) -> str | None:
    """``value`` as an ISO 8601 UTC timestamp with milliseconds and ``Z`` (``None`` stays ``None``)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _local_formatter(zone_name: str) -> Callable[[datetime | None], str | None]:
    zone = ZoneInfo(zone_name)

    def render(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    return render


def billed_seconds(call: EmulatedCall, settings: EmulatorSettings) -> int:
    """Talk seconds rounded up to the billing pulse (0 when never answered)."""
    talk = call.talk_seconds
    pulse = settings.billing_pulse
    return 0 if talk <= 0 else math.ceil(talk / pulse) * pulse


# ====================================================================== callback forms


def _common(call: EmulatedCall) -> dict[str, Any]:
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


def _session_start(form: dict[str, str], settings: EmulatorSettings) -> dict[str, str]:
    """``form`` with ``SessionStart`` spelt as ``settings.session_start_format`` says."""
    if settings.session_start_format == "utc-suffix" and form.get("SessionStart"):
        form["SessionStart"] += " UTC"
    return form


def ring_fields(call: EmulatedCall, settings: EmulatorSettings) -> dict[str, str]:
    """Form fields of the Ring callback."""
    return _session_start(RingCallback(**_common(call)).to_form(timezone=settings.timezone), settings)


def answer_fields(call: EmulatedCall, settings: EmulatorSettings) -> dict[str, str]:
    """Form fields of the answer (``StartApp``) request."""
    extra: dict[str, Any] = {"a_leg_uuid": call.call_uuid, "STIRVerification": "Not Applicable"}
    if call.request.caller_name:
        extra["caller_name"] = call.request.caller_name
    return _session_start(
        AnswerCallback(**_common(call), **extra).to_form(timezone=settings.timezone), settings
    )


def machine_detection_fields(call: EmulatedCall, settings: EmulatorSettings) -> dict[str, str]:
    """Form fields of the MachineDetection callback."""
    common = _common(call)
    del common["session_start"], common["stir_attestation"]
    return MachineDetectionCallback(
        **common,
        a_leg_uuid=call.call_uuid,
        machine=bool(call.machine),
        if_machine="hangup" if call.request.machine_detection == "hangup" else "continue",
    ).to_form(timezone=settings.timezone)


def gather_fields(
    call: EmulatedCall,
    settings: EmulatorSettings,
    *,
    input_type: str,
    digits: str | None,
    speech: str | None,
) -> dict[str, str]:
    """Form fields posted to a ``<Gather>`` action URL."""
    return GatherCallback(
        **_common(call),
        a_leg_uuid=call.call_uuid,
        call_status="in-progress",
        input_type=input_type,
        digits=digits or "",
        speech=speech or "",
        speech_confidence_score=0.95 if speech else 0.0,
        billed_amount="0.00",
    ).to_form(timezone=settings.timezone)


def redirect_fields(call: EmulatedCall, settings: EmulatorSettings) -> dict[str, str]:
    """Form fields of a ``<Redirect>`` request (``Event=Redirect``)."""
    return VobizCallback(
        call_uuid=call.call_uuid,
        from_number=call.from_number,
        to=call.to,
        event="Redirect",
        caller_name=call.request.caller_name or "",
        direction="outbound",
        call_status=call.status,
    ).to_form(timezone=settings.timezone)


def transfer_fields(call: EmulatedCall, settings: EmulatorSettings) -> dict[str, str]:
    """Form fields sent to a transfer URL (the standard call parameters, ``Event=Transfer``)."""
    return VobizCallback(
        **_common(call),
        a_leg_uuid=call.call_uuid,
        event="Transfer",
        call_status=call.status,
    ).to_form(timezone=settings.timezone)


def dial_event_fields(
    call: EmulatedCall, settings: EmulatorSettings, *, event: str, b_leg: dict[str, Any]
) -> dict[str, str]:
    """Form fields of one ``<Dial callbackUrl>`` event (``DialAnswer``, ``DialConnected``, ``DialHangup``).

    :param event: The event name.
    :param b_leg: The B leg: ``uuid``, ``to``, ``from``, and once it ended ``duration``, ``cause_code``,
        ``cause``, ``cause_name``, ``source``.
    """
    action = {"DialAnswer": "answer", "DialConnected": "connected", "DialHangup": "hangup"}[event]
    fields: dict[str, Any] = {
        **_common(call),
        "a_leg_uuid": call.call_uuid,
        "event": event,
        "call_status": call.status,
        "dial_action": action,
        "dial_a_leg_uuid": call.call_uuid,
        "dial_b_leg_uuid": b_leg["uuid"],
        "dial_b_leg_from": b_leg["from"],
        "dial_b_leg_to": b_leg["to"],
        "dial_b_leg_status": action,
    }
    if event == "DialHangup":
        fields.update(
            dial_b_leg_duration=b_leg["duration"],
            dial_b_leg_bill_duration=b_leg["duration"],
            dial_b_leg_hangup_cause=b_leg["cause"],
            dial_b_leg_hangup_cause_code=b_leg["cause_code"],
            dial_b_leg_hangup_cause_name=b_leg["cause_name"],
            dial_b_leg_hangup_source=b_leg["source"],
        )
    return DialCallback(**fields).to_form(timezone=settings.timezone)


def dial_action_fields(
    call: EmulatedCall,
    settings: EmulatorSettings,
    *,
    dial_status: str,
    rang: bool,
    hangup_cause: str,
    b_leg_uuid: str | None,
) -> dict[str, str]:
    """Form fields posted to a ``<Dial action>`` once the B leg ended."""
    return DialActionCallback(
        **_common(call),
        a_leg_uuid=call.call_uuid,
        event="Redirect",
        call_status=call.status,
        dial_status=dial_status,
        dial_ring_status=rang,
        dial_hangup_cause=hangup_cause,
        dial_a_leg_uuid=call.call_uuid,
        dial_b_leg_uuid=b_leg_uuid or "",
    ).to_form(timezone=settings.timezone)


def _recording(recording: dict[str, Any]) -> dict[str, Any]:
    return {
        "recording_id": recording["id"],
        "record_url": recording["url"],
        "recording_duration": recording["duration_ms"] // 1000,
        "recording_duration_ms": recording["duration_ms"],
        "recording_start_ms": recording["start_ms"],
        "recording_end_ms": recording["end_ms"],
    }


def record_action_fields(
    call: EmulatedCall, settings: EmulatorSettings, *, recording: dict[str, Any]
) -> dict[str, str]:
    """Form fields posted to a ``<Record action>``.

    :param recording: ``id``, ``url``, ``duration_ms``, ``start_ms``, ``end_ms`` and ``end_reason``.
    """
    return RecordActionCallback(
        **_common(call), a_leg_uuid=call.call_uuid, call_status=call.status, **_recording(recording)
    ).to_form(timezone=settings.timezone)


def record_stop_fields(
    call: EmulatedCall, settings: EmulatorSettings, *, recording: dict[str, Any]
) -> dict[str, str]:
    """Form fields posted to a ``<Record callbackUrl>`` when the file is ready (``Event=RecordStop``)."""
    return RecordCallback(
        **_common(call),
        a_leg_uuid=call.call_uuid,
        call_status=call.status,
        **_recording(recording),
        recording_end_reason=recording["end_reason"],
    ).to_form(timezone=settings.timezone)


def hangup_fields(call: EmulatedCall, settings: EmulatorSettings) -> dict[str, str]:
    """Form fields of the Hangup callback (the Plivo superset)."""
    fields: dict[str, Any] = {
        **_common(call),
        "a_leg_uuid": call.call_uuid,
        "call_status": call.status,
        "start_time": call.created_at,
        "answer_time": call.answer_at,
        "end_time": call.end_at,
        "duration": call.talk_seconds,
        "bill_duration": billed_seconds(call, settings),
        "bill_rate": f"{settings.rate_per_minute:.5f}",
        "total_cost": f"{call.total_cost:.5f}",
        "hangup_cause": call.hangup_cause,
        "hangup_cause_code": call.hangup_cause_code,
        "hangup_cause_name": call.hangup_cause_name,
        "hangup_source": call.hangup_source,
        # both spellings: STIRVerification (Plivo) and stir_verification (the make-call doc table)
        "STIRVerification": "Not Applicable",
        "stir_verification": "Not Applicable",
    }
    if settings.main_account_token is not None:
        fields["parent_auth_id"] = "MA_PARENT0001"
    return _session_start(HangupCallback(**fields).to_form(timezone=settings.timezone), settings)


# ====================================================================== API JSON


def live_call(call: EmulatedCall) -> dict[str, Any]:
    """``GET /Call/{uuid}/?status=live``: a call in progress."""
    return {
        "api_id": api_id(),
        "call_status": call.status,
        "call_uuid": call.call_uuid,
        "caller_name": call.request.caller_name or "",
        "direction": "outbound",
        "from": call.from_number,
        "request_uuid": call.request_uuid,
        "session_start": (call.ring_at or call.created_at).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "stir_attestation": "Not Applicable",
        "stir_verification": "Not Applicable",
        "to": call.to,
    }


def queued_call(call: EmulatedCall) -> dict[str, Any]:
    """``GET /Call/{uuid}/?status=queued``: a call not yet answered."""
    return {
        "api_id": api_id(),
        "call_status": "queued",
        "call_uuid": call.call_uuid,
        "request_uuid": call.request_uuid,
        "caller_name": call.request.caller_name or "",
        "direction": "outbound",
        "from": call.from_number,
        "to": call.to,
    }


def listed_call(call: EmulatedCall) -> dict[str, Any]:
    """One item of the older Plivo-style ``GET /Call/`` listing."""
    return {
        "call_uuid": call.call_uuid,
        "from": call.from_number,
        "to": call.to,
        "status": call.status,
        "duration": call.talk_seconds,
        "created_at": iso(call.created_at),
    }


def finished_call(call: EmulatedCall, settings: EmulatorSettings) -> dict[str, Any]:
    """The finalised call: the Call object of the current docs plus the old docs' fields."""
    local = _local_formatter(settings.timezone)
    billsec = billed_seconds(call, settings)
    return {
        "api_id": api_id(),
        "answer_time": local(call.answer_at),
        "bill_duration": billsec,
        "billed_duration": billsec,
        "call_direction": "outbound",
        "call_duration": call.talk_seconds,
        "call_uuid": call.call_uuid,
        "end_time": local(call.end_at),
        "from_number": call.from_number,
        "hangup_cause_code": call.hangup_cause_code,
        "hangup_cause_name": call.hangup_cause_name,
        "hangup_source": call.hangup_source,
        "initiation_time": local(call.created_at),
        "parent_call_uuid": None,
        "resource_uri": f"/api/v1/Account/{settings.auth_id}/Call/{call.call_uuid}/",
        "source_ip": None,
        "stir_verification": "Not Applicable",
        "to_number": call.to,
        "total_amount": f"{call.total_cost:.5f}",
        "total_rate": f"{settings.rate_per_minute:.5f}",
        # the older docs' shape
        "request_uuid": call.request_uuid,
        "from": call.from_number,
        "to": call.to,
        "status": call.status,
        "direction": "outbound",
        "duration": call.talk_seconds,
        "billed_duration_seconds": billsec,
        "call_rate": f"{settings.rate_per_minute:.5f}",
        "total_cost": f"{call.total_cost:.5f}",
        "created_at": iso(call.created_at),
        "answered_at": iso(call.answer_at),
    }


def cdr(call: EmulatedCall, settings: EmulatorSettings) -> dict[str, Any]:
    """The CDR of an ended call (``uuid`` = CallUUID)."""
    billsec = billed_seconds(call, settings)
    ring_time = call.ring_seconds
    return {
        "account_id": settings.auth_id,
        "answer_time": iso(call.answer_at),
        "billsec": billsec,
        "bridge_uuid": None,
        "call_direction": "outbound",
        "caller_id_name": call.request.caller_name or "",
        "caller_id_number": call.from_number,
        "campaign_id": None,
        "carrier_ip": "127.0.0.1",
        "codec": "PCMU",
        "context": "api",
        "cost": f"{call.total_cost:.5f}",
        "created_at": iso(call.created_at),
        "currency": settings.currency,
        "customer_endpoint": None,
        "destination_number": call.to,
        "duration": ring_time + billsec,
        "end_time": iso(call.end_at),
        "failure_code": None if call.answer_at else call.hangup_cause_code,
        "failure_reason": None if call.answer_at else call.hangup_cause_name,
        "hangup_cause": call.hangup_cause,
        "hangup_cause_code": call.hangup_cause_code,
        "hangup_cause_name": call.hangup_cause_name,
        "hangup_disposition": "send_bye"
        if call.hangup_source in ("Vobiz", "API Request", "Error")
        else "recv_bye",
        "hangup_source": call.hangup_source,
        "id": call.cdr_id,
        "jitter": 0.0,
        "mos": 4.4 if call.answer_at else None,
        "network_addr": "127.0.0.1",
        "origination_region": "mumbai",
        "packet_loss": 0.0,
        "progress_time": iso(call.ring_at),
        "region": settings.region,
        "ring_time": ring_time,
        "sip_call_id": f"{call.call_uuid}@emulator",
        "sip_user_agent": "vobiz-emulator",
        "start_time": iso(call.created_at),
        "streaming_cost": "0.00000",
        "terminated_to": call.to,
        "total_cost": f"{call.total_cost:.5f}",
        "trunk_id": None,
        "updated_at": iso(call.end_at),
        "uuid": call.call_uuid,
        "status": call.status,
    }
