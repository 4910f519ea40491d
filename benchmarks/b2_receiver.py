"""B2 — receiver ingest: the standalone receiver under 1, 8 and 64 concurrent senders.

The receiver runs as in production: ``vobiz-callbacks serve`` in its own process, signatures required and
checked against the configured public URL, a SQLite (WAL) file store or a PostgreSQL store, default log
level. The baseline, measured in the same run and interleaved with it, is a bare ASGI endpoint on the same
server stack (uvicorn with the same loop and HTTP implementation, same log level) that reads the body and
answers 200.

Every callback is a realistic hangup (the full Plivo-style field set) of a distinct call, posted
form-encoded to ``/vobiz/callbacks/hangup?t=<signed correlation token>`` with real ``X-Vobiz-Signature-V2/
V3`` headers and a fresh nonce. Senders are closed-loop: each of the C senders posts its next callback as
soon as the previous one is answered. After the runs, the events in the store are counted and compared
with the 200s the receiver answered.

Run as a module (``python -m benchmarks.b2_receiver --bare-server --port P``) it serves the bare endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from benchmarks.common import (
    BENCH_AUTH_ID,
    BENCH_AUTH_TOKEN,
    BENCH_SECRET,
    REPO_ROOT,
    Check,
    Section,
    destination,
    fmt,
    fmt_int,
    fmt_ms,
    free_port,
    hangup_form,
    median,
    new_uuid,
    percentile,
    postgres_base_url,
    stop_process,
    store_url,
    wait_for_http,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CONCURRENCY = (1, 8, 64)
P99_TARGET = 0.050
THROUGHPUT_RATIO_TARGET = 0.5
#: Distinct correlation tokens used (one per simulated task instance).
TOKENS = 500


@dataclass(frozen=True, kw_only=True)
class B2Config:
    concurrency: tuple[int, ...] = CONCURRENCY
    duration: float = 2.0
    repetitions: int = 3
    warmup: float = 0.5


FULL = B2Config()
SMOKE = B2Config(concurrency=(1, 8), duration=0.3, repetitions=1, warmup=0.1)


# ---------------------------------------------------------------------------------------------------------
# the bare endpoint (baseline)
# ---------------------------------------------------------------------------------------------------------


async def bare_app(
    scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any
) -> None:
    """ASGI: drain the request body, answer 200 ``{"status": "stored"}``. Nothing else."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"status":"stored"}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _serve_bare(port: int, log_level: str) -> None:
    import uvicorn

    # The same uvicorn settings as `vobiz-callbacks serve` (vobiz_provider.callbacks.cli._serve).
    uvicorn.run(bare_app, host="127.0.0.1", port=port, log_level=log_level, server_header=False)


# ---------------------------------------------------------------------------------------------------------
# load generation
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


class CallbackFactory:
    """Signed hangup callbacks of distinct calls, as Vobiz would post them to the receiver.

    :param base_url: The receiver root (``http://127.0.0.1:P/vobiz``), also the configured public URL.
    """

    def __init__(self, base_url: str) -> None:
        from vobiz_provider.callbacks.correlation import CorrelationToken, callback_url

        self.public_url = f"{base_url}/callbacks/hangup"
        self.urls = [
            callback_url(
                base_url,
                "hangup",
                CorrelationToken(dag_id="reminders", run_id="bench", task_id="call", map_index=index).encode(
                    BENCH_SECRET
                ),
            )
            for index in range(TOKENS)
        ]
        self.count = 0

    def next(self) -> tuple[str, bytes, dict[str, str]]:
        from vobiz_provider.signatures import signature_headers

        index = self.count
        self.count += 1
        form = hangup_form(call_uuid=new_uuid(), request_uuid=new_uuid(), to=destination(index))
        headers = signature_headers(self.public_url, BENCH_AUTH_TOKEN)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.urls[index % TOKENS], urlencode(form).encode(), headers


