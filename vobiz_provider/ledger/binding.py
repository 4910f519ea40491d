"""Which callbacks a callback URL may store: only those of the calls its try placed.

A correlation token names a try of a task instance (:mod:`vobiz_provider.correlation`), and anyone who
sees one callback URL holds it. So the ledger decides, in the transaction that would store a callback,
whether the callback belongs to a call that this try placed:

* the try must have opened a placement (:meth:`~vobiz_provider.ledger.placements.Placements.open_placement`,
  before dialling) — else 403;
* its ``RequestUUID`` must be one the try recorded from Vobiz's answer to ``POST /Call/``
  (:meth:`~vobiz_provider.ledger.calls.Calls.register_fired_calls`); without one, its ``CallUUID`` must be a
  call of the try already stored — else 403. While the try is still dialling (opened, calls not yet
  recorded, for at most :data:`PENDING_GRACE` seconds) the callback is not refused but deferred: 503, and
  Vobiz retries;
* a ``CallUUID`` the ledger holds for another try is refused (403), and a new ``CallUUID`` only takes a
  fired call that has none yet, to a destination the try dialled (403 otherwise): a URL cannot plant
  calls under its try;
* the try's URLs store at most ``max_callbacks_per_call`` callbacks per dialled destination — beyond that,
  429.

A refused callback stores nothing: no event, no nonce, no call change. :func:`check` is pure; what it reads
is loaded once per batch by :func:`load_tries`: one query, plus the call rows the ledger reads anyway.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from vobiz_provider.ledger.rows import chunks
from vobiz_provider.ledger.schema import calls, events, placements
from vobiz_provider.models.record import leg_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from sqlalchemy.engine import Connection

__all__ = ["PENDING_GRACE", "Refusal", "TryCalls", "check", "load_tries", "note_stored", "owner_of"]

#: Seconds after a try opened its placement during which callbacks it cannot yet bind are deferred (503)
#: rather than refused: Vobiz may call back before the try has recorded the calls it accepted.
PENDING_GRACE: Final = 300.0

Owner = tuple[str, int]


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why a callback is not stored.

    :param status_code: 403 (not this try's call), 429 (the try's budget is spent) or 503 (the try is still
        recording its calls: retry).
    :param reason: Said in the response and logged; names no UUID or token.
    """

    status_code: int
    reason: str

    @property
    def pending(self) -> bool:
        """Whether the callback may be accepted later (the try is still recording its calls)."""
        return self.status_code == 503


@dataclass(kw_only=True)
class TryCalls:
    """What the ledger knows of one try, for binding its callbacks (updated as a batch is applied).

    :param opened_at: When the try last opened its placement (``None``: it never did).
    :param registered_at: When it last recorded the calls Vobiz accepted.
    :param destinations: Destinations it dialled (the budget scales with them).
    :param callbacks: Callbacks its URLs stored so far (its events).
    :param requests: Request UUIDs of the calls it fired.
    :param call_uuids: Call UUIDs of its calls.
    :param legs_per_request: How many calls each request fired.
    :param open_legs: Per request, the ``request_uuid|destination`` of its fired calls whose ``CallUUID``
        is not known yet.
    """

    opened_at: dt.datetime | None = None
    registered_at: dt.datetime | None = None
    destinations: int = 0
    callbacks: int = 0
    requests: set[str] = field(default_factory=set)
    call_uuids: set[str] = field(default_factory=set)
    legs_per_request: dict[str, int] = field(default_factory=dict)
    open_legs: dict[str, set[str | None]] = field(default_factory=dict)

    def dialling(self, now: dt.datetime) -> bool:
        """Opened, its calls not recorded since, and within :data:`PENDING_GRACE`."""
        if self.opened_at is None or now - self.opened_at > dt.timedelta(seconds=PENDING_GRACE):
            return False
        return self.registered_at is None or self.registered_at < self.opened_at


def owner_of(row: Mapping[str, Any]) -> Owner | None:
    """The try a call row belongs to, if it names one."""
    if row["ti_key"] is None or row["try_number"] is None:
        return None
    return (row["ti_key"], row["try_number"])


def _placements_of() -> Any:
    stored = (
        sa.select(sa.func.count())
        .where(events.c.ti_key == placements.c.ti_key, events.c.try_number == placements.c.try_number)
        .scalar_subquery()
    )
    fired = (
        sa.select(sa.func.count())
        .where(
            calls.c.ti_key == placements.c.ti_key,
            calls.c.try_number == placements.c.try_number,
            calls.c.fired_at.is_not(None),
        )
        .scalar_subquery()
    )
    return sa.select(
        placements.c.ti_key,
        placements.c.try_number,
        placements.c.opened_at,
        placements.c.registered_at,
        placements.c.destinations,
        fired,
        stored,
    ).where(placements.c.ti_key.in_(sa.bindparam("b_ti_keys", expanding=True)))


# Built once and run with parameters: building a statement per batch costs more than running it.
_PLACEMENTS_OF: Final = _placements_of()


