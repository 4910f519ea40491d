"""Vobiz-like callback forms and store helpers for the trigger tests."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import TYPE_CHECKING, Any

from _ledger_helpers import store_callback

from vobiz_provider.triggers.poller import SharedPoller

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

_NONCES = itertools.count(1)


def correlation(task_id: str = "call", try_number: int = 1) -> Any:
    from vobiz_provider.correlation import CorrelationToken

    return CorrelationToken(dag_id="d", run_id="r", task_id=task_id, try_number=try_number)


def new_uuid() -> str:
    return str(uuid.uuid4())


def live_pollers() -> list[SharedPoller]:
    """The running loop's shared pollers, read afresh from the registry on every call.

    Never keep the registry's dict of a loop: a poller whose last subscriber left drops that dict, and the
    next subscriber's poller goes into a new one (a wait on the old dict then never ends).
    """
    return list(SharedPoller._registry.get(asyncio.get_running_loop(), {}).values())


def base_form(*, call_uuid: str, request_uuid: str, to: str, event: str, status: str) -> dict[str, str]:
    return {
        "From": "919000000001",
        "To": to,
        "RequestUUID": request_uuid,
        "ALegRequestUUID": request_uuid,
        "CallUUID": call_uuid,
        "Direction": "outbound",
        "Event": event,
        "CallStatus": status,
        "SessionStart": "2026-11-27 01:00:00.000000",
        "STIRAttestation": "Not Applicable",
    }


def ring_form(**kw: str) -> dict[str, str]:
    return base_form(event="Ring", status="ringing", **kw)


def answer_form(**kw: str) -> dict[str, str]:
    return {**base_form(event="StartApp", status="in-progress", **kw), "ALegUUID": kw["call_uuid"]}


def hangup_form(
    *,
    status: str = "completed",
    code: int = 4000,
    cause: str = "NORMAL_CLEARING",
    name: str = "Normal Hangup",
    source: str = "Callee",
    duration: int = 12,
    **kw: str,
) -> dict[str, str]:
    return {
        **base_form(event="Hangup", status=status, **kw),
        "ALegUUID": kw["call_uuid"],
        "StartTime": "2026-11-27 01:00:00",
        "AnswerTime": "2026-11-27 01:00:02" if status == "completed" else "",
        "EndTime": "2026-11-27 01:00:14",
        "Duration": str(duration),
        "BillDuration": "60" if status == "completed" else "0",
        "HangupCause": cause,
        "HangupCauseCode": str(code),
        "HangupCauseName": name,
        "HangupSource": source,
    }


def deliver(
    store: CallLedger, kind: str, form: dict[str, str], *, task_id: str = "call", bind: bool = True
) -> None:
    """Store a callback the way the receiver does."""
    store_callback(
        store,
        kind,
        form,
        correlation=correlation(task_id),
        replay_keys=(f"nonce-{next(_NONCES)}",),
        bind=bind,
    )
