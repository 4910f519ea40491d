"""B3 — firing: the per-call cost of ``VobizHook.make_call`` and pacing to the account's CPS limit.

The emulator runs in its own process (``python -m vobiz_provider.testing.emulator``), so client and
"Vobiz" do not share an interpreter. Every call it accepts fails at once without callbacks
(``CallScript.failed()``), so the emulator's own work stays the same for every request.

1. **Per-call overhead**: ``VobizHook.make_call`` (validation, pacing off, retries, response model) against a
   raw ``httpx.Client.post`` of the same JSON body to the same emulator, interleaved in rounds; the figure
   is the median over rounds of median(hook) / median(raw).
2. **One task, ``<``-joined batches**: the recipients in requests of 1,000 destinations each, through one
   hook whose connection says ``cps`` = the emulator's limit.
3. **Mapped tasks**: one destination per request. Within one process (several threads sharing the
   process-wide pacer) and across processes (one per mapped task instance, each pacing itself to the
   connection's ``cps``, as Airflow workers do). The emulator answers excess calls 429 with ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import (
    BENCH_AUTH_ID,
    BENCH_AUTH_TOKEN,
    Check,
    Section,
    destination,
    fmt_ms,
    free_port,
    median,
    stop_process,
    wait_for_http,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

OVERHEAD_TARGET = 1.2
FREE_CONN = "vobiz_bench_free"
PACED_CONN = "vobiz_bench_paced"
CALLER_ID = "919000000001"
ANSWER_URL = "https://example.com/answer"


@dataclass(frozen=True, kw_only=True)
class B3Config:
    overhead_rounds: int = 5
    overhead_calls: int = 40
    cps: int = 10
    retry_after: int = 1
    batch_recipients: int = 10_000
    batch_size: int = 1_000
    mapped_recipients: int = 200
    mapped_workers: int = 4


FULL = B3Config()
SMOKE = B3Config(
    overhead_rounds=1,
    overhead_calls=5,
    batch_recipients=200,
    batch_size=100,
    mapped_recipients=12,
    mapped_workers=2,
)


def _call_fields(to: str | list[str]) -> dict[str, Any]:
    return {"from": CALLER_ID, "to": to, "answer_url": ANSWER_URL}


def _connection(base_url: str, *, cps: int | None) -> str:
    extra: dict[str, Any] = {"base_url": base_url, "max_retries": 3}
    if cps is not None:
        extra["cps"] = cps
    return json.dumps(
        {"conn_type": "vobiz", "login": BENCH_AUTH_ID, "password": BENCH_AUTH_TOKEN, "extra": extra}
    )


class _RetryCounter(logging.Handler):
    """Counts the client's "retry ..." warnings (one per re-sent request)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retry" in record.getMessage():
            self.retries += 1


@dataclass
class FireResult:
    placed: int = 0
    destinations: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    seconds: float = 0.0


def _fire(conn_id: str, batches: list[list[str]], threads: int) -> FireResult:
    """Place one call per batch through one hook, from ``threads`` threads; count what happened."""
    from vobiz_provider.hooks.vobiz import VobizHook

    counter = _RetryCounter()
    logging.getLogger("vobiz_provider.client").addHandler(counter)
    hook = VobizHook(vobiz_conn_id=conn_id)
    hook.get_conn()  # connection read and client built before the clock starts
    result = FireResult()
    lock = threading.Lock()
    queue = list(reversed(batches))

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                batch = queue.pop()
            try:
                hook.make_call(_call_fields(batch if len(batch) > 1 else batch[0]))
            except Exception as exc:
                with lock:
                    result.failures[type(exc).__name__] += 1
            else:
                with lock:
                    result.placed += 1
                    result.destinations += len(batch)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    result.seconds = time.perf_counter() - started
    result.retries = counter.retries
    hook.close()
    logging.getLogger("vobiz_provider.client").removeHandler(counter)
    return result


