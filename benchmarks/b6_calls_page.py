"""B6: the "Vobiz calls" page's server time with 100,000 calls in the ledger (SQLite and PostgreSQL).

Run on its own (it is not part of ``./scripts/bench``'s targets, it reports figures)::

    VOBIZ_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/python -m benchmarks.b6_calls_page
    [--calls 100000] [--repeat 21]

The store is seeded in bulk with ``--calls`` call rows (50 DAGs, 20 runs each, 100 mapped calls per run, the
statuses of a morning of reminders: 70 % completed, 12 % no-answer, 10 % busy, 5 % failed, 3 % ringing) and
the schema's indexes. Each case is what one request of the page does once Airflow has said who the user is:
``CallLedger.list_calls`` (50 rows) plus the HTML rendering, and for the run filter ``run_summary`` and its
chart too; the user may read all 50 DAGs (their ids are in the query, as for a real user). The figure is the
median of ``--repeat`` requests after one warm-up, in milliseconds. The baseline, measured in the same run,
is the same deep page fetched with ``OFFSET`` instead of the keyset cursor.

The two ``HTTP GET`` rows are the same pages requested through the app's FastAPI routes (parsing the
filters, the HTML response) with Airflow's authentication replaced by a fixed user. Not included anywhere:
Airflow's authentication and ``get_authorized_dag_ids`` (a query of Airflow's own metadata database, the
same for every page of every plugin).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import random
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks.common import postgres_base_url, prepare_environment, store_url

if TYPE_CHECKING:
    from collections.abc import Callable

DAGS, RUNS_PER_DAG = 50, 20
STATUSES = [("completed", 70), ("no-answer", 12), ("busy", 10), ("failed", 5), ("ringing", 3)]


def _seed(url: str, count: int) -> None:
    import sqlalchemy as sa

    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.ledger.schema import calls

    ledger = CallLedger(url)
    ledger.upgrade()
    rng = random.Random(5)
    weights = [weight for _, weight in STATUSES]
    names = [name for name, _ in STATUSES]
    start = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    rows: list[dict[str, Any]] = []
    per_run = max(count // (DAGS * RUNS_PER_DAG), 1)
    with ledger.engine.begin() as conn:
        for index in range(count):
            run = index // per_run
            dag, run_no = run % DAGS, run // DAGS
            status = rng.choices(names, weights)[0]
            placed = start + dt.timedelta(seconds=index * 2)
            terminal = status != "ringing"
            rows.append(
                {
                    "call_uuid": f"call-{index:07d}",
                    "request_uuid": f"req-{index:07d}",
                    "leg_key": f"req-{index:07d}|+9198{index:08d}",
                    "destination": f"+9198{index:08d}",
                    "from_number": "+918000000000",
                    "ti_key": f"dag_{dag:02d}|run_{run_no:02d}|call|{index % per_run}",
                    "dag_id": f"dag_{dag:02d}",
                    "run_id": f"run_{run_no:02d}",
                    "task_id": "call",
                    "map_index": index % per_run,
                    "try_number": 1,
                    "conn_id": "vobiz_default",
                    "status": status,
                    "rank": 3 if terminal else 1,
                    "terminal": terminal,
                    "hangup_cause": "NORMAL_CLEARING" if status == "completed" else None,
                    "duration": 30 if status == "completed" else None,
                    "answer_time_utc": placed + dt.timedelta(seconds=5) if status == "completed" else None,
                    "end_time_utc": placed + dt.timedelta(seconds=35) if terminal else None,
                    "fired_at": placed,
                    "updated_at": placed + dt.timedelta(seconds=35),
                    "source": "callback",
                }
            )
            if len(rows) == 5000:
                conn.execute(sa.insert(calls), rows)
                rows = []
        if rows:
            conn.execute(sa.insert(calls), rows)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {calls.name}")
        else:
            conn.exec_driver_sql("ANALYZE")
    ledger.dispose()


def _median_ms(work: Callable[[], object], repeat: int) -> float:
    work()  # warm-up: the schema check, the first connection, statement compilation
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _measure(url: str, repeat: int) -> dict[str, float]:
    import sqlalchemy as sa

    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.ledger.call_views import CallFilter, _listed
    from vobiz_provider.ledger.schema import calls
    from vobiz_provider.views.access import Viewer
    from vobiz_provider.views.render import list_page

    ledger = CallLedger(url)
    dags = frozenset(f"dag_{index:02d}" for index in range(DAGS))
    viewer = Viewer(name="bench", readable_dag_ids=dags, editable_dag_ids=frozenset(), masking=True)

    def page(where: CallFilter, before: int | None = None, summary: bool = False) -> str:
        result = ledger.list_calls(where, limit=50, before=before)
        counts = ledger.run_summary(where.dag_id or "", where.run_id or "") if summary else None
        filters = {"dag_id": where.dag_id or "", "run_id": where.run_id or ""}
        return list_page(result, viewer=viewer, filters=filters, summary=counts)

    with ledger.engine.connect() as conn:
        top = conn.execute(sa.select(sa.func.max(calls.c.id))).scalar_one()
    middle = top // 2

    def offset_page() -> None:
        query = (
            sa.select(calls)
            .where(calls.c.dag_id.in_(sorted(dags)))
            .order_by(calls.c.id.desc())
            .offset(top - middle)
            .limit(51)
        )
        with ledger.engine.connect() as conn:
            [_listed(row._mapping) for row in conn.execute(query)]

    from fastapi.testclient import TestClient

    from vobiz_provider.views.access import current_user
    from vobiz_provider.views.app import _viewer, create_app

    app = create_app(ledger=ledger)
    app.dependency_overrides[current_user] = lambda: None
    app.dependency_overrides[_viewer] = lambda: viewer
    client = TestClient(app)

    def http(path: str) -> None:
        response = client.get(path)
        assert response.status_code == 200, response.text

    readable = CallFilter(allowed_dag_ids=dags)
    figures = {
        "first page (all calls)": _median_ms(lambda: page(readable), repeat),
        "filtered: one DAG run + its chart": _median_ms(
            lambda: page(CallFilter(allowed_dag_ids=dags, dag_id="dag_07", run_id="run_03"), summary=True),
            repeat,
        ),
        "filtered: status busy": _median_ms(
            lambda: page(CallFilter(allowed_dag_ids=dags, status="busy")), repeat
        ),
        "filtered: one DAG, placed within 1 day of the newest": _median_ms(
            lambda: page(
                CallFilter(
                    allowed_dag_ids=dags,
                    dag_id="dag_21",
                    since=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
                    + dt.timedelta(seconds=top * 2)
                    - dt.timedelta(days=1),
                )
            ),
            repeat,
        ),
        "first page of a user who may read 1 DAG of 50": _median_ms(
            lambda: page(CallFilter(allowed_dag_ids=frozenset({"dag_33"}))), repeat
        ),
        "filtered: status failed, one DAG": _median_ms(
            lambda: page(CallFilter(allowed_dag_ids=dags, dag_id="dag_12", status="failed")), repeat
        ),
        "deep page (keyset cursor, middle of the ledger)": _median_ms(
            lambda: page(readable, before=middle), repeat
        ),
        "baseline: the same deep page with OFFSET": _median_ms(offset_page, repeat),
        "HTTP GET / (the app's routes, a fixed user)": _median_ms(lambda: http("/"), repeat),
        "HTTP GET /?dag_id=dag_07&run_id=run_03 (with chart)": _median_ms(
            lambda: http("/?dag_id=dag_07&run_id=run_03"), repeat
        ),
    }
    client.close()
    ledger.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Seed, measure, print a markdown table per backend."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b6_calls_page", description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args(argv)
    prepare_environment()
    backends = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])
    for backend in backends:
        with store_url(backend, "b5") as url, contextlib.ExitStack():
            started = time.perf_counter()
            _seed(url, args.calls)
            seeded = time.perf_counter() - started
            figures = _measure(url, args.repeat)
        print(f"\n### B6 calls page, {args.calls:,} calls, {backend} (seeded in {seeded:.0f} s)\n")
        print("| page | median server time (ms) |\n|---|---|")
        for name, value in figures.items():
            print(f"| {name} | {value:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
