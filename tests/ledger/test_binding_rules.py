"""The binding rules (:mod:`vobiz_provider.ledger.binding`) on their own: which callbacks a try may store.

``check`` is pure, so each rule is tested at its boundary with a hand-built :class:`TryCalls`; what
``load_tries`` reads is tested against a real ledger. The same rules over HTTP, through the receiver, are
in ``tests/receiver/test_binding.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from _ledger_helpers import TEST_TRY, place, store_callback

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger.binding import (
    PENDING_GRACE,
    Refusal,
    TryCalls,
    check,
    load_tries,
    note_stored,
    owner_of,
)
from vobiz_provider.ledger.schema import calls
from vobiz_provider.models.record import leg_key

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc)
OWNER = ("ti-key-a", 1)
OTHER = ("ti-key-b", 1)


def _dialled(**changes: Any) -> TryCalls:
    """A try that opened its placement a minute ago and recorded request ``r1``: one call, no CallUUID yet."""
    known = TryCalls(
        opened_at=NOW - dt.timedelta(minutes=1),
        registered_at=NOW - dt.timedelta(seconds=50),
        destinations=1,
        requests={"r1"},
        legs_per_request={"r1": 1},
        open_legs={"r1": {leg_key("r1", "+919876543210")}},
    )
    return dataclasses.replace(known, **changes)


def _check(values: dict[str, Any], known: TryCalls, *, call_owner: Any = None, max_per_call: int = 50) -> Any:
    return check(values, owner=OWNER, known=known, call_owner=call_owner, max_per_call=max_per_call, now=NOW)


# -- dialling: the grace during which an unbindable callback is deferred -----------------------------------


def test_the_grace_is_five_minutes_from_opening_inclusive() -> None:
    def opened(seconds_ago: float) -> TryCalls:
        return TryCalls(opened_at=NOW - dt.timedelta(seconds=seconds_ago))

    assert PENDING_GRACE == 300.0
    assert opened(299.5).dialling(NOW)
    assert opened(300).dialling(NOW)  # exactly at the limit: still dialling
    assert not opened(300.5).dialling(NOW)


def test_a_try_that_never_opened_is_not_dialling() -> None:
    assert not TryCalls().dialling(NOW)


def test_a_try_that_recorded_its_calls_after_opening_is_no_longer_dialling() -> None:
    opened = NOW - dt.timedelta(seconds=10)
    assert TryCalls(opened_at=opened).dialling(NOW)  # never recorded
    assert not TryCalls(opened_at=opened, registered_at=opened + dt.timedelta(seconds=1)).dialling(NOW)
    # re-opened (a new attempt in the same try) after the last record: dialling again
    assert TryCalls(opened_at=opened, registered_at=opened - dt.timedelta(seconds=1)).dialling(NOW)
    assert not TryCalls(opened_at=opened, registered_at=opened).dialling(NOW)


def test_owner_of_needs_both_the_ti_key_and_the_try() -> None:
    assert owner_of({"ti_key": "k", "try_number": 2}) == ("k", 2)
    assert owner_of({"ti_key": None, "try_number": 2}) is None
    assert owner_of({"ti_key": "k", "try_number": None}) is None
    assert owner_of({"ti_key": None, "try_number": None}) is None


# -- check: each refusal -------------------------------------------------------------------------------------


def test_a_try_without_a_placement_is_refused_403() -> None:
    refusal = _check({"request_uuid": "r1"}, TryCalls(requests={"r1"}))
    assert refusal == Refusal(status_code=403, reason="no call was placed with this callback URL")
    assert not refusal.pending


def test_a_callback_of_its_own_request_is_accepted() -> None:
    assert _check({"request_uuid": "r1"}, _dialled()) is None
    assert _check({"request_uuid": "r1", "call_uuid": "c1"}, _dialled()) is None  # takes the open leg


def test_a_call_uuid_owned_by_another_try_is_refused_even_with_its_own_request() -> None:
    known = _dialled()
    refusal = _check({"request_uuid": "r1", "call_uuid": "c9"}, known, call_owner=OTHER)
    assert refusal is not None and refusal.status_code == 403
    assert "belongs to another task" in refusal.reason
    # the same call owned by this very try is fine
    assert _check({"request_uuid": "r1", "call_uuid": "c1"}, known, call_owner=OWNER) is None
    # another try of the same task instance is another owner
    assert _check({"request_uuid": "r1", "call_uuid": "c1"}, known, call_owner=("ti-key-a", 2)) is not None


def test_a_callback_without_call_uuid_is_not_checked_against_an_owner() -> None:
    assert _check({"request_uuid": "r1", "call_uuid": None}, _dialled(), call_owner=OTHER) is None


def test_a_request_the_try_did_not_fire_is_refused_403_once_it_has_recorded() -> None:
    refusal = _check({"request_uuid": "r2", "call_uuid": "c2"}, _dialled(call_uuids={"c2"}))
    assert refusal is not None and refusal.status_code == 403
    assert refusal.reason == "the callback names a call this task did not place"


def test_without_a_request_uuid_the_call_uuid_must_be_a_call_of_the_try() -> None:
    known = _dialled(call_uuids={"c1"})
    assert _check({"call_uuid": "c1"}, known) is None
    assert _check({"call_uuid": "c2"}, known).status_code == 403  # type: ignore[union-attr]
    assert _check({}, known).status_code == 403  # type: ignore[union-attr]
    assert _check({"call_uuid": ""}, _dialled(call_uuids={""})).status_code == 403  # type: ignore[union-attr]


def test_an_unbound_callback_while_dialling_is_deferred_503() -> None:
    dialling = TryCalls(opened_at=NOW - dt.timedelta(seconds=5), destinations=1)
    refusal = _check({"request_uuid": "r1"}, dialling)
    assert refusal is not None and refusal.status_code == 503 and refusal.pending
    assert refusal.reason == "the task has not recorded its call yet, retry in a moment"
    late = TryCalls(opened_at=NOW - dt.timedelta(seconds=PENDING_GRACE + 1), destinations=1)
    assert _check({"request_uuid": "r1"}, late).status_code == 403  # type: ignore[union-attr]


def test_a_new_call_uuid_takes_an_open_leg_or_is_refused() -> None:
    # the request's only leg already has its CallUUID: a second call under it would be a planted one
    taken = _dialled(call_uuids={"c1"}, open_legs={"r1": set()})
    refusal = _check({"request_uuid": "r1", "call_uuid": "c-planted"}, taken)
    assert refusal is not None and refusal.status_code == 403
    assert "each destination it dialled already has its call" in refusal.reason
    assert _check({"request_uuid": "r1", "call_uuid": "c1"}, taken) is None  # its own call again
    # any spelling of the one destination takes its open leg
    assert (
        _check({"request_uuid": "r1", "call_uuid": "c1", "destination": "919876543210"}, _dialled()) is None
    )


def test_with_several_destinations_a_new_call_takes_the_leg_of_its_destination() -> None:
    known = _dialled(
        destinations=2,
        legs_per_request={"r1": 2},
        open_legs={"r1": {leg_key("r1", "+911111111111")}},  # the other destination's call is known already
    )
    assert _check({"request_uuid": "r1", "call_uuid": "c2", "destination": "+911111111111"}, known) is None
    refused = _check({"request_uuid": "r1", "call_uuid": "c3", "destination": "+912222222222"}, known)
    assert refused is not None and refused.status_code == 403


def test_the_budget_is_per_destination_and_refused_429_at_the_limit() -> None:
    assert _check({"request_uuid": "r1"}, _dialled(callbacks=2), max_per_call=3) is None
    refusal = _check({"request_uuid": "r1"}, _dialled(callbacks=3), max_per_call=3)
    assert refusal is not None and refusal.status_code == 429
    assert "already stored 3 callbacks" in refusal.reason and "max_callbacks_per_call=3" in refusal.reason
    assert _check({"request_uuid": "r1"}, _dialled(callbacks=5, destinations=2), max_per_call=3) is None
    assert _check({"request_uuid": "r1"}, _dialled(callbacks=6, destinations=2), max_per_call=3) is not None
    # a try that recorded no destination still has one destination's budget
    assert _check({"request_uuid": "r1"}, _dialled(callbacks=0, destinations=0), max_per_call=1) is None
    assert _check({"request_uuid": "r1"}, _dialled(callbacks=1, destinations=0), max_per_call=1) is not None


def test_a_fresh_try_has_spent_none_of_its_budget() -> None:
    known = TryCalls(opened_at=NOW, requests={"r1"}, legs_per_request={"r1": 1})
    assert known.callbacks == 0 and known.destinations == 0
    assert _check({"request_uuid": "r1"}, known, max_per_call=1) is None


# -- note_stored: what a stored callback changes -------------------------------------------------------------


def test_note_stored_counts_the_callback_and_closes_the_leg_it_took() -> None:
    known = _dialled()
    note_stored(known, {"request_uuid": "r1", "call_uuid": "c1"})
    assert known.callbacks == 1
    assert known.call_uuids == {"c1"}
    assert known.open_legs == {"r1": set()}
    # so a second new CallUUID under the same request finds no open leg
    assert _check({"request_uuid": "r1", "call_uuid": "c2"}, known).status_code == 403  # type: ignore[union-attr]
    note_stored(known, {"request_uuid": "r1", "call_uuid": "c1"})  # its own call again: counted only
    assert known.callbacks == 2 and known.call_uuids == {"c1"}


def test_note_stored_of_a_call_uuid_without_request_learns_it_without_touching_legs() -> None:
    known = _dialled()
    note_stored(known, {"call_uuid": "c7"})
    assert known.call_uuids == {"c7"} and known.open_legs == {"r1": {leg_key("r1", "+919876543210")}}
    note_stored(known, {"request_uuid": "r1"})
    assert known.callbacks == 2 and known.call_uuids == {"c7"}


def test_with_several_destinations_note_stored_closes_only_the_leg_of_its_destination() -> None:
    known = _dialled(
        destinations=2,
        legs_per_request={"r1": 2},
        open_legs={"r1": {leg_key("r1", "+911111111111"), leg_key("r1", "+912222222222")}},
    )
    note_stored(known, {"request_uuid": "r1", "call_uuid": "c1", "destination": "+911111111111"})
    assert known.open_legs == {"r1": {leg_key("r1", "+912222222222")}}


# -- load_tries: what the ledger tells about each try -----------------------------------------------------


def _correlation(task_id: str, try_number: int = 1) -> CorrelationToken:
    return CorrelationToken(dag_id="tests", run_id="run", task_id=task_id, try_number=try_number)


def _load(ledger: CallLedger, *tries: CorrelationToken) -> dict[tuple[str, int], TryCalls]:
    owners = [(correlation.ti_key, correlation.try_number) for correlation in tries]
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(calls)).mappings().all()
        return load_tries(conn, owners, rows)


def test_load_tries_reads_each_try_on_its_own(store: CallLedger) -> None:
    first, second, retry = _correlation("first"), _correlation("second"), _correlation("first", try_number=2)
    expires = time.time() + 3600
    store.open_placement(first, destinations=1, expires_at=expires)
    store.open_placement(second, destinations=2, expires_at=expires)
    store.open_placement(retry, destinations=1, expires_at=expires)
    # the first try recorded three requests (more calls than it meant to dial), the second one request
    # to two destinations; the retry nothing yet
    for request in ("a1", "a2", "a3"):
        place(store, request, correlation=first)
    place(store, "b1", ["+911111111111", "+912222222222"], correlation=second)
    store_callback(store, "hangup", {"RequestUUID": "a1", "CallUUID": "ca1", "To": "+919876543210"},
                   correlation=first, bind=False)  # fmt: skip

    tries = _load(store, first, second, retry)
    one, two, again = (tries[(c.ti_key, c.try_number)] for c in (first, second, retry))

    assert one.destinations == 3  # the calls it recorded, being more than it meant to dial
    assert one.callbacks == 1
    assert one.requests == {"a1", "a2", "a3"}
    assert one.call_uuids == {"ca1"}
    assert one.legs_per_request == {"a1": 1, "a2": 1, "a3": 1}
    assert set(one.open_legs) == {"a2", "a3"}  # a1's call has its CallUUID

    assert two.destinations == 2 and two.callbacks == 0
    assert two.requests == {"b1"} and two.legs_per_request == {"b1": 2}
    assert len(two.open_legs["b1"]) == 2

    assert again.opened_at is not None and again.registered_at is None
    assert again.destinations == 1 and again.callbacks == 0 and not again.requests
    assert again.dialling(dt.datetime.now(dt.timezone.utc))


def test_load_tries_knows_nothing_of_a_try_that_never_opened(store: CallLedger) -> None:
    place(store, "z1", correlation=TEST_TRY)  # recorded (which marks it registered) but for another try
    unknown = _correlation("never")
    tries = _load(store, unknown)
    assert tries == {(unknown.ti_key, unknown.try_number): TryCalls()}


def test_load_tries_skips_rows_of_other_tries_and_binds_only_fired_requests(store: CallLedger) -> None:
    """``call_rows`` are the rows the batch named: rows of tries not asked about are skipped (without ending
    the scan), and a row the try did not fire (a callback's own row) does not make its request the try's."""

    def row(request: str | None, *, owner: tuple[str, int], fired: bool, call_uuid: str | None = None) -> Any:
        return {
            "ti_key": owner[0],
            "try_number": owner[1],
            "request_uuid": request,
            "call_uuid": call_uuid,
            "leg_key": leg_key(request, "+919876543210"),
            "fired_at": NOW if fired else None,
        }

    rows = [
        row("other", owner=OTHER, fired=True, call_uuid="c0"),
        row("r1", owner=OWNER, fired=True),
        row("r2", owner=OWNER, fired=False, call_uuid="c2"),
        row(None, owner=OWNER, fired=True, call_uuid="c3"),
    ]
    with store.engine.connect() as conn:
        tries = load_tries(conn, [OWNER], rows)
    assert set(tries) == {OWNER}
    mine = tries[OWNER]
    assert mine.opened_at is None  # this try never opened a placement in this ledger
    assert mine.requests == {"r1"}
    assert mine.legs_per_request == {"r1": 1}
    assert mine.open_legs == {"r1": {leg_key("r1", "+919876543210")}}
    assert mine.call_uuids == {"c2", "c3"}
