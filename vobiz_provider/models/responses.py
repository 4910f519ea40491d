"""Models of Vobiz's response bodies (its error bodies are in :mod:`vobiz_provider.models.errors`).

Vobiz adds fields without notice, so every model keeps unknown fields (``extra="allow"``), except
:class:`Account`, which carries credentials: a field Vobiz adds to it might be one more secret, so it keeps
only what it declares. None requires more than it must. Where the docs show two shapes (bulk
``request_uuid`` as a list, the live call as a flat object or a Plivo-style ``calls`` list) both are
accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# pydantic reads these annotations at runtime (pyproject: runtime-evaluated-base-classes).
from vobiz_provider.models._types import (
    LenientDecimal,
    LenientFloat,
    LenientInt,
    UtcDateTime,
    UtcSessionTime,
)

__all__ = [
    "Account",
    "CallFiredResponse",
    "CallUuidList",
    "Cdr",
    "CdrEnvelope",
    "CdrPage",
    "CdrPagination",
    "CdrSummary",
    "ConcurrencyInfo",
    "LiveCall",
    "QueuedCall",
]


class VobizResponse(BaseModel):
    """Base of every response model: unknown fields are kept, names or aliases both accepted."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class CallFiredResponse(VobizResponse):
    """Body of a successful ``POST /Call/``.

    :param api_id: Vobiz's id of the API request.
    :param message: ``"Call fired"`` (or ``"call fired"``; compare with :attr:`is_call_fired`).
    :param request_uuid: One UUID, or a list of UUIDs for a bulk (``<``) dial.
    """

    api_id: str | None = None
    message: str | None = None
    request_uuid: str | list[str]

    @property
    def request_uuids(self) -> list[str]:
        """The request UUID(s) as a list, whatever shape Vobiz used."""
        if isinstance(self.request_uuid, str):
            return [self.request_uuid]
        return list(self.request_uuid)

    @property
    def is_call_fired(self) -> bool:
        """Whether ``message`` says "call fired" (case-insensitively)."""
        return (self.message or "").strip().lower() == "call fired"


class CallUuidList(VobizResponse):
    """``GET /Call/?status=live|queued``: the UUIDs of live or queued calls.

    :param api_id: Vobiz's id of the API request.
    :param calls: Call UUIDs.
    """

    api_id: str | None = None
    calls: list[str] = Field(default_factory=list)

    @field_validator("calls", mode="before")
    @classmethod
    def _uuids_only(cls, value: Any) -> Any:
        # Tolerate a Plivo-style list of objects by taking their call_uuid.
        if isinstance(value, list):
            return [item.get("call_uuid") if isinstance(item, dict) else item for item in value]
        return [] if value is None else value


_PLIVO_LIVE_RENAMES = {
    "call_state": "call_status",
    "from_number": "from",
    "to_number": "to",
    "call_direction": "direction",
}
_CALL_STATE_TO_STATUS = {"ACTIVE": "in-progress", "RINGING": "ringing", "EARLY MEDIA": "ringing"}


