"""How the PostgreSQL store talks to its server: a batch's writes in a few statements whatever its size, and
pooled connections checked only after they sat idle.

The psycopg2 cursor is replaced by one that records what reaches it, so the tests count what is sent to
the server rather than what SQLAlchemy was asked to do. Skipped when VOBIZ_TEST_POSTGRES_URL is unset.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.ledger import CallLedger, database

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.postgres

psycopg2 = pytest.importorskip("psycopg2")
extensions = pytest.importorskip("psycopg2.extensions")

#: What reached a psycopg2 cursor: ("execute" | "executemany", parameter sets, SQL).
SENT: list[tuple[str, int, str]] = []


class RecordingCursor(extensions.cursor):  # type: ignore[misc]
    def execute(self, query: Any, vars: Any = None) -> Any:
        text = query.decode() if isinstance(query, bytes) else str(query)
        SENT.append(("execute", 1, text))
        return super().execute(query, vars)

    def executemany(self, query: Any, vars_list: Any) -> Any:
        rows = list(vars_list)
        SENT.append(("executemany", len(rows), str(query)))
        return super().executemany(query, rows)


TRY = CorrelationToken(dag_id="bulk", run_id="run", task_id="call")
CALLS = 40


@pytest.fixture
def store(pg_schema_url: str) -> Iterator[CallLedger]:
    ledger = CallLedger(pg_schema_url)
    if ledger.engine.dialect.driver != "psycopg2":
        ledger.dispose()
        pytest.skip(f"counts psycopg2's cursor calls; the store runs on {ledger.engine.dialect.driver}")

    @sa.event.listens_for(ledger.engine, "connect")
    def _record(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.cursor_factory = RecordingCursor

    ledger.upgrade()
    SENT.clear()
    yield ledger
    ledger.dispose()


def _hangup(index: int) -> dict[str, str]:
    return {
        "CallUUID": f"call-{index}",
        "RequestUUID": f"req-{index}",
        "From": "918000000000",
        "To": f"9190000{index:05d}",
        "Direction": "outbound",
        "Event": "Hangup",
        "CallStatus": "completed",
        "HangupCause": "NORMAL_CLEARING",
        "HangupCauseCode": "4000",
        "Duration": "12",
    }


def test_a_batch_of_fired_calls_hangups_is_written_in_a_few_statements(store: CallLedger) -> None:
    store.register_fired_calls(
        request_uuids=[f"req-{index}" for index in range(CALLS)],
        destinations=[f"9190000{index:05d}" for index in range(CALLS)],
        correlation=TRY,
    )
    batch = [
        store.prepare_callback("hangup", _hangup(index), correlation=TRY, replay_keys=(f"v3:nonce-{index}",))
        for index in range(CALLS)
    ]
    SENT.clear()
    results = store.ingest(batch)

    assert all(getattr(result, "stored", False) for result in results), results
    # psycopg2's executemany sends one statement per parameter set: nothing of the batch goes that way.
    assert [(kind, rows) for kind, rows, _ in SENT if kind == "executemany"] == []
    updates = [sql for _, _, sql in SENT if sql.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1 and updates[0].count("UPDATE vobiz_calls") == CALLS
    assert len(SENT) <= 12, [sql[:60] for _, _, sql in SENT]
    records = store.lookup(request_uuids=[f"req-{index}" for index in range(CALLS)])
    assert sorted(record.status for record in records) == ["completed"] * CALLS


def _pings() -> int:
    return sum(1 for _, _, sql in SENT if sql.strip() in ("", ";", "SELECT 1"))


def test_a_connection_used_a_moment_ago_is_not_pinged(store: CallLedger) -> None:
    for _ in range(5):
        assert store.lookup(call_uuids=["nothing"]) == []
    assert _pings() == 0


def test_a_connection_idle_past_the_window_is_pinged_and_replaced_when_gone(
    store: CallLedger, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "PING_AFTER_IDLE", 0.2)
    assert store.lookup(call_uuids=["nothing"]) == []
    with store.engine.connect() as conn:
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    time.sleep(0.3)
    SENT.clear()
    assert store.lookup(call_uuids=["nothing"]) == []
    assert _pings() == 1

    # The server ends that connection while it sits in the pool: the check finds out, and the next
    # transaction runs on a new connection instead of failing.
    admin = sa.create_engine(sa.engine.make_url(pg_schema_url).set(drivername="postgresql+psycopg2"))
    with admin.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(backend)})").scalar() is True
    admin.dispose()
    time.sleep(0.3)
    assert store.lookup(call_uuids=["nothing"]) == []
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != backend
