"""Refused callbacks are counted by status and reason; the log gets the first few and then one summary."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

import httpx
from _ledger_helpers import token_for

from vobiz_provider.config import VobizSettings
from vobiz_provider.correlation import CorrelationToken, callback_url
from vobiz_provider.receiver.app import create_app
from vobiz_provider.receiver.refusal_log import RefusalLog
from vobiz_provider.receiver.signing_keys import SigningKeyCache, SigningKeys

if TYPE_CHECKING:
    import pytest

SECRET = "refusal-test-callback-secret-0123456789"
LOGGER = "vobiz_provider.receiver"
MISSING_TOKEN = "missing correlation token (query parameter 't')"
INTERVAL = 0.5


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(LOGGER) and record.levelno >= logging.WARNING
    ]


def test_the_first_refusals_are_logged_then_one_summary_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = RefusalLog(interval=3600, individually=3)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(100):
            refusals.refused(kind="hangup", status=403, reason="invalid correlation token: bad signature")
        for _ in range(20):
            refusals.refused(kind="ring", status=413, reason="callback body larger than 4096 bytes")
        individually = warnings(caplog)
        refusals.interval = 0.0  # the interval has passed: the next refusal closes it
        refusals.refused(kind="ring", status=404, reason="unknown callback kind")
    lines = warnings(caplog)

    assert (
        individually
        == ["Vobiz hangup callback refused with 403: invalid correlation token: bad signature"] * 3
    )
    summary = lines[3]
    assert "Vobiz callbacks refused in the last" in summary
    assert "120 refused, 117 not logged one by one" in summary
    assert "403 invalid correlation token: bad signature: 100" in summary
    assert "413 callback body larger than 4096 bytes: 20" in summary
    assert lines[4:] == ["Vobiz ring callback refused with 404: unknown callback kind"]
    assert refusals.counts == {
        (403, "invalid correlation token: bad signature"): 100,
        (413, "callback body larger than 4096 bytes"): 20,
        (404, "unknown callback kind"): 1,
    }


def test_the_counter_and_the_summary_keep_a_bounded_number_of_reasons(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = RefusalLog(interval=3600, individually=0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for index in range(1000):
            refusals.refused(kind="hangup", status=404, reason=f"unknown callback kind 'k{index}'")
        refusals.interval = 0.0
        refusals.flush()
    assert len(refusals.counts) <= RefusalLog.MAX_REASONS + 1
    assert sum(refusals.counts.values()) == 1000
    [summary] = warnings(caplog)
    assert "1000 refused" in summary
    assert f"404 (other reasons): {1000 - RefusalLog.MAX_REASONS}; " in summary  # the most frequent first
    assert summary.count("unknown callback kind") == 9
    assert summary.endswith(f"; {RefusalLog.MAX_REASONS + 1 - 10} other reasons)")


def test_an_interval_with_nothing_left_out_needs_no_summary(caplog: pytest.LogCaptureFixture) -> None:
    refusals = RefusalLog(interval=3600, individually=5)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        refusals.refused(kind="hangup", status=403, reason="invalid Vobiz signature")
        refusals.interval = 0.0
        refusals.refused(kind="hangup", status=403, reason="invalid Vobiz signature")
    assert warnings(caplog) == ["Vobiz hangup callback refused with 403: invalid Vobiz signature"] * 2


async def test_an_unauthenticated_flood_gives_a_bounded_log_and_exact_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(
        settings=VobizSettings(callback_secret=SECRET, callback_store="sqlite://"),
        signing_keys=SigningKeyCache(loader=lambda conn_id: SigningKeys(conn_id=conn_id)),
    )
    refusals: RefusalLog = app.state.refusals
    refusals.interval = INTERVAL
    forged_with = "not-the-receivers-secret-0123456789"
    forged = callback_url(
        "http://receiver",
        "hangup",
        token_for(CorrelationToken(dag_id="d", run_id="r", task_id="t"), "hangup", secret=forged_with),
    )
    transport = httpx.ASGITransport(app=app)
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            missing = [await client.post("/callbacks/hangup", data={"CallUUID": "c"}) for _ in range(300)]
            tampered = [await client.post(forged, data={"CallUUID": "c"}) for _ in range(100)]
        intervals = math.ceil((time.monotonic() - start) / INTERVAL) + 1
        # The summary comes once the interval is over, without waiting for another refusal.
        deadline = time.monotonic() + 10
        while not any("refused in the last" in line for line in warnings(caplog)):
            assert time.monotonic() < deadline, warnings(caplog)
            await asyncio.sleep(0.05)

    assert {response.status_code for response in missing + tampered} == {403}
    assert refusals.counts[(403, MISSING_TOKEN)] == 300
    assert sum(count for (status, _), count in refusals.counts.items() if status == 403) == 400
    lines = warnings(caplog)
    # Without the summary, 400 lines; with it, a few per interval whatever the number of refusals.
    assert len(lines) <= intervals * (refusals.individually + 1), lines
    summary = next(line for line in lines if "refused in the last" in line)
    assert f"403 {MISSING_TOKEN}: " in summary
    assert forged.split("t=", 1)[1] not in caplog.text