async def _load(base_url: str, *, concurrency: int, duration: float) -> LoadResult:
    import httpx

    factory = CallbackFactory(base_url)
    result = LoadResult(seconds=duration)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        stop_at = time.perf_counter() + duration

        async def sender() -> None:
            while time.perf_counter() < stop_at:
                url, body, headers = factory.next()
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError:
                    result.errors += 1
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    status = str(response.json().get("status"))
                    result.bodies[status] = result.bodies.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def load(base_url: str, *, concurrency: int, duration: float) -> LoadResult:
    """Post signed hangup callbacks from ``concurrency`` closed-loop senders for ``duration`` seconds."""
    return asyncio.run(_load(base_url, concurrency=concurrency, duration=duration))


# ---------------------------------------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------------------------------------


def _receiver_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("vobiz-callbacks")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "vobiz_provider.callbacks.cli"]
    return [*prefix, "serve", "--host", "127.0.0.1", "--port", str(port)]


def _start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _count_stored(url: str) -> tuple[int, int]:
    import sqlalchemy as sa

    from vobiz_provider.callbacks.schema import calls, events
    from vobiz_provider.callbacks.store import CallbackStore

    store = CallbackStore(url)
    try:
        with store.engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
            keys = conn.execute(sa.select(sa.func.count(sa.distinct(events.c.dedupe_key)))).scalar_one()
            conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar_one()
    finally:
        store.dispose()
    return stored, stored - keys


@dataclass(kw_only=True)
class Row:
    backend: str
    concurrency: int
    bare: list[LoadResult]
    receiver: list[LoadResult]