def load_tries(
    conn: Connection, owners: Iterable[Owner], call_rows: Iterable[Mapping[str, Any]]
) -> dict[Owner, TryCalls]:
    """The placement of each try, with its fired calls and the callbacks its URLs stored (one query), and
    the calls named.

    :param conn: The transaction that will store the callbacks.
    :param owners: ``(ti_key, try_number)`` of the tries whose callbacks are checked.
    :param call_rows: The stored calls the callbacks name (by ``CallUUID``, leg or ``RequestUUID``), read
        in ``conn``, with their ``ti_key``, ``try_number``, ``request_uuid``, ``call_uuid``, ``leg_key``
        and ``fired_at``: a callback binds through the rows of its own request or call, so the try's other
        calls need not be read.
    """
    tries = {owner: TryCalls() for owner in owners}
    for chunk in chunks(sorted({ti_key for ti_key, _ in tries})):
        for ti_key, try_number, opened_at, registered_at, destinations, fired, count in conn.execute(
            _PLACEMENTS_OF, {"b_ti_keys": list(chunk)}
        ):
            known = tries.get((ti_key, try_number))
            if known is not None:
                known.opened_at, known.registered_at = opened_at, registered_at
                # What it meant to dial, or the calls it recorded if more (a try may place several calls).
                known.destinations, known.callbacks = max(destinations, fired), count
    for row in call_rows:
        known = tries.get((row["ti_key"], row["try_number"]))
        if known is None:
            continue
        request, call_uuid = row["request_uuid"], row["call_uuid"]
        if call_uuid:
            known.call_uuids.add(call_uuid)
        if row["fired_at"] is not None and request:
            known.requests.add(request)
            known.legs_per_request[request] = known.legs_per_request.get(request, 0) + 1
            if not call_uuid:
                known.open_legs.setdefault(request, set()).add(row["leg_key"])
    return tries


def check(
    values: Mapping[str, Any],
    *,
    owner: Owner,
    known: TryCalls,
    call_owner: Owner | None,
    max_per_call: int,
    now: dt.datetime,
) -> Refusal | None:
    """Whether the try ``owner`` may store a callback carrying ``values``; ``None`` when it may.

    :param values: The call columns of the callback (``call_uuid``, ``request_uuid``, ``destination``).
    :param owner: The try of its correlation token.
    :param known: That try (:func:`load_tries`).
    :param call_owner: The try that owns the stored row of its ``CallUUID``, if the ledger has one.
    :param max_per_call: ``[vobiz] max_callbacks_per_call``.
    :param now: The transaction's clock.
    """
    if known.opened_at is None:
        return Refusal(status_code=403, reason="no call was placed with this callback URL")
    call_uuid, request_uuid = values.get("call_uuid"), values.get("request_uuid")
    if call_uuid and call_owner is not None and call_owner != owner:
        return Refusal(status_code=403, reason="the callback's CallUUID belongs to another task's call")
    if request_uuid:
        bound = request_uuid in known.requests
    else:
        bound = bool(call_uuid) and call_uuid in known.call_uuids
    if not bound:
        if known.dialling(now):
            return Refusal(
                status_code=503, reason="the task has not recorded its call yet, retry in a moment"
            )
        return Refusal(status_code=403, reason="the callback names a call this task did not place")
    if (
        request_uuid
        and call_uuid
        and call_uuid not in known.call_uuids
        and _open_leg(known, request_uuid, values.get("destination")) is _NO_LEG
    ):
        return Refusal(
            status_code=403,
            reason="the callback's CallUUID is not a call this task placed (each destination it dialled "
            "already has its call)",
        )
    if known.callbacks >= max_per_call * max(known.destinations, 1):
        return Refusal(
            status_code=429,
            reason=f"this call's callback URLs already stored {known.callbacks} callbacks (the limit is "
            f"[vobiz] max_callbacks_per_call={max_per_call} per destination)",
        )
    return None


_NO_LEG: Final = object()


def _open_leg(known: TryCalls, request_uuid: str, destination: str | None) -> object:
    """The fired call, still without ``CallUUID``, that a new call of ``request_uuid`` to ``destination`` is.

    With several destinations, the one it goes to; with one, that one whatever its spelling (Vobiz may
    write ``To`` differently from the request). :data:`_NO_LEG` when there is none.
    """
    opened = known.open_legs.get(request_uuid, set())
    if known.legs_per_request.get(request_uuid, 0) > 1:
        leg = leg_key(request_uuid, destination)
        return leg if leg in opened else _NO_LEG
    return next(iter(opened)) if opened else _NO_LEG


def note_stored(known: TryCalls, values: Mapping[str, Any]) -> None:
    """Count a stored callback against its try, and learn its ``CallUUID`` (it took an open leg)."""
    known.callbacks += 1
    call_uuid, request_uuid = values.get("call_uuid"), values.get("request_uuid")
    if call_uuid and call_uuid not in known.call_uuids:
        known.call_uuids.add(call_uuid)
        if request_uuid:
            leg = _open_leg(known, request_uuid, values.get("destination"))
            known.open_legs.get(request_uuid, set()).discard(leg)
