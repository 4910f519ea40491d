"""The one way a call is placed, by the operator and by the notifier alike.

Placing a call takes these steps, in this order:

1. find the receiver's public root (the connection's ``callback_base_url`` extra, else ``[vobiz]``'s);
2. sign one correlation token per receiver URL, for the task instance and try that places the call: each
   opens only its own route and expires when Vobiz can no longer call it
   (:func:`~vobiz_provider.correlation.token_lifetime` of the call's ring timeout and time limit);
3. point ``answer_url`` at the receiver when the call says something (``message``/``gather``), and the
   callback URLs the user left empty (hangup, ring, machine detection);
4. open the try's placement in the ledger (so the receiver binds callbacks to this try's calls, and a retry
   knows this try may have dialled) and store what the call says — before dialling, since Vobiz calls back
   as soon as the phone rings;
5. ``POST /Call/``;
6. record the fired calls in the ledger: from then on their callbacks, and no others, are stored for this
   try; the wait and a later retry find them.

:meth:`CallPlacer.plan` does steps 1-3 that need no I/O but the configuration (validating everything before
anything is stored or sent); :meth:`CallPlacer.place` (or its asyncio twin :meth:`CallPlacer.aplace`) does
the rest. The URLs carry the token, so they are attached with ``model_copy`` after validation: no
validation message can ever quote a token.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Protocol

from vobiz_provider.calls.pacing import SharedCallPacer
from vobiz_provider.config import get_settings, resolve_callback_base_url
from vobiz_provider.correlation import KINDS_OF_URL, callback_url, token_lifetime
from vobiz_provider.exceptions import VobizError, VobizValidationError
from vobiz_provider.ledger import get_ledger
from vobiz_provider.phone_masking import masked_number, masked_numbers

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vobiz_provider.config import VobizSettings
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.hooks.vobiz import VobizHook
    from vobiz_provider.ledger import PlacementLedger
    from vobiz_provider.models.answer import AnswerSpec
    from vobiz_provider.models.call import MakeCallRequest
    from vobiz_provider.models.responses import CallFiredResponse

__all__ = ["ROUTED_KINDS", "CallPlacer", "PlacedCall", "Placement"]

#: The callback URLs pointed at the receiver when the user left them empty (machine detection only when on).
ROUTED_KINDS: Final = ("hangup", "ring", "machine-detection")

_URL_FIELD: Final = {"hangup": "hangup_url", "ring": "ring_url", "machine-detection": "machine_detection_url"}


class _Log(Protocol):
    def info(self, msg: str, /, *args: Any) -> Any: ...

    def warning(self, msg: str, /, *args: Any) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class Placement:
    """A call ready to be placed (:meth:`CallPlacer.plan`).

    :param request: The request as it will be sent (receiver URLs attached).
    :param correlation: The task instance and try placing it (``None``: nothing goes to the receiver).
    :param spec: What the receiver speaks when the call is answered, if anything.
    :param callback_base_url: The receiver root its URLs point at (``None``: callbacks are off).
    :param routed: The callback kinds pointed at the receiver.
    :param register: Record the fired calls in the ledger once Vobiz accepted the request (always when
        the request carries receiver URLs: the receiver stores callbacks of recorded calls only).
    :param expires_at: When its receiver URLs expire, in seconds since the epoch (``None``: it has none).
    """

    request: MakeCallRequest
    correlation: CorrelationToken | None
    spec: AnswerSpec | None
    callback_base_url: str | None
    routed: tuple[str, ...]
    register: bool
    expires_at: float | None = None

    @property
    def receiver_hears_hangup(self) -> bool:
        """Whether the hangup callback reaches the receiver (else the wait asks the Vobiz API)."""
        return "hangup" in self.routed


@dataclass(frozen=True, kw_only=True)
class PlacedCall:
    """A call Vobiz accepted (:meth:`CallPlacer.place`).

    :param placement: What was sent.
    :param response: Vobiz's answer.
    """

    placement: Placement
    response: CallFiredResponse

    @property
    def request_uuids(self) -> list[str]:
        """One request UUID per destination, or one for all of them."""
        return list(self.response.request_uuids)

    @property
    def destinations(self) -> list[str]:
        """The destinations, in the order of the request's ``to``."""
        return list(self.placement.request.destinations)