def _bench_backend(
    backend: str, config: B2Config, workdir: Path, log: Any
) -> tuple[list[Row], int, int, int, int]:
    rows: list[Row] = []
    with store_url(backend, "b2") as url:
        receiver_port, bare_port = free_port(), free_port()
        base_url = f"http://127.0.0.1:{receiver_port}/vobiz"
        env = os.environ.copy()
        env.update(
            {
                "AIRFLOW__VOBIZ__CALLBACK_STORE": url,
                "AIRFLOW__VOBIZ__CALLBACK_SECRET": BENCH_SECRET,
                "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": base_url,
                "AIRFLOW__VOBIZ__REQUIRE_SIGNATURES": "True",
                "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(
                    {"conn_type": "vobiz", "login": BENCH_AUTH_ID, "password": BENCH_AUTH_TOKEN}
                ),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        receiver = _start(_receiver_command(receiver_port), env, workdir / f"receiver-{backend}.log")
        bare = _start(
            [sys.executable, "-m", "benchmarks.b2_receiver", "--bare-server", "--port", str(bare_port)],
            env,
            workdir / f"bare-{backend}.log",
        )
        try:
            wait_for_http(f"{base_url}/health", process=receiver)
            wait_for_http(f"http://127.0.0.1:{bare_port}/", process=bare)
            bare_url = f"http://127.0.0.1:{bare_port}/vobiz"
            answered = duplicates_answered = 0
            for concurrency in config.concurrency:
                row = Row(backend=backend, concurrency=concurrency, bare=[], receiver=[])
                # Warm both (connections, thread pools, caches); the receiver's warm-up callbacks count.
                warm = load(base_url, concurrency=concurrency, duration=config.warmup)
                answered += warm.bodies.get("stored", 0)
                duplicates_answered += warm.bodies.get("duplicate", 0)
                load(bare_url, concurrency=concurrency, duration=config.warmup)
                for _ in range(config.repetitions):
                    row.bare.append(load(bare_url, concurrency=concurrency, duration=config.duration))
                    measured = load(base_url, concurrency=concurrency, duration=config.duration)
                    row.receiver.append(measured)
                    answered += measured.bodies.get("stored", 0)
                    duplicates_answered += measured.bodies.get("duplicate", 0)
                log(
                    f"  B2 {backend} c={concurrency}: receiver "
                    f"{median([r.throughput for r in row.receiver]):.0f}/s, bare "
                    f"{median([r.throughput for r in row.bare]):.0f}/s"
                )
                rows.append(row)
        finally:
            stop_process(receiver)
            stop_process(bare)
        stored, duplicate_rows = _count_stored(url)
    return rows, answered, duplicates_answered, stored, duplicate_rows


def run(*, smoke: bool = False, log: Any = print) -> Section:
    """Run B2 and return its section of RESULTS.md."""
    config = SMOKE if smoke else FULL
    backends = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])
    section = Section(
        key="b2",
        title="B2 — receiver ingest",
        method=(
            f"Closed-loop senders (httpx.AsyncClient in the benchmark process) at concurrency "
            f"{', '.join(map(str, config.concurrency))}; {config.repetitions} runs of {config.duration:g} s "
            "per level, receiver and bare endpoint interleaved; figures are medians over the runs. Receiver: "
            "`vobiz-callbacks serve` (uvicorn + uvloop + httptools, log level info), require_signatures on, "
            "callback_base_url set, signatures V2+V3 with fresh nonces, one distinct call per callback."
        ),
        headers=[
            "store",
            "senders",
            "receiver callbacks/s",
            "bare endpoint req/s",
            "ratio",
            "receiver p50",
            "receiver p99",
            "bare p50",
            "bare p99",
            "non-200 answers",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="vobiz-bench-b2-") as directory:
        for backend in backends:
            rows, answered, duplicates_answered, stored, duplicate_rows = _bench_backend(
                backend, config, Path(directory), log
            )
            name = "SQLite" if backend == "sqlite" else "PostgreSQL"
            for row in rows:
                receiver_tp = median([r.throughput for r in row.receiver])
                bare_tp = median([r.throughput for r in row.bare])
                ratio = receiver_tp / bare_tp if bare_tp else 0.0
                p50 = median([percentile(r.latencies, 50) for r in row.receiver])
                p99 = median([percentile(r.latencies, 99) for r in row.receiver])
                non_200 = {
                    status: sum(r.statuses.get(status, 0) for r in row.receiver)
                    for status in {s for r in row.receiver for s in r.statuses}
                    if status != 200
                }
                errors = sum(r.errors for r in row.receiver)
                section.rows.append(
                    [
                        name,
                        str(row.concurrency),
                        fmt_int(receiver_tp),
                        fmt_int(bare_tp),
                        fmt(ratio * 100, 0, " %"),
                        fmt_ms(p50, 1),
                        fmt_ms(p99, 1),
                        fmt_ms(median([percentile(r.latencies, 50) for r in row.bare]), 1),
                        fmt_ms(median([percentile(r.latencies, 99) for r in row.bare]), 1),
                        ", ".join(f"{count}x {status}" for status, count in sorted(non_200.items()))
                        + (f", {errors} transport errors" if errors else "")
                        or "0",
                    ]
                )
                label = f"{row.concurrency} sender{'s' if row.concurrency > 1 else ''}, {name}"
                section.checks.append(
                    Check(
                        name=f"B2 throughput vs bare endpoint, {label}",
                        measured=f"{ratio * 100:.0f} % ({receiver_tp:,.0f} vs {bare_tp:,.0f}/s)",
                        target="≥ 50 %",
                        passed=ratio >= THROUGHPUT_RATIO_TARGET,
                    )
                )
                section.checks.append(
                    Check(
                        name=f"B2 p99 latency, {label}",
                        measured=fmt_ms(p99, 1),
                        target="< 50 ms",
                        passed=p99 < P99_TARGET,
                    )
                )
            section.notes.append(
                f"{name}: {answered:,} callbacks answered 200 `stored`, {duplicates_answered} answered "
                f"`duplicate`; {stored:,} events in the store, {duplicate_rows} stored twice."
            )
            section.checks.append(
                Check(
                    name=f"B2 stored == answered (0 lost, 0 duplicated), {name}",
                    measured=f"{stored:,} stored / {answered:,} answered, {duplicate_rows} dup",
                    target="equal, 0 dup",
                    passed=stored == answered and duplicate_rows == 0 and duplicates_answered == 0,
                )
            )
    if not postgres_base_url():
        section.notes.append(
            "PostgreSQL rows skipped: set VOBIZ_BENCH_POSTGRES_URL (or VOBIZ_TEST_POSTGRES_URL) to include "
            "them."
        )
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="B2 helper: serve the bare ASGI endpoint")
    parser.add_argument("--bare-server", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    _serve_bare(args.port, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