def _fire_process(pipe: Connection, conn_id: str, batches: list[list[str]], start_at: float) -> None:
    from vobiz_provider.client.pacing import pacer

    pacer.reset()  # a forked copy of the parent's pacer; this process paces on its own, as a worker would
    time.sleep(max(0.0, start_at - time.time()))
    pipe.send(_fire(conn_id, batches, threads=1))


def _fire_in_processes(conn_id: str, batches: list[list[str]], processes: int) -> tuple[FireResult, float]:
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0
    workers = []
    for index in range(processes):
        parent, child = context.Pipe()
        process = context.Process(
            target=_fire_process, args=(child, conn_id, batches[index::processes], start_at), daemon=True
        )
        process.start()
        workers.append((process, parent))
    total = FireResult()
    for process, parent in workers:
        part: FireResult = parent.recv()
        process.join(timeout=30)
        total.placed += part.placed
        total.destinations += part.destinations
        total.failures.update(part.failures)
        total.retries += part.retries
        total.seconds = max(total.seconds, part.seconds)
    return total, total.seconds


def _requests_summary(remote: Any) -> tuple[int, int, int, int]:
    """(POST /Call/ sent, GETs sent, 429s answered, POSTs accepted) since the last reset."""
    records = remote.requests()
    posts = [r for r in records if r["method"] == "POST" and r["path"].rstrip("/").endswith("/Call")]
    gets = [r for r in records if r["method"] == "GET"]
    return (
        len(posts),
        len(gets),
        sum(1 for r in posts if r["status"] == 429),
        sum(1 for r in posts if r["status"] in (200, 201)),
    )


def _overhead(remote: Any, base_url: str, config: B3Config, log: Any) -> tuple[float, float, float, float]:
    import httpx

    from vobiz_provider.hooks.vobiz import VobizHook
    from vobiz_provider.models.call import MakeCallRequest

    hook = VobizHook(vobiz_conn_id=FREE_CONN)
    raw = httpx.Client(
        base_url=base_url,
        headers={"X-Auth-ID": BENCH_AUTH_ID, "X-Auth-Token": BENCH_AUTH_TOKEN},
        timeout=10.0,
    )
    path = f"/Account/{BENCH_AUTH_ID}/Call/"
    ratios, hook_medians, raw_medians = [], [], []
    requests_per_call = []
    try:
        fields = _call_fields(destination(1))
        payload = MakeCallRequest.build(**fields).to_payload()
        hook.make_call(fields)  # warm: connection read, client built, pools open
        raw.post(path, json=payload).raise_for_status()
        for round_index in range(config.overhead_rounds):
            remote.reset()
            raw_times, hook_times = [], []
            for index in range(config.overhead_calls):
                started = time.perf_counter()
                response = raw.post(path, json=payload)
                raw_times.append(time.perf_counter() - started)
                response.raise_for_status()
                started = time.perf_counter()
                hook.make_call(_call_fields(destination(index)))
                hook_times.append(time.perf_counter() - started)
            posts, gets, _, _ = _requests_summary(remote)
            # Raw sends one POST per call; whatever else arrived came from the hook.
            requests_per_call.append((posts - config.overhead_calls + gets) / config.overhead_calls)
            ratios.append(median(hook_times) / median(raw_times))
            hook_medians.append(median(hook_times))
            raw_medians.append(median(raw_times))
            log(
                f"  B3 overhead round {round_index + 1}: hook {median(hook_times) * 1000:.2f} ms, "
                f"raw {median(raw_times) * 1000:.2f} ms"
            )
    finally:
        raw.close()
        hook.close()
    return median(ratios), median(hook_medians), median(raw_medians), median(requests_per_call)


