"""What the provider asks of the Vobiz API about a call it waits for, and how it hangs one up.

:func:`ask_api` (and its asyncio twin) finds what became of a call when the callbacks cannot be relied on
(the trigger's reconciliation, the sensor's poke): live, else queued, else its CDR. :func:`hang_up_live`
ends the legs of a request that are still up, when a task is killed or times out with ``hangup_on_kill``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from vobiz_provider.exceptions import VobizNotFoundError
from vobiz_provider.models.record import CallRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vobiz_provider.client import AsyncVobizClient, VobizClient
    from vobiz_provider.hooks.vobiz import VobizHook
    from vobiz_provider.ledger import CallReader

__all__ = ["aask_api", "ask_api", "hang_up_live"]


def ask_api(client: VobizClient, uuid: str, context: dict[str, Any]) -> CallRecord | None:
    """The call as the API knows it: live, else queued, else its CDR; ``None`` if Vobiz knows none.

    :param client: The Vobiz client.
    :param uuid: The call UUID (for a single-destination request, its request UUID).
    :param context: Fields the API does not hold, e.g. ``request_uuid=...``.
    """
    with contextlib.suppress(VobizNotFoundError):
        return CallRecord.from_live(client.get_live_call(uuid), **context)
    with contextlib.suppress(VobizNotFoundError):
        return CallRecord.from_live(client.get_queued_call(uuid), **context)
    with contextlib.suppress(VobizNotFoundError):
        return CallRecord.from_cdr(client.get_cdr(uuid), **context)
    return None


async def aask_api(client: AsyncVobizClient, uuid: str, context: dict[str, Any]) -> CallRecord | None:
    """Async twin of :func:`ask_api`.

    :param client: The async Vobiz client.
    :param uuid: The call UUID (for a single-destination request, its request UUID).
    :param context: Fields the API does not hold, e.g. ``request_uuid=...``.
    """
    with contextlib.suppress(VobizNotFoundError):
        return CallRecord.from_live(await client.get_live_call(uuid), **context)
    with contextlib.suppress(VobizNotFoundError):
        return CallRecord.from_live(await client.get_queued_call(uuid), **context)
    with contextlib.suppress(VobizNotFoundError):
        return CallRecord.from_cdr(await client.get_cdr(uuid), **context)
    return None


def hang_up_live(
    *,
    hook: VobizHook,
    ledger: CallReader,
    request_uuids: Sequence[str],
    calls: Sequence[dict[str, Any]] = (),
    log: Any,
) -> None:
    """Hang up every leg of these requests that has not ended (best effort, never raises).

    :param hook: The Vobiz hook of the connection that placed them.
    :param ledger: Where their legs are known.
    :param request_uuids: The requests.
    :param calls: Records already known (the trigger's event), as ``to_event()`` dicts.
    :param log: Where to say what happened (the task's logger).
    """
    records = [dict(call) for call in calls]
    try:
        records += [record.to_event() for record in ledger.lookup(request_uuids=request_uuids)]
    except Exception as exc:
        log.warning("Could not read the Vobiz call ledger to find the live calls: %s", exc)
    ended = {r["call_uuid"] for r in records if r.get("terminal") and r.get("call_uuid")}
    live = [r["call_uuid"] for r in records if not r.get("terminal") and r.get("call_uuid")]
    known_requests = {r.get("request_uuid") for r in records if r.get("call_uuid")}
    # A request nothing is known about: for one destination its request UUID is the call UUID.
    live += [uuid for uuid in request_uuids if uuid not in known_requests]
    for uuid in dict.fromkeys(uuid for uuid in live if uuid not in ended):
        try:
            hung_up = hook.hangup_call(uuid)
        except Exception as exc:
            log.warning("Could not hang up Vobiz call %s: %s", uuid, exc)
            continue
        log.info("Vobiz call %s %s", uuid, "hung up" if hung_up else "had already ended")
    hook.close()
