"""A call may never take a leg (``request_uuid|destination``) another call holds: ``leg_key`` is UNIQUE, and
a collision failed the whole transaction on every retry (issue 9: 503 forever)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from _ledger_helpers import place, store_callback

from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import calls
from vobiz_provider.models.record import CallRecord

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DESTINATION = "+919000000001"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CallLedger]:
    url = (
        f"sqlite:///{tmp_path / 'calls.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_schema_url")
    )
    store = CallLedger(url)
    yield store
    store.dispose()


def _legs(ledger: CallLedger) -> dict[str, str | None]:
    with ledger.engine.connect() as conn:
        return dict(conn.execute(sa.select(calls.c.call_uuid, calls.c.leg_key)).all())


def test_a_call_without_its_leg_does_not_take_the_leg_another_call_holds(ledger: CallLedger) -> None:
    # Call B is first known from the API without its request (no leg); call A then takes request R's leg.
    ledger.cache_api_result(CallRecord(call_uuid="B", status="in-progress"))
    place(ledger, "R", [DESTINATION])
    answer = {"CallUUID": "A", "RequestUUID": "R", "To": DESTINATION, "Event": "StartApp"}
    assert store_callback(ledger, "answer", answer, bind=False).stored
    # Now B is reported with the same request and destination: it used to set B's leg_key to A's.
    ended = CallRecord(call_uuid="B", request_uuid="R", to=DESTINATION, status="completed", terminal=True)
    ledger.cache_api_result(ended)
    assert _legs(ledger) == {"A": f"R|{DESTINATION[1:]}", "B": None}
    (record,) = ledger.lookup(call_uuids=["B"])
    assert (record.status, record.terminal, record.request_uuid) == ("completed", True, "R")