class CallPlacer:
    """Places calls through one Vobiz connection (see the module docstring).

    :param hook: The Vobiz hook of the connection (its configuration and client).
    :param log: Where to log what happens (the task's logger).
    :param settings: The ``[vobiz]`` settings; read when first needed if omitted.
    :param ledger: The ledger to store answers and fired calls in; ``[vobiz] callback_store``'s if omitted.
    """

    def __init__(
        self,
        *,
        hook: VobizHook,
        log: _Log,
        settings: VobizSettings | None = None,
        ledger: PlacementLedger | None = None,
    ) -> None:
        self.hook = hook
        self.log = log
        self._settings = settings
        self._ledger = ledger

    @cached_property
    def settings(self) -> VobizSettings:
        """The ``[vobiz]`` settings."""
        return self._settings or get_settings()

    @cached_property
    def ledger(self) -> PlacementLedger:
        """The ledger (opened on first use: a call without receiver URLs needs none)."""
        return self._ledger or get_ledger(self.settings.callback_store)

    @cached_property
    def pacer(self) -> SharedCallPacer:
        """The account's CPS budget shared through the ledger by every process and host placing calls
        (:mod:`vobiz_provider.calls.pacing`); this process's pacer while the store is down."""
        return SharedCallPacer(store=self.ledger)

    # -- the receiver -------------------------------------------------------------------------------------

    def callback_base_url(self) -> str | None:
        """Where the receiver is: the connection's ``callback_base_url`` extra, else ``[vobiz]``'s."""
        return resolve_callback_base_url(self.hook.get_config().callback_base_url, self.settings)

    async def acallback_base_url(self) -> str | None:
        """Async twin of :meth:`callback_base_url` (reads the connection without blocking the loop)."""
        config = await self.hook.aget_config()
        return resolve_callback_base_url(config.callback_base_url, self.settings)

    def require_receiver(self, base_url: str | None, *, what: str, instead: str = "") -> str:
        """``base_url``, or an error saying the receiver is needed and how to configure it.

        :param base_url: From :meth:`callback_base_url`.
        :param what: Who needs it, e.g. ``"Task 'remind'"``.
        :param instead: An alternative to name, e.g. ``"pass your own answer_url"``.
        :raises VobizValidationError: When no receiver is configured (nothing was placed).
        """
        if base_url is not None:
            return base_url
        alternative = f" (or {instead})" if instead else ""
        raise VobizValidationError(
            f"{what}: message and gather are served to Vobiz by the callback receiver, but no "
            f"callback_base_url is configured: set the callback_base_url extra of connection "
            f"{self.hook.vobiz_conn_id!r} or [vobiz] callback_base_url (AIRFLOW__VOBIZ__CALLBACK_BASE_URL) "
            f"to the receiver's public URL, e.g. https://airflow.example.com/vobiz{alternative}; no call was "
            "placed"
        )

    # -- planning -----------------------------------------------------------------------------------------

    def plan(
        self,
        request: MakeCallRequest,
        *,
        correlation: CorrelationToken | None,
        callback_base_url: str | None,
        spec: AnswerSpec | None = None,
        route: Sequence[str] = ROUTED_KINDS,
        register: bool = True,
    ) -> Placement:
        """Attach the receiver's URLs to a validated request (no I/O but signing the token).

        :param request: The validated request; with ``spec``, its ``answer_url`` is a placeholder.
        :param correlation: The task instance and try placing the call (needed for any receiver URL).
        :param callback_base_url: From :meth:`callback_base_url`; ``None``: callbacks off.
        :param spec: What the receiver speaks; needs ``callback_base_url`` (:meth:`require_receiver`).
        :param route: The callback kinds pointed at the receiver where the request has no URL of its own.
        :param register: Record the fired calls in the ledger after placing (forced on when the request
            gets receiver URLs).
        """
        updates: dict[str, str] = {}
        routed: list[str] = []
        expires_at = None
        if callback_base_url is not None and correlation is not None and (spec is not None or route):
            secret = self.settings.signing_secret
            lifetime = token_lifetime(ring_timeout=request.ring_timeout, time_limit=request.time_limit)
            if lifetime > self.settings.nonce_window:
                # Vobiz's signatures never expire: one whose nonce is forgotten while its URL still works
                # could be replayed.
                raise VobizValidationError(
                    f"with this ring_timeout the callback URLs would stay valid for {lifetime:.0f} s, longer "
                    f"than [vobiz] nonce_window ({self.settings.nonce_window:.0f} s) remembers signatures: "
                    "lower ring_timeout or raise nonce_window"
                )
            expires_at = time.time() + lifetime

            def url(kind: str) -> str:
                token = correlation.encode(secret, kinds=KINDS_OF_URL[kind], expires_at=expires_at)
                # With credentials (derived from the token and the secret): Vobiz signs only such URLs.
                return callback_url(callback_base_url, kind, token, secret=secret)

            if spec is not None:
                updates.update(answer_url=url("answer"), answer_method="POST")
            for kind in route:
                name = _URL_FIELD[kind]
                if getattr(request, name) is None and (
                    kind != "machine-detection" or request.machine_detection
                ):
                    updates[name] = url(kind)
                    routed.append(kind)
        elif spec is not None:
            raise VobizValidationError("a spoken message needs the callback receiver and a correlation token")
        if routed:
            self.log.info(
                "Vobiz will report %s to the callback receiver at %s",
                ", ".join(sorted(routed)),
                callback_base_url,
            )
        return Placement(
            # The URLs were checked when built (and the request before); model_copy keeps the token out of
            # any validation message.
            request=request.model_copy(update=updates),
            correlation=correlation,
            spec=spec,
            callback_base_url=callback_base_url,
            routed=tuple(routed),
            register=register or bool(updates),
            expires_at=expires_at if updates else None,
        )

    # -- placing ------------------------------------------------------------------------------------------

    def place(self, placement: Placement) -> PlacedCall:
        """Open the placement, store what the call says, place it, and record the fired calls.

        :param placement: From :meth:`plan`.
        :raises VobizError: When the placement or the spoken message could not be stored, or Vobiz refused
            the call (nothing was placed), or its outcome is unknown (``VobizCallOutcomeUnknownError``).
        """
        self._open(placement)
        self._log_placing(placement)
        response = self.hook.make_call(placement.request, pacer=self.pacer)
        return self._placed(placement, response)

    async def aplace(self, placement: Placement) -> PlacedCall:
        """Async twin of :meth:`place`: ledger work in worker threads, the request on the async client.

        :param placement: From :meth:`plan`.
        """
        await asyncio.to_thread(self._open, placement)
        self._log_placing(placement)
        response = await (await self.hook.aget_conn()).make_call(placement.request, pacer=self.pacer)
        return await asyncio.to_thread(self._placed, placement, response)

    def _open(self, placement: Placement) -> None:
        """Before dialling: the try's placement (whenever its calls are recorded) and its answer spec.

        Also without receiver URLs: a later try that finds the placement opened but no call recorded knows
        this try may have dialled (:mod:`vobiz_provider.calls.recovery`)."""
        correlation = placement.correlation
        if correlation is None or not placement.register:
            return
        request = placement.request
        expires_at = placement.expires_at or time.time() + token_lifetime(
            ring_timeout=request.ring_timeout, time_limit=request.time_limit
        )
        try:
            self.ledger.open_placement(
                correlation, destinations=len(request.destinations), expires_at=expires_at
            )
            if placement.spec is not None:
                self.ledger.save_answer(
                    correlation, placement.spec, callback_base_url=placement.callback_base_url
                )
        except Exception as exc:
            raise VobizError(
                f"could not record the call in the Vobiz call ledger before dialling ({type(exc).__name__}): "
                "the receiver would refuse its callbacks and a retry could not find it; no call was placed"
            ) from exc
        if placement.spec is None:
            return
        self.log.info(
            "The callback receiver at %s will speak the message%s when the call is answered",
            placement.callback_base_url,
            " and collect the keys pressed" if placement.spec.gather is not None else "",
        )

    def _log_placing(self, placement: Placement) -> None:
        request = placement.request
        self.log.info(
            "Placing a Vobiz call from %s to %s",
            masked_number(request.from_number),
            masked_numbers(request.destinations),
        )

    def _placed(self, placement: Placement, response: CallFiredResponse) -> PlacedCall:
        placed = PlacedCall(placement=placement, response=response)
        self.log.info(
            "Vobiz accepted the call to %s: request_uuid %s (api_id %s, message %r)",
            masked_numbers(placed.destinations),
            ", ".join(placed.request_uuids),
            response.api_id,
            response.message,
        )
        if placement.register:
            try:
                self.ledger.register_fired_calls(
                    request_uuids=placed.request_uuids,
                    destinations=placed.destinations,
                    from_number=placement.request.from_number,
                    correlation=placement.correlation,
                )
            except Exception as exc:
                # The call is placed: failing now would only make a retry dial again. Waiting still works
                # (the trigger falls back on the Vobiz API when the ledger stays silent).
                self.log.warning(
                    "Could not record the fired call in the Vobiz call ledger (%s: %s); a retry will not "
                    "know about it",
                    type(exc).__name__,
                    exc,
                )
        return placed
