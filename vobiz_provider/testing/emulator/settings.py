"""Settings of the Vobiz emulator: account, response variants, limits, billing and callback behaviour."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["EmulatorSettings"]


@dataclass(kw_only=True)
class EmulatorSettings:
    """Everything that can be switched on a running emulator (also over ``/_emulator/settings``).

    Where the Vobiz docs contradict each other, each variant is a setting (see the ⚠ marks in the
    reference notes): the success status of ``POST /Call/``, the error body shape and the type of
    ``request_uuid``.

    :param auth_id: The account's Auth ID (``MA_...`` main account, ``SA_...`` sub-account).
    :param auth_token: The account's Auth Token; checked on every API request and used to sign callbacks.
    :param main_account_token: Token of the parent account; when set, callbacks also carry the
        ``X-Vobiz-Signature-MA-V2/V3`` headers (as for a sub-account).
    :param success_status: Status of a successful ``POST /Call/``: 201 (Plivo, real integrations) or
        200 (the docs).
    :param error_shape: ``"flat"`` (``{"api_id", "error": "..."}``, Plivo style) or ``"envelope"``
        (``{"status": "error", "error": {"code", "message", "details"}, "timestamp", "requestId"}``).
    :param request_uuid_shape: ``"str"`` (one request UUID; with several destinations it is shared by
        all their calls) or ``"list"`` (one request UUID per destination).
    :param require_answer_method: Refuse a ``POST /Call/`` without ``answer_method`` with 400, as the
        OpenAPI spec (``required: [from, to, answer_url, answer_method]``), Vobiz's Fern SDK and its n8n mock
        do. Off by default: the Make-a-call page's field table lists it as optional (default ``POST``), and a
        request the real API may accept should not fail here first.
    :param message: The ``message`` of a successful ``POST /Call/``.
    :param cps: Calls per second: ``POST /Call/`` requests accepted in any sliding one-second window.
    :param concurrency: Most calls not yet ended (queued, ringing or in progress) at any time.
    :param retry_after: Seconds sent as ``Retry-After`` on a 429 (``None``: no header).
    :param balance: Account balance; ``POST /Call/`` is refused with 402 when it is below
        ``call_cost`` times the number of destinations. Ended calls are charged from it.
    :param call_cost: Balance a call needs before it is placed (per destination).
    :param rate_per_minute: Price of a billed minute; ``total_cost`` of a call is billsec / 60 times this.
    :param billing_pulse: Billing increment in seconds: ``billsec`` is rounded up to a multiple of it.
    :param currency: Currency of the account.
    :param timezone: The "console" timezone: ``StartTime``/``AnswerTime``/``EndTime`` of callbacks and
        the call object are local times in it.
    :param session_start_format: ``SessionStart`` of callbacks as the reference notes show it (``"plain"``,
        ``2026-12-02 21:22:36.000000``) or as the Make-a-call page prints it (``"utc-suffix"``,
        ``2026-12-02 21:22:36.000000 UTC``).
    :param sign_callbacks: When to send ``X-Vobiz-Signature-V2/V3`` headers on callbacks and XML fetches:
        ``"credentials"`` (as Vobiz: only to URLs that carry ``user:password@``), ``"always"`` or
        ``"never"``. ``True`` and ``False`` are read as ``"always"`` and ``"never"``.
    :param signed_url_form: The URL a signature covers: ``"stripped"`` (without ``user:password@``, as
        Vobiz's Node, Go and Ruby samples verify) or ``"kept"`` (with it, as its Python sample and
        ``vobiz-python``'s validators do). Default ``"stripped"``: three of Vobiz's four samples verify that
        form, and a receiver that only accepts the other one fails loudly here. Vobiz does not say which it
        signs; the provider's receiver accepts both.
    :param callback_timeout: Seconds Vobiz waits for a callback or XML URL to answer (3 s documented).
    :param callback_retries: Retries after a failed callback (non-200 answer or no answer at all).
    :param callback_backoff: First retry delay in seconds; doubled on every further retry.
    :param answer_retries: Retries of ``answer_url`` (and of ``fallback_url``) before giving up.
    :param max_xml_bytes: Largest XML document accepted (100 KB documented).
    :param default_ring_timeout: Seconds a call rings before Vobiz gives up (120 s documented).
    :param default_time_limit: Longest answered call in seconds (14400 s documented).
    :param time_scale: Factor applied to durations that come from the request or the XML
        (``ring_timeout``, ``hangup_on_ring``, ``time_limit``, ``<Wait length>``, ``<Gather>`` timeouts,
        ``<Hangup schedule>``), so a test can use ``ring_timeout=30`` and wait 0.3 s with ``0.01``.
        Script timings (:class:`~vobiz_provider.testing.emulator.script.CallScript`) are never scaled.
    :param queued_list_limit: Most UUIDs in ``GET /Call/?status=queued`` (20 documented).
    :param region: ``region`` of CDRs.
    :param recording_base_url: Where the recordings of ``<Record>`` are said to be (``RecordUrl`` is
        ``{recording_base_url}/{auth_id}/{RecordingID}.{mp3|wav}``); nothing is served there.
    """

    auth_id: str = "MA_EMULATOR1"
    auth_token: str = "emulator-auth-token"  # a test credential
    main_account_token: str | None = None
    success_status: Literal[200, 201] = 201
    error_shape: Literal["flat", "envelope"] = "flat"
    request_uuid_shape: Literal["str", "list"] = "str"
    message: str = "Call fired"
    require_answer_method: bool = False
    cps: int = 10
    concurrency: int = 10
    retry_after: float | None = None
    balance: float = 1000.0
    call_cost: float = 1.0
    rate_per_minute: float = 0.6
    billing_pulse: int = 60
    currency: str = "INR"
    timezone: str = "Asia/Kolkata"
    session_start_format: Literal["plain", "utc-suffix"] = "plain"
    sign_callbacks: Literal["credentials", "always", "never"] = "credentials"
    signed_url_form: Literal["stripped", "kept"] = "stripped"
    callback_timeout: float = 3.0
    callback_retries: int = 3
    callback_backoff: float = 0.2
    answer_retries: int = 3
    max_xml_bytes: int = 100 * 1024
    default_ring_timeout: float = 120.0
    default_time_limit: float = 14400.0
    time_scale: float = 1.0
    queued_list_limit: int = 20
    region: str = "ap-south-1"
    recording_base_url: str = "https://recordings.vobiz-emulator.invalid"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the values; raises ``ValueError`` naming the setting."""
        if self.success_status not in (200, 201):
            raise ValueError(f"success_status: must be 200 or 201, got {self.success_status!r}")
        if self.error_shape not in ("flat", "envelope"):
            raise ValueError(f"error_shape: must be 'flat' or 'envelope', got {self.error_shape!r}")
        if self.request_uuid_shape not in ("str", "list"):
            raise ValueError(f"request_uuid_shape: must be 'str' or 'list', got {self.request_uuid_shape!r}")
        if not isinstance(self.require_answer_method, bool):
            raise ValueError(
                f"require_answer_method: must be true or false, got {self.require_answer_method!r}"
            )
        if isinstance(self.sign_callbacks, bool):
            self.sign_callbacks = "always" if self.sign_callbacks else "never"
        if self.sign_callbacks not in ("credentials", "always", "never"):
            raise ValueError(
                f"sign_callbacks: must be 'credentials', 'always' or 'never', got {self.sign_callbacks!r}"
            )
        if self.signed_url_form not in ("stripped", "kept"):
            raise ValueError(f"signed_url_form: must be 'stripped' or 'kept', got {self.signed_url_form!r}")
        if self.session_start_format not in ("plain", "utc-suffix"):
            raise ValueError(
                f"session_start_format: must be 'plain' or 'utc-suffix', got {self.session_start_format!r}"
            )
        for name in ("cps", "concurrency", "billing_pulse", "queued_list_limit"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)!r}")
        for name in ("callback_retries", "answer_retries"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)!r}")
        if self.time_scale < 0:
            raise ValueError(f"time_scale: must not be negative, got {self.time_scale!r}")
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(self.timezone)
        except Exception:
            raise ValueError(f"timezone: unknown timezone {self.timezone!r}") from None

    @classmethod
    def names(cls) -> list[str]:
        """The public setting names."""
        return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]

    def update(self, **changes: Any) -> None:
        """Change settings in place (validated; unknown names raise ``ValueError``)."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown emulator setting(s): {', '.join(unknown)}")
        before = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            self.validate()
        except ValueError:
            for name, value in before.items():
                setattr(self, name, value)
            raise

    def public_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values, tokens redacted."""
        data = {name: getattr(self, name) for name in self.names()}
        data["auth_token"] = "***"
        if data["main_account_token"] is not None:
            data["main_account_token"] = "***"
        return data