class LiveCall(VobizResponse):
    """``GET /Call/{uuid}/?status=live``: a call in progress.

    The flat OpenAPI shape is the model; the Plivo-style ``{"api_id", "calls": [{call_uuid, call_state,
    from_number, to_number, ...}]}`` is normalised into it (``call_state`` ``ACTIVE`` → ``in-progress``).

    :param api_id: Vobiz's id of the API request.
    :param call_status: ``in-progress`` (or ``ringing``).
    :param call_uuid: The call UUID.
    :param caller_name: Caller name.
    :param direction: ``outbound`` or ``inbound``.
    :param from_number: Caller ID (``from``).
    :param request_uuid: Request UUID (same as the call UUID).
    :param session_start: When early media started (UTC).
    :param stir_attestation: STIR/SHAKEN attestation.
    :param stir_verification: ``Verified``, ``Not Verified`` or ``Not Applicable``.
    :param to: The destination.
    """

    api_id: str | None = None
    call_status: str | None = None
    call_uuid: str | None = None
    caller_name: str | None = None
    direction: str | None = None
    from_number: str | None = Field(default=None, alias="from")
    request_uuid: str | None = None
    session_start: UtcSessionTime = None
    stir_attestation: str | None = None
    stir_verification: str | None = None
    to: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten_plivo_shape(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "call_uuid" in data:
            return data
        calls = data.get("calls")
        if not isinstance(calls, list) or not calls or not isinstance(calls[0], Mapping):
            return data
        flat: dict[str, Any] = {key: value for key, value in data.items() if key != "calls"}
        for key, value in calls[0].items():
            target = _PLIVO_LIVE_RENAMES.get(key) or key
            flat.setdefault(target, value)
            if target != key and key not in cls.model_fields:
                flat.setdefault(key, value)  # keep the Plivo name too, as an extra field
        state = flat.get("call_status")
        if isinstance(state, str) and state.upper() in _CALL_STATE_TO_STATUS:
            flat["call_status"] = _CALL_STATE_TO_STATUS[state.upper()]
        return flat


class QueuedCall(VobizResponse):
    """``GET /Call/{uuid}/?status=queued``: a call placed but not yet answered (ringing included).

    :param api_id: Vobiz's id of the API request.
    :param call_status: ``queued``.
    :param call_uuid: The call UUID.
    :param request_uuid: Request UUID.
    :param caller_name: Caller name.
    :param direction: ``outbound``.
    :param from_number: Caller ID (``from``).
    :param to: The destination.
    """

    api_id: str | None = None
    call_status: str = "queued"
    call_uuid: str | None = None
    request_uuid: str | None = None
    caller_name: str | None = None
    direction: str | None = None
    from_number: str | None = Field(default=None, alias="from")
    to: str | None = None


class Cdr(VobizResponse):
    """A call detail record (``GET /cdr/{uuid}``, items of ``GET /cdr``); exists once the call ended.

    Times are ISO-8601 UTC, held as pendulum ``DateTime``; numbers may arrive as strings.

    :param uuid: The call UUID (pass this to ``/cdr/{uuid}``, not :attr:`id`).
    :param id: Vobiz's numeric row id.
    :param hangup_cause: Textual SIP cause, e.g. ``NORMAL_CLEARING``.
    :param hangup_cause_code: Vobiz cause code, e.g. ``4000``.
    :param hangup_cause_name: Human name, e.g. ``Normal Hangup``.
    :param hangup_source: ``Caller``, ``Callee``, ``API Request``, ...
    :param duration: Seconds, ring time included.
    :param billsec: Billed talk seconds (rounded up to the billing pulse).
    :param total_cost: Total cost in :attr:`currency`.
    """

    account_id: str | None = None
    answer_time: UtcDateTime = None
    billsec: LenientInt = None
    bridge_uuid: str | None = None
    call_direction: str | None = None
    caller_id_name: str | None = None
    caller_id_number: str | None = None
    campaign_id: str | None = None
    carrier_ip: str | None = None
    codec: str | None = None
    context: str | None = None
    cost: LenientDecimal = None
    created_at: UtcDateTime = None
    currency: str | None = None
    customer_endpoint: str | None = None
    destination_number: str | None = None
    duration: LenientInt = None
    end_time: UtcDateTime = None
    failure_code: str | int | None = None
    failure_reason: str | None = None
    hangup_cause: str | None = None
    hangup_cause_code: LenientInt = None
    hangup_cause_name: str | None = None
    hangup_disposition: str | None = None
    hangup_source: str | None = None
    id: int | str | None = None
    jitter: LenientFloat = None
    mos: LenientFloat = None
    network_addr: str | None = None
    origination_region: str | None = None
    packet_loss: LenientFloat = None
    progress_time: UtcDateTime = None
    region: str | None = None
    ring_time: LenientInt = None
    sip_call_id: str | None = None
    sip_user_agent: str | None = None
    start_time: UtcDateTime = None
    streaming_cost: LenientDecimal = None
    terminated_to: str | None = None
    total_cost: LenientDecimal = None
    trunk_id: str | None = None
    updated_at: UtcDateTime = None
    uuid: str | None = None

    @field_validator("progress_time", mode="wrap")
    @classmethod
    def _progress_time_lenient(cls, value: Any, handler: Any) -> Any:
        # The docs do not say whether progress_time is a time or a number of seconds: keep what
        # cannot be read as a time instead of refusing the whole record.
        try:
            return handler(value)
        except ValueError:
            return None

    @property
    def call_uuid(self) -> str | None:
        """The call UUID (``uuid``)."""
        return self.uuid


class CdrEnvelope(VobizResponse):
    """``GET /cdr/{uuid}``: ``{"data": {...}, "success": true}``.

    :param data: The record.
    :param success: Vobiz's success flag.
    """

    data: Cdr
    success: bool | None = None


class CdrPagination(VobizResponse):
    """Pagination block of ``GET /cdr``.

    :param page: Current page (1-based).
    :param per_page: Items per page.
    :param total: Total matching items.
    :param pages: Total pages.
    :param has_next: Whether a next page exists.
    :param has_prev: Whether a previous page exists.
    """

    page: LenientInt = None
    per_page: LenientInt = None
    total: LenientInt = None
    pages: LenientInt = None
    has_next: bool | None = None
    has_prev: bool | None = None


class CdrSummary(VobizResponse):
    """Summary block of ``GET /cdr`` (Vobiz mixes camelCase and snake_case here).

    :param total_calls: ``totalCalls``.
    :param answered_calls: ``answeredCalls``.
    :param answer_rate: ``answerRate``.
    :param avg_call_duration: ``avgCallDuration``, a display string such as ``"28s"``.
    :param total_duration_seconds: Sum of durations.
    :param total_billable_seconds: Sum of billed seconds.
    :param total_cost: Sum of costs.
    :param last_call_at: Time of the last call.
    """

    total_calls: LenientInt = Field(default=None, alias="totalCalls")
    answered_calls: LenientInt = Field(default=None, alias="answeredCalls")
    answer_rate: float | str | None = Field(default=None, alias="answerRate")
    avg_call_duration: str | int | float | None = Field(default=None, alias="avgCallDuration")
    total_duration_seconds: LenientInt = None
    total_billable_seconds: LenientInt = None
    total_cost: LenientDecimal = None
    last_call_at: UtcDateTime = None


class CdrPage(VobizResponse):
    """``GET /cdr``: one page of call records.

    :param account_id: The account.
    :param count: Items on this page.
    :param data: The records.
    :param pagination: Page numbers.
    :param summary: Aggregates over the whole match.
    :param success: Vobiz's success flag.
    """

    account_id: str | None = None
    count: LenientInt = None
    data: list[Cdr] = Field(default_factory=list)
    pagination: CdrPagination | None = None
    summary: CdrSummary | None = None
    success: bool | None = None


class Account(VobizResponse):
    """``GET /auth/me``: the account of the credentials (the documented credential check).

    ``auth_secret`` (and ``auth_token``, should Vobiz ever send it) are :class:`~pydantic.SecretStr`,
    hidden from ``repr``/``str`` and left out of ``model_dump``/``model_dump_json``. Unlike the other
    responses, fields it does not declare are dropped (``extra="ignore"``): one Vobiz adds later, such as a
    ``sub_auth_token``, would otherwise show in ``repr`` and ``model_dump``.

    :param auth_id: ``MA_...`` or ``SA_...``.
    :param name: Account name.
    :param timezone: Account timezone (the timezone of callback local times).
    :param cps_limit: Calls per second allowed.
    :param concurrent_calls_limit: Simultaneous calls allowed.
    :param auth_secret: Secret; never shown.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    type: str | None = None
    id: str | int | None = None
    api_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    description: str | None = None
    auth_id: str | None = None
    auth_secret: SecretStr | None = Field(default=None, repr=False, exclude=True)
    auth_token: SecretStr | None = Field(default=None, repr=False, exclude=True)
    auth_token_expire_time: str | None = None
    country: str | None = None
    timezone: str | None = None
    city: str | None = None
    state: str | None = None
    address: str | None = None
    zip_code: str | None = None
    company: str | None = None
    account_type: str | None = None
    postpaid: bool | None = None
    auto_recharge: bool | None = None
    auto_recharge_config: Any = None
    enabled: bool | None = None
    carrier_type: str | None = None
    customer_type: str | None = None
    credit_limit: LenientDecimal = None
    cps_limit: LenientInt = None
    concurrent_calls_limit: LenientInt = None
    base_cps_limit: LenientInt = None
    base_concurrent_calls_limit: LenientInt = None
    purchased_cps: LenientInt = None
    purchased_concurrent_calls: LenientInt = None
    risk_rating: Any = None
    risk_status: Any = None
    features: dict[str, Any] | None = None
    ip_auth_enabled: bool | None = None
    ip_whitelist_rules: Any = None
    allow_aws_ips: bool | None = None
    role: str | None = None
    is_active: bool | None = None
    is_verified: bool | None = None
    is_trial_account: bool | None = None
    created_at: UtcDateTime = None
    updated_at: UtcDateTime = None
    last_login: UtcDateTime = None
    pricing_tier_id: str | int | None = None
    pricing_tier: dict[str, Any] | None = None

    @field_validator("created_at", "updated_at", "last_login", mode="wrap")
    @classmethod
    def _lenient_time(cls, value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValueError:
            return None


class ConcurrencyInfo(VobizResponse):
    """``GET /Account/{auth_id}/concurrency``: current simultaneous calls.

    :param account_id: The account.
    :param concurrent_calls: Calls up now.
    :param max_concurrent: The limit.
    :param utilization_pct: ``concurrent_calls / max_concurrent`` in percent.
    :param request_id: Vobiz's request id.
    """

    account_id: str | None = None
    concurrent_calls: LenientInt = None
    max_concurrent: LenientInt = None
    utilization_pct: LenientFloat = None
    request_id: str | None = None
