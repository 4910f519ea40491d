"""Reminder calls at scale on a scaled-out Airflow, with a worker, a triggerer and a receiver lost on the way.

The deployment (``_deployment.py``, also ``./scripts/cluster up``): PostgreSQL metadata DB and callback
store, ``CeleryExecutor`` on Redis, two Celery workers, two triggerers, the receiver standalone and as the
API server's plugin behind nginx, the emulator as Vobiz with ``cps`` 10. The DAG maps one deferrable
``VobizCallOperator`` over :data:`RECIPIENTS` recipients (60 in CI; ``./scripts/cluster bench`` runs 500).

1. The emulator holds every call queued, so that every call stays in progress until all are placed.
2. While the tasks place their calls, ``worker-2`` gets ``kill -9`` (its whole process group) as soon as it
   runs tasks of the run, and is started again. Its tasks stop heartbeating, Airflow fails and retries
   them; a retry finds the call its try placed (or places the one it never did) and defers.
3. Once every task is deferred, with triggers on both triggerers, the triggerer running more of them gets
   ``kill -9`` and the standalone receiver is stopped; then the calls are released at ``cps`` per second,
   as Vobiz dials the calls it queued: they ring and are answered, busy or unanswered after realistic
   delays, and their callbacks go through nginx to the plugin.
   The other triggerer takes the dead one's triggers over after the heartbeat threshold.

Then: every task succeeded; exactly one ``POST /Call/`` per recipient, none refused with 429, never more
than ``cps`` accepted in one sliding second; every hangup is in the store with the emulator's status; the
triggers ran on both triggerers. The figures and the callback-to-resume latency are printed.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa
from _callee_mix import realistic_script
from _deployment import CPS, Cluster, deployment
from _scale_figures import RECIPIENTS, ScaleFigures, max_rate, percentile
from _waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

DAG_ID = "vobiz_cluster_reminders"
TERMINAL = {"completed", "busy", "no-answer", "failed", "timeout", "cancel", "canceled"}
#: Seconds per recipient allowed on top of a fixed allowance (2 busy cores).
SECONDS_PER_RECIPIENT = 3.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.timeout(int(900 + RECIPIENTS * 2 * SECONDS_PER_RECIPIENT)),
]


@pytest.fixture
def cluster(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("cluster")
    with deployment(home) as running:
        yield running


def _descends_from(pid: int, root: int) -> bool:
    """Whether process ``pid`` is ``root`` or one of its descendants (Linux ``/proc``)."""
    seen = 0
    while pid > 1 and seen < 64:
        if pid == root:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        seen += 1
    return False


class _TriggerWatch:
    """Samples the metadata DB every half second: which triggerer runs the trigger of which task."""

    def __init__(self, cluster: Cluster, run_id: str) -> None:
        self.cluster = cluster
        self.run_id = run_id
        self.first: dict[int, int] = {}  # map_index -> triggerer job id first seen running its trigger
        self.seen: dict[int, set[int]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trigger-watch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.sample()
            except Exception:  # the DB is busy: next time
                continue

    def sample(self) -> list[tuple[int, int]]:
        rows = self.cluster.airflow.query(
            "SELECT ti.map_index, t.triggerer_id FROM task_instance ti "
            "JOIN trigger t ON t.id = ti.trigger_id WHERE ti.dag_id = ? AND ti.run_id = ? "
            "AND ti.task_id = 'call' AND t.triggerer_id IS NOT NULL",
            DAG_ID,
            self.run_id,
        )
        for map_index, triggerer in rows:
            self.first.setdefault(int(map_index), int(triggerer))
            self.seen[int(map_index)].add(int(triggerer))
        return [(int(m), int(t)) for m, t in rows]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _tis(cluster: Cluster, run_id: str) -> dict[int, dict[str, Any]]:
    rows = cluster.airflow.query(
        "SELECT map_index, state, try_number, pid, scheduled_dttm, end_date FROM task_instance "
        "WHERE dag_id = ? AND run_id = ? AND task_id = 'call'",
        DAG_ID,
        run_id,
    )
    keys = ("map_index", "state", "try_number", "pid", "scheduled_dttm", "end_date")
    return {int(row[0]): dict(zip(keys, row, strict=True)) for row in rows}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def test_reminders_at_scale_survive_a_worker_a_triggerer_and_a_receiver_lost(cluster: Cluster) -> None:
    airflow, remote = cluster.airflow, cluster.emulator
    recipients = [f"+91983{index:07d}" for index in range(RECIPIENTS)]
    remote.reset()
    for index, number in enumerate(recipients):
        remote.script(number, realistic_script(index, answer_after=(2.0, 8.0), no_answer_after=(8.0, 15.0)))
    remote.hold_calls()

    wait_until(
        lambda: airflow.api.get(f"/dags/{DAG_ID}").status_code == 200,
        timeout=180,
        interval=1.0,
        message=lambda: f"{DAG_ID} not parsed: {airflow.get('/importErrors')}\n{airflow.describe()}",
    )
    airflow.api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
    triggerer_jobs = [
        int(row[0])
        for row in airflow.query(
            "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' ORDER BY id"
        )
    ]
    assert len(triggerer_jobs) == 2, triggerer_jobs
    began = time.monotonic()
    response = airflow.api.post(
        f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"recipients": recipients}}
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    watch = _TriggerWatch(cluster, run_id)

    def diagnostics() -> str:
        try:
            states = Counter((ti["state"], ti["try_number"]) for ti in _tis(cluster, run_id).values())
        except Exception as exc:
            states = Counter({f"unreadable: {exc}": 1})
        return f"task states (state, try): {dict(states)}\n{airflow.describe()}"

    try:
        # 2. kill -9 worker-2 while it runs tasks of the run; start it again.
        worker = airflow.processes["worker-2"]

        def on_worker_2() -> list[int] | None:
            running = [
                ti["map_index"]
                for ti in _tis(cluster, run_id).values()
                if ti["state"] == "running" and ti["pid"] and _descends_from(int(ti["pid"]), worker.pid)
            ]
            return running or None

        killed_tasks = wait_until(
            on_worker_2, timeout=300, interval=0.2, message=lambda: f"worker-2 ran no task\n{diagnostics()}"
        )
        cluster.kill("worker-2")
        cluster.start_worker("worker-2")

        # Every task deferred (the killed ones after their retry), each trigger picked up by a triggerer.
        def all_deferred() -> dict[int, int] | None:
            assignments = dict(watch.sample())
            tis = _tis(cluster, run_id)
            deferred = [m for m, ti in tis.items() if ti["state"] == "deferred"]
            if len(deferred) == RECIPIENTS and len(assignments) == RECIPIENTS:
                return assignments
            return None

        assignments = wait_until(
            all_deferred,
            timeout=300 + RECIPIENTS * SECONDS_PER_RECIPIENT,
            interval=1.0,
            message=lambda: f"not every task deferred\n{diagnostics()}",
        )
        held = [call for call in remote.calls() if call["to"] in set(recipients)]
        assert len(held) == RECIPIENTS and {c["status"] for c in held} == {"queued"}, diagnostics()

        # 3. kill -9 the triggerer running more triggers, stop the standalone receiver, let the calls go on.
        held_by = Counter(assignments.values())
        victim = 0 if held_by[triggerer_jobs[0]] >= held_by[triggerer_jobs[1]] else 1
        on_killed_triggerer = [m for m, job in assignments.items() if job == triggerer_jobs[victim]]
        cluster.kill(f"triggerer-{victim + 1}")
        airflow.stop("receiver", grace=10)
        receiver_stopped_at = datetime.now(timezone.utc)
        # As Vobiz dials what it queued: at the account's CPS, first placed first (not 500 rings at once).
        remote.release_calls(per_second=CPS)

        def run_state() -> str | None:
            try:
                state: str = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
            except httpx.HTTPError:
                return None
            return state if state in ("success", "failed") else None

        final = wait_until(
            run_state,
            timeout=300 + RECIPIENTS * SECONDS_PER_RECIPIENT,
            interval=2.0,
            message=lambda: f"the run did not end\n{diagnostics()}",
        )
        duration = time.monotonic() - began
    finally:
        watch.stop()
        remote.release_calls()

    figures, problems = _figures(
        cluster,
        run_id,
        recipients,
        killed_tasks=killed_tasks,
        on_killed_triggerer=on_killed_triggerer,
        triggerer_jobs=triggerer_jobs,
        first_triggerer=watch.first,
        receiver_stopped_at=receiver_stopped_at,
        duration=duration,
    )
    print(figures.line())
    print(figures.table())
    report = os.environ.get("VOBIZ_CLUSTER_REPORT")
    if report:
        Path(report).write_text(figures.line() + "\n" + figures.table() + "\n")

    assert final == "success", diagnostics()
    assert not problems, "\n".join(problems) + f"\n{diagnostics()}"
    assert figures.calls_placed == RECIPIENTS and figures.double_dials == 0
    assert figures.http_429 == 0
    assert figures.max_rate <= CPS
    assert figures.lost_outcomes == 0
    assert min(figures.triggers_per_triggerer) > 0, figures
    assert figures.worker_kill_tasks > 0 and figures.triggerer_kill_triggers > 0
    assert figures.callbacks_after_receiver_stop > 0


def _figures(
    cluster: Cluster,
    run_id: str,
    recipients: list[str],
    *,
    killed_tasks: list[int],
    on_killed_triggerer: list[int],
    triggerer_jobs: list[int],
    first_triggerer: dict[int, int],
    receiver_stopped_at: datetime,
    duration: float,
) -> tuple[ScaleFigures, list[str]]:
    remote = cluster.emulator
    wanted = set(recipients)
    posts = [r for r in remote.requests() if r["method"] == "POST" and r["path"].endswith("/Call/")]
    accepted = [r for r in posts if r["status"] == 201 and (r.get("body") or {}).get("to") in wanted]
    per_recipient = Counter((r.get("body") or {}).get("to") for r in accepted)
    calls = {c["to"]: c for c in remote.calls() if c["to"] in wanted}
    by_uuid = {c["call_uuid"]: c for c in calls.values()}
    callbacks = [c for c in remote.callbacks() if c["call_uuid"] in by_uuid]
    tis = _tis(cluster, run_id)

    problems = []
    for index, number in enumerate(recipients):
        ti = tis.get(index)
        if ti is None or ti["state"] != "success":
            problems.append(f"{number}: task {ti and ti['state']}")
        if per_recipient[number] != 1:
            problems.append(f"{number}: dialled {per_recipient[number]} times")
        if index in killed_tasks and ti is not None and ti["try_number"] < 2:
            problems.append(
                f"{number}: ran on the killed worker but was not retried (try {ti['try_number']})"
            )

    engine = sa.create_engine(cluster.store_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.connect() as conn:
        stored_calls = {
            row.call_uuid: row
            for row in conn.execute(
                sa.text("SELECT call_uuid, status, hangup_cause_code, source FROM vobiz_calls")
            )
        }
        hangups = {
            row.call_uuid: _aware(row.received_at)
            for row in conn.execute(
                sa.text(
                    "SELECT call_uuid, MIN(received_at) AS received_at FROM vobiz_callback_events "
                    "WHERE kind = 'hangup' GROUP BY call_uuid"
                )
            )
        }
    engine.dispose()
    lost = 0
    for call in calls.values():
        stored = stored_calls.get(call["call_uuid"])
        if (
            stored is None
            or call["call_uuid"] not in hangups
            or stored.status != call["status"]
            or stored.hangup_cause_code != call["hangup_cause_code"]
        ):
            lost += 1
    lost += sum(1 for number in recipients if number not in calls)
    lost += sum(1 for ti in tis.values() if ti["state"] != "success")

    event_latency, finished_latency, failover = [], [], []
    for index, number in enumerate(recipients):
        call, ti = calls.get(number), tis.get(index)
        if call is None or ti is None or call["call_uuid"] not in hangups or ti["end_date"] is None:
            continue
        received = hangups[call["call_uuid"]]
        finished = (_aware(ti["end_date"]) - received).total_seconds()
        if index in on_killed_triggerer:
            failover.append(finished)
            continue
        finished_latency.append(finished)
        if ti["scheduled_dttm"] is not None:
            event_latency.append((_aware(ti["scheduled_dttm"]) - received).total_seconds())

    distribution = Counter(first_triggerer.values())
    figures = ScaleFigures(
        recipients=len(recipients),
        calls_placed=len(accepted),
        http_429=sum(1 for r in posts if r["status"] == 429),
        cps=CPS,
        max_rate=max_rate([datetime.fromisoformat(r["received_at"]) for r in accepted]),
        double_dials=sum(max(0, n - 1) for n in per_recipient.values()),
        lost_outcomes=lost,
        triggers_per_triggerer=(distribution[triggerer_jobs[0]], distribution[triggerer_jobs[1]]),
        worker_kill_tasks=len(killed_tasks),
        triggerer_kill_triggers=len(on_killed_triggerer),
        callbacks_after_receiver_stop=sum(
            1
            for c in callbacks
            if c["status"] == 200 and datetime.fromisoformat(c["sent_at"]) >= receiver_stopped_at
        ),
        failed_callback_attempts=sum(1 for c in callbacks if c["status"] != 200),
        event_p50_s=percentile(event_latency, 50),
        event_p99_s=percentile(event_latency, 99),
        finished_p50_s=percentile(finished_latency, 50),
        finished_p99_s=percentile(finished_latency, 99),
        failover_finished_max_s=max(failover, default=float("nan")),
        duration_s=duration,
    )
    return figures, problems
