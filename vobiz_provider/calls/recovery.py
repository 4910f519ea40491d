"""Finding the calls a try placed but never recorded: it died between ``POST /Call/`` and the ledger.

A try opens its placement in the ledger before dialling and records the calls Vobiz accepted right after
(:mod:`vobiz_provider.calls.placement`). A try that dies in between (the worker is killed, the machine goes
away) leaves an opened placement without calls: whether the POST reached Vobiz is unknown, and Vobiz has no
idempotency key to ask with. Dialling again could ring the callee twice, so the next try looks the calls up
in the Vobiz API instead (:func:`recover_unrecorded_calls`) - the live and queued calls, and the CDRs of
calls that already ended - matching caller ID and destination, placed since the placement was opened and
not known to the ledger as another try's. What it finds it records as the dead try's calls, and the retry
then resumes them like any earlier try's call (waits for it, or reports how it ended). Only when Vobiz
knows no such call does the retry dial.

Within one try, the client settles a ``POST /Call/`` whose answer was lost the same way, from the queued
and live calls (:mod:`vobiz_provider.client._recovery`); this module does it across tries, once the process
that sent the POST is gone - so also from the CDRs (the call may have ended since), and telling calls of
other tries apart through the ledger rather than the memory of the process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from vobiz_provider.exceptions import VobizError
from vobiz_provider.models.record import normalise_destination
from vobiz_provider.phone_masking import masked_number, masked_numbers
from vobiz_provider.untrusted import loggable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.hooks.vobiz import VobizHook
    from vobiz_provider.ledger import CallReader, PlacementLedger

__all__ = ["CLOCK_SLACK", "FoundCall", "find_placed_calls", "recover_unrecorded_calls"]

#: Seconds a call found in the API may seem to predate the placement (clocks of Vobiz and the worker).
CLOCK_SLACK: Final = 120.0

#: CDR pages read per destination (100 records each): a retry comes soon after the try that died.
_CDR_PAGES: Final = 3


@dataclass(frozen=True, kw_only=True)
class FoundCall:
    """A call Vobiz knows that may be the one a dead try placed.

    :param uuid: Its call UUID (for one destination, also its request UUID).
    :param request_uuid: The request UUID Vobiz reports, when it differs from :attr:`uuid`.
    :param to: The destination.
    :param started: When it was placed, if Vobiz says (``None``: a queued call, which is recent anyway).
    """

    uuid: str
    request_uuid: str | None
    to: str
    started: dt.datetime | None


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and normalise_destination(a) == normalise_destination(b)


def find_placed_calls(
    hook: VobizHook, *, destinations: Sequence[str], from_number: str, since: dt.datetime
) -> list[FoundCall]:
    """The calls Vobiz knows from ``from_number`` to any of ``destinations`` placed since ``since``.

    Asks the live calls, the queued calls and the CDRs of ended calls (``to_number``/``from_number`` and
    date filters); each call once, earliest first.

    :param hook: The Vobiz hook of the connection that placed them.
    :param destinations: The destinations the try dialled.
    :param from_number: The caller ID it used.
    :param since: When the try opened its placement (UTC); :data:`CLOCK_SLACK` is allowed.
    :raises VobizError: When the API cannot be asked (the caller must then not dial).
    """
    earliest = since - dt.timedelta(seconds=CLOCK_SLACK)
    wanted = {normalise_destination(d): d for d in destinations}
    found: dict[str, FoundCall] = {}

    def consider(
        uuid: str | None, request_uuid: str | None, to: str | None, caller: str | None, at: Any
    ) -> None:
        if not uuid or uuid in found or not _same(caller, from_number):
            return
        key = normalise_destination(to)
        if key not in wanted:
            return
        started = at if isinstance(at, dt.datetime) else None
        if started is not None and started.tzinfo is None:
            started = started.replace(tzinfo=dt.timezone.utc)
        if started is not None and started < earliest:
            return
        found[uuid] = FoundCall(uuid=uuid, request_uuid=request_uuid, to=wanted[key], started=started)

    for uuid in hook.list_live_calls():
        try:
            live = hook.get_live_call(uuid)
        except VobizError:
            continue  # ended meanwhile: its CDR is read below
        consider(live.call_uuid or uuid, live.request_uuid, live.to, live.from_number, live.session_start)
    for uuid in hook.list_queued_calls():
        try:
            queued = hook.get_queued_call(uuid)
        except VobizError:
            continue  # connected or ended meanwhile
        consider(queued.call_uuid or uuid, queued.request_uuid, queued.to, queued.from_number, None)
    today = dt.datetime.now(dt.timezone.utc)
    dates = {
        # A day either side: Vobiz's CDR dates may be in the account's time zone.
        "start_date": (earliest - dt.timedelta(days=1)).date().isoformat(),
        "end_date": (today + dt.timedelta(days=1)).date().isoformat(),
    }
    for destination in wanted.values():
        for page in range(1, _CDR_PAGES + 1):
            result = hook.list_cdrs(
                to_number=destination, from_number=from_number, per_page=100, page=page, **dates
            )
            for cdr in result.data:
                consider(
                    cdr.uuid,
                    None,
                    cdr.destination_number,
                    cdr.caller_id_number,
                    cdr.created_at or cdr.start_time,
                )
            if not (result.pagination and result.pagination.has_next):
                break
    far_future = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return sorted(found.values(), key=lambda call: call.started or far_future)


def recover_unrecorded_calls(
    *,
    hook: VobizHook,
    ledger: PlacementLedger,
    reader: CallReader,
    correlation: CorrelationToken,
    destinations: Sequence[str],
    from_number: str,
    log: Any,
) -> int:
    """When the newest earlier try opened a placement but recorded no call, find its calls and record them.

    Returns how many calls were recorded (0: no earlier try died in that window, or Vobiz knows no call it
    could have placed - then the current try dials).

    :param hook: The Vobiz hook.
    :param ledger: The ledger (placements, fired calls).
    :param reader: The same ledger, to tell calls of other tries apart.
    :param correlation: The current try.
    :param destinations: The destinations the task dials (the dead try dialled the same).
    :param from_number: Its caller ID.
    :param log: The task's logger.
    :raises VobizError: When the Vobiz API cannot be asked: not knowing, the try must not dial.
    """
    state = ledger.last_placement(correlation.ti_key, before_try=correlation.try_number)
    if state is None or state.registered_at is not None:
        return 0
    earlier = state.try_number
    log.warning(
        "Try %s: try %s was about to dial but never recorded a call (it died, or failed, right around "
        "POST /Call/); asking Vobiz whether its call was placed before dialling again",
        correlation.try_number,
        earlier,
    )
    try:
        candidates = find_placed_calls(
            hook, destinations=destinations, from_number=from_number, since=state.opened_at
        )
    except VobizError as err:
        raise VobizError(
            f"try {earlier} may have placed a call it did not record, and the Vobiz API could not be asked "
            f"whether it did ({type(err).__name__}); not dialling, so that the callee is not called twice"
        ) from err
    known = {
        uuid
        # By call UUID and by request UUID: a call recorded from POST /Call/'s answer (or by an earlier
        # recovery) is known by its request UUID only until a callback or the API names its call UUID.
        for record in reader.lookup(
            call_uuids=[c.uuid for c in candidates],
            request_uuids=[uuid for c in candidates for uuid in (c.uuid, c.request_uuid) if uuid],
        )
        if record.try_number is not None
        for uuid in (record.call_uuid, record.request_uuid)
        if uuid
    }
    chosen: dict[str, FoundCall] = {}
    for call in candidates:
        if call.uuid in known or (call.request_uuid and call.request_uuid in known):
            continue  # another try's (or task's) call
        chosen.setdefault(normalise_destination(call.to), call)
    if not chosen:
        log.info(
            "Try %s: Vobiz knows no call from %s to %s since try %s opened its placement: it never dialled",
            correlation.try_number,
            loggable(masked_number(from_number)),
            loggable(masked_numbers(destinations)),
            earlier,
        )
        return 0
    calls = list(chosen.values())
    ledger.register_fired_calls(
        request_uuids=[call.uuid for call in calls],
        destinations=[call.to for call in calls],
        from_number=from_number,
        correlation=dataclasses.replace(correlation, try_number=earlier),
    )
    log.warning(
        "Try %s: found the call(s) try %s placed without recording them (%s); resuming instead of dialling",
        correlation.try_number,
        earlier,
        ", ".join(f"{loggable(masked_number(call.to))}: {loggable(call.uuid)}" for call in calls),
    )
    return len(calls)