def run(*, smoke: bool = False, log: Any = print) -> Section:
    """Run B3 and return its section of RESULTS.md."""
    import vobiz_provider.hooks.vobiz  # noqa: F401 - imported before forking, so children need not
    from vobiz_provider.testing.emulator.remote import RemoteEmulator
    from vobiz_provider.testing.emulator.script import CallScript

    config = SMOKE if smoke else FULL
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    base_url = f"{root}/api/v1"
    os.environ[f"AIRFLOW_CONN_{FREE_CONN.upper()}"] = _connection(base_url, cps=None)
    os.environ[f"AIRFLOW_CONN_{PACED_CONN.upper()}"] = _connection(base_url, cps=config.cps)
    section = Section(
        key="b3",
        title="B3 — firing",
        headers=[
            "run",
            "recipients",
            "POST /Call/ sent",
            "other requests",
            "429s",
            "failed",
            "wall time",
            "floor",
            "wall / floor",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="vobiz-bench-b3-") as directory:
        log_file = open(Path(directory) / "emulator.log", "ab")  # noqa: SIM115 - closed below
        emulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vobiz_provider.testing.emulator",
                "--port",
                str(port),
                "--auth-id",
                BENCH_AUTH_ID,
                "--auth-token",
                BENCH_AUTH_TOKEN,
                "--cps",
                "1000000",
                "--concurrency",
                "1000000",
                "--balance",
                "1000000000",
                "--retry-after",
                str(config.retry_after),
                "--log-level",
                "warning",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        remote = RemoteEmulator(root)
        try:
            wait_for_http(f"{root}/_emulator/health", process=emulator)
            remote.set_default_script(CallScript.failed())

            # 1. per-call overhead (no limits)
            ratio, hook_median, raw_median, per_call = _overhead(remote, base_url, config, log)
            section.checks.append(
                Check(
                    name="B3 VobizHook.make_call vs raw httpx POST (per-call time)",
                    measured=f"{ratio:.2f}x ({fmt_ms(hook_median, 2)} vs {fmt_ms(raw_median, 2)})",
                    target=f"≤ {OVERHEAD_TARGET}x",
                    passed=ratio <= OVERHEAD_TARGET,
                    note=f"the hook sends {per_call:.1f} HTTP requests per call (raw: 1)"
                    + (
                        ": before each POST /Call/, `VobizClient.make_call` lists the queued and the live "
                        "calls (two GETs, the snapshot its send-once recovery compares against)"
                        if per_call >= 2.5
                        else ""
                    ),
                )
            )
            overhead_row = [
                "per-call overhead: hook vs raw POST",
                f"{config.overhead_rounds} x {config.overhead_calls} each",
                "1 per call (both)",
                f"{per_call - 1:.1f} per hook call",
                "0",
                "0",
                f"hook {fmt_ms(hook_median, 2)}, raw {fmt_ms(raw_median, 2)}",
                "-",
                f"{ratio:.2f}x (hook / raw)",
            ]

            # 2. one task, `<`-joined batches, paced to the CPS limit
            remote.reset()
            remote.configure(cps=config.cps)
            recipients = [destination(index) for index in range(config.batch_recipients)]
            batches = [
                recipients[i : i + config.batch_size] for i in range(0, len(recipients), config.batch_size)
            ]
            batch = _fire(PACED_CONN, batches, threads=1)
            posts, gets, limited, _ = _requests_summary(remote)
            log(f"  B3 batches: {posts} POSTs, {limited} 429s, {batch.seconds:.1f} s")
            floor_requests = len(batches) / config.cps
            section.rows.append(overhead_row)
            section.rows.append(
                [
                    f"one task, `<` batches of {config.batch_size:,}",
                    f"{batch.destinations:,} / {config.batch_recipients:,}",
                    f"{posts:,}",
                    f"{gets:,} GET",
                    str(limited),
                    str(sum(batch.failures.values())),
                    f"{batch.seconds:.1f} s",
                    f"{floor_requests:.1f} s (requests / CPS); {config.batch_recipients / config.cps:,.0f} s "
                    "if CPS counted destinations",
                    f"{batch.seconds / floor_requests:.2f}",
                ]
            )
            section.checks.append(
                Check(
                    name="B3 429s within one process (one task, batches)",
                    measured=str(limited),
                    target="0",
                    passed=limited == 0 and batch.destinations == config.batch_recipients,
                )
            )

            # 3a. mapped tasks in one process: threads share the process-wide pacer
            singles = [[destination(index)] for index in range(config.mapped_recipients)]
            floor = config.mapped_recipients / config.cps
            remote.reset()
            one = _fire(PACED_CONN, singles, threads=config.mapped_workers)
            posts, gets, limited, _ = _requests_summary(remote)
            log(f"  B3 mapped, one process: {posts} POSTs, {limited} 429s, {one.seconds:.1f} s")
            section.rows.append(
                [
                    f"mapped, one process ({config.mapped_workers} threads)",
                    f"{one.placed:,} / {config.mapped_recipients:,}",
                    f"{posts:,}",
                    f"{gets:,} GET",
                    str(limited),
                    str(sum(one.failures.values())),
                    f"{one.seconds:.1f} s",
                    f"{floor:.1f} s",
                    f"{one.seconds / floor:.2f}",
                ]
            )
            section.checks.append(
                Check(
                    name=f"B3 429s within one process (mapped, {config.mapped_workers} threads)",
                    measured=str(limited),
                    target="0",
                    passed=limited == 0 and one.placed == config.mapped_recipients,
                )
            )

            # 3b. mapped tasks in separate processes, each pacing itself
            remote.reset()
            many, seconds = _fire_in_processes(PACED_CONN, singles, config.mapped_workers)
            posts, gets, limited, _ = _requests_summary(remote)
            workers = config.mapped_workers
            log(f"  B3 mapped, {workers} processes: {posts} POSTs, {limited} 429s, {seconds:.1f} s")
            failed = sum(many.failures.values())
            section.rows.append(
                [
                    f"mapped, {config.mapped_workers} processes",
                    f"{many.placed:,} / {config.mapped_recipients:,}",
                    f"{posts:,}",
                    f"{gets:,} GET",
                    str(limited),
                    str(failed)
                    + (f" ({', '.join(f'{n}x {k}' for k, n in many.failures.items())})" if failed else ""),
                    f"{seconds:.1f} s",
                    f"{floor:.1f} s",
                    f"{seconds / floor:.2f}",
                ]
            )
            bound = 3 * config.mapped_recipients  # max_retries re-sends per call at most
            section.checks.append(
                Check(
                    name=f"B3 429s across {config.mapped_workers} processes: bounded and recovered",
                    measured=(
                        f"{limited} 429s, {many.placed}/{config.mapped_recipients} placed, {failed} failed"
                    ),
                    target=f"≤ {bound} (max_retries x calls) and every call placed",
                    passed=limited <= bound and many.placed == config.mapped_recipients and failed == 0,
                )
            )
        finally:
            remote.close()
            stop_process(emulator)
            log_file.close()
    section.method = (
        f"Emulator in its own process, every call fails at once (no callbacks). Overhead: "
        f"{config.overhead_rounds} rounds of {config.overhead_calls} raw POSTs interleaved with "
        f"{config.overhead_calls} `VobizHook.make_call`s, no CPS limit; median over rounds of the ratio of "
        f"medians. Firing: emulator CPS limit {config.cps} (sliding one-second window, counted per "
        f"POST /Call/), Retry-After {config.retry_after} s on 429, connection `cps={config.cps}`, "
        f"`max_retries=3`. Scaling: the batched run fires the full {config.batch_recipients:,} recipients; "
        f"the mapped runs fire {config.mapped_recipients:,} recipients (one per request) at the real CPS of "
        f"{config.cps}, because {config.batch_recipients:,} single calls would take "
        f"{config.batch_recipients / config.cps:,.0f} s at the floor; pacing and 429 behaviour depend on the "
        "rate, not on the count."
    )
    return section
