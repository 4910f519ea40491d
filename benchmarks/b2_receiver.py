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
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

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
#: Callbacks per second no receiver here reaches: the calls recorded before a load cover it.
MAX_RATE = 4000


@dataclass(frozen=True, kw_only=True)
class B2Config:
    concurrency: tuple[int, ...] = CONCURRENCY
    duration: float = 1.5
    repetitions: int = 3
    warmup: float = 0.5
    step_samples: int = 200


FULL = B2Config()
SMOKE = B2Config(concurrency=(1, 8), duration=0.3, repetitions=1, warmup=0.1, step_samples=5)


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

    # The same uvicorn as `vobiz-callbacks serve` (vobiz_provider.receiver.cli._serve), without its connection
    # guard and limits: a few dictionary operations per request and a timer per connection.
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
    sent: int = 0
    #: Callbacks not answered 200 (refused, 503, connection error): Vobiz would send them again.
    unacknowledged: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


class CallbackFactory:
    """Signed hangup callbacks of distinct calls, as Vobiz would post them to the receiver.

    The receiver stores only callbacks of calls their URL's try placed, so the factory first records
    ``capacity`` calls in the ledger, as :data:`TOKENS` tries that each placed their share (untimed), and
    then hands out one hangup per call, cycling through the tries.

    :param base_url: The receiver root (``http://127.0.0.1:P/vobiz``), also the configured public URL.
    :param ledger_url: The receiver's ledger (``None`` for the bare endpoint: nothing is recorded, each
        callback names a new call).
    :param capacity: How many calls to record: more than the load can send.
    """

    def __init__(self, base_url: str, ledger_url: str | None, *, capacity: int) -> None:
        from vobiz_provider.correlation import KINDS_OF_URL, CorrelationToken, callback_url
        from vobiz_provider.ledger import CallLedger

        self.public_url = f"{base_url}/callbacks/hangup"
        tries = [
            CorrelationToken(
                dag_id="reminders", run_id=f"bench-{new_uuid()}", task_id="call", map_index=index
            )
            for index in range(TOKENS)
        ]
        expires_at = time.time() + 86400
        self.urls = [
            callback_url(
                base_url,
                "hangup",
                token.encode(BENCH_SECRET, kinds=KINDS_OF_URL["hangup"], expires_at=expires_at),
            )
            for token in tries
        ]
        per_try = -(-capacity // TOKENS)
        self.calls: list[tuple[str, str]] = []  # (request uuid, destination), one try after the other
        self.count = 0
        if ledger_url is None:
            return
        placed: list[list[tuple[str, str]]] = []
        ledger = CallLedger(ledger_url)
        try:
            for index, correlation in enumerate(tries):
                calls = [(new_uuid(), destination(index * per_try + k)) for k in range(per_try)]
                ledger.register_fired_calls(
                    request_uuids=[request for request, _ in calls],
                    destinations=[to for _, to in calls],
                    correlation=correlation,
                )
                placed.append(calls)
        finally:
            ledger.dispose()
        self.calls = [placed[index][k] for k in range(per_try) for index in range(TOKENS)]

    def next(self) -> tuple[str, bytes, dict[str, str]]:
        from vobiz_provider.signatures import signature_headers

        index = self.count
        self.count += 1
        request_uuid, to = (
            self.calls[index % len(self.calls)] if self.calls else (new_uuid(), destination(index))
        )
        form = hangup_form(call_uuid=new_uuid(), request_uuid=request_uuid, to=to)
        headers = signature_headers(self.public_url, BENCH_AUTH_TOKEN)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.urls[index % TOKENS], urlencode(form).encode(), headers


class _Connection:
    """One keep-alive HTTP/1.1 connection of one sender: a request, then its whole answer, and again.

    A sender owns its connection, so no pool is shared: httpx's pool, not the server, capped the bare
    endpoint at a few hundred requests per second with 64 senders on this machine.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"POST {target} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        payload = await self.reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _load(factory: CallbackFactory, base_url: str, *, concurrency: int, duration: float) -> LoadResult:
    parts = urlsplit(base_url)
    result = LoadResult(seconds=duration)
    stop_at = time.perf_counter() + duration

    async def sender() -> None:
        connection = _Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            while time.perf_counter() < stop_at:
                url, body, headers = factory.next()
                result.sent += 1
                target = url[len(f"{parts.scheme}://{parts.netloc}") :]
                started = time.perf_counter()
                try:
                    status, payload = await connection.post(target, body, headers)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    result.unacknowledged.append((url, body, headers))
                    await connection.close()
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status == 200:
                    answer = str(json.loads(payload).get("status"))
                    result.bodies[answer] = result.bodies.get(answer, 0) + 1
                else:
                    result.unacknowledged.append((url, body, headers))
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


async def _resend(items: list[tuple[str, bytes, dict[str, str]]], attempts: int) -> dict[str, int]:
    answers: dict[str, int] = {}
    for url, body, headers in items:
        parts = urlsplit(url)
        connection = _Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        answer = "never acknowledged"
        try:
            for _ in range(attempts):
                try:
                    status, payload = await connection.post(
                        url[len(f"{parts.scheme}://{parts.netloc}") :], body, headers
                    )
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    await connection.close()
                    status, payload = 0, b""
                if status == 200:
                    answer = str(json.loads(payload).get("status"))
                    break
                await asyncio.sleep(0.5)
        finally:
            await connection.close()
        answers[answer] = answers.get(answer, 0) + 1
    return answers


def resend(items: list[tuple[str, bytes, dict[str, str]]], *, attempts: int = 5) -> dict[str, int]:
    """Send unacknowledged callbacks again, byte for byte (same signature and nonce), as Vobiz retries.

    :return: How the resends were finally answered (``stored``, ``duplicate`` or ``never acknowledged``).
    """
    return asyncio.run(_resend(items, attempts))


@dataclass
class Ledger:
    """What happened to every distinct callback sent to the receiver of one store."""

    sent: int = 0
    stored: int = 0
    duplicate: int = 0
    unacknowledged: int = 0
    resent: dict[str, int] = field(default_factory=dict)

    def add(self, result: LoadResult) -> None:
        self.sent += result.sent
        self.stored += result.bodies.get("stored", 0)
        self.duplicate += result.bodies.get("duplicate", 0)
        self.unacknowledged += len(result.unacknowledged)
        for answer, count in resend(result.unacknowledged).items():
            self.resent[answer] = self.resent.get(answer, 0) + count

    @property
    def acknowledged(self) -> int:
        """Distinct callbacks answered 200 at last (first try or a resend)."""
        return self.stored + self.duplicate + self.resent.get("stored", 0) + self.resent.get("duplicate", 0)


def load(
    base_url: str, *, concurrency: int, duration: float, factory: CallbackFactory | None = None
) -> LoadResult:
    """Post signed hangup callbacks from ``concurrency`` closed-loop senders for ``duration`` seconds.

    :param factory: Hands out the callbacks, of calls recorded in the receiver's ledger; by default one
        that records nothing (the bare endpoint stores nothing).
    """
    factory = factory or CallbackFactory(base_url, None, capacity=0)
    run = _load(factory, base_url, concurrency=concurrency, duration=duration)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(run)
    return uvloop.run(run)


# ---------------------------------------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------------------------------------


def _receiver_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("vobiz-callbacks")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "vobiz_provider.receiver.cli"]
    return [*prefix, "serve", "--host", "127.0.0.1", "--port", str(port)]


def _start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _count_stored(url: str) -> tuple[int, int]:
    import sqlalchemy as sa

    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.ledger.schema import calls, events

    store = CallLedger(url)
    try:
        with store.engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
            keys = conn.execute(sa.select(sa.func.count(sa.distinct(events.c.dedupe_key)))).scalar_one()
            conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar_one()
    finally:
        store.dispose()
    return stored, stored - keys


def stage_costs(url: str, *, samples: int) -> dict[str, float]:
    """Median seconds of each step the receiver takes per callback, run in this process on ``url``.

    The same functions the receiver calls, without HTTP: correlation token, signatures, callback model,
    and the store's transaction (nonce + event + call row).
    """
    from vobiz_provider.correlation import KINDS_OF_URL, CorrelationToken, with_callback_credentials
    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.models.callbacks import parse_callback
    from vobiz_provider.signatures import signature_headers, verify_signature

    public_url = "http://127.0.0.1:8790/vobiz/callbacks/hangup"
    placer = CorrelationToken(dag_id="reminders", run_id=f"bench-{new_uuid()}", task_id="call")
    token = placer.encode(BENCH_SECRET, kinds=KINDS_OF_URL["hangup"], expires_at=time.time() + 3600)
    store = CallLedger(url)
    store.upgrade()
    timings: dict[str, list[float]] = {"token": [], "signature": [], "model": [], "store": []}
    try:
        for index in range(samples):
            form = hangup_form(call_uuid=new_uuid(), request_uuid=new_uuid(), to=destination(index))
            store.register_fired_calls(  # the operator's part, untimed
                request_uuids=[form["RequestUUID"]], destinations=[form["To"]], correlation=placer
            )
            headers = {
                key.lower(): value for key, value in signature_headers(public_url, BENCH_AUTH_TOKEN).items()
            }
            started = time.perf_counter()
            correlation = CorrelationToken.decode(token, [BENCH_SECRET], kind="hangup")
            decoded = time.perf_counter()
            # As the receiver does: the URL as issued, with the credentials derived from the token.
            issued = with_callback_credentials(public_url, token, BENCH_SECRET)
            check = verify_signature(headers, issued, [BENCH_AUTH_TOKEN])
            verified = time.perf_counter()
            callback = parse_callback(form, timezone="Asia/Kolkata", kind="hangup")
            parsed = time.perf_counter()
            store.ingest(
                [
                    store.prepare_callback(
                        "hangup",
                        form,
                        correlation=correlation,
                        replay_keys=check.replay_keys,
                        callback=callback,
                    )
                ]
            )
            stored = time.perf_counter()
            timings["token"].append(decoded - started)
            timings["signature"].append(verified - decoded)
            timings["model"].append(parsed - verified)
            timings["store"].append(stored - parsed)
    finally:
        store.dispose()
    return {step: median(values) for step, values in timings.items()}


@dataclass(kw_only=True)
class Row:
    backend: str
    concurrency: int
    bare: list[LoadResult]
    receiver: list[LoadResult]


def _bench_backend(
    backend: str, config: B2Config, workdir: Path, log: Any
) -> tuple[list[Row], Ledger, int, int]:
    rows: list[Row] = []
    ledger = Ledger()
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
            for concurrency in config.concurrency:
                row = Row(backend=backend, concurrency=concurrency, bare=[], receiver=[])
                # The calls this level's callbacks report, recorded as their tasks would (untimed).
                seconds = config.warmup + config.repetitions * config.duration
                calls = CallbackFactory(base_url, url, capacity=int(seconds * MAX_RATE) + 1)
                # Warm both (connections, thread pools, caches); the receiver's warm-up callbacks count.
                ledger.add(load(base_url, concurrency=concurrency, duration=config.warmup, factory=calls))
                load(bare_url, concurrency=concurrency, duration=config.warmup)
                for _ in range(config.repetitions):
                    row.bare.append(load(bare_url, concurrency=concurrency, duration=config.duration))
                    measured = load(
                        base_url, concurrency=concurrency, duration=config.duration, factory=calls
                    )
                    row.receiver.append(measured)
                    ledger.add(measured)
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
    return rows, ledger, stored, duplicate_rows


def run(*, smoke: bool = False, log: Any = print) -> Section:
    """Run B2 and return its section of RESULTS.md."""
    config = SMOKE if smoke else FULL
    backends = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])
    levels = ", ".join(map(str, config.concurrency))
    section = Section(
        key="b2",
        title="B2 — receiver ingest",
        method=(
            "Closed-loop senders (one keep-alive HTTP/1.1 connection each, on uvloop, in the benchmark "
            f"process) at concurrency {levels}; {config.repetitions} runs of {config.duration:g} s per "
            "level, receiver and bare endpoint interleaved; figures are medians over the runs. Receiver: "
            "`vobiz-callbacks serve` (uvicorn + uvloop + httptools, log level info), require_signatures on, "
            "callback_base_url set, signatures V2+V3 with fresh nonces, one distinct call per callback. "
            f"Each call was first recorded as fired by one of {TOKENS} task tries (untimed, as the operator "
            "does after POST /Call/): the receiver stores callbacks of recorded calls only, so each one is "
            "bound to its try and merged into the existing call row."
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
            rows, ledger, stored, duplicate_rows = _bench_backend(backend, config, Path(directory), log)
            name = "SQLite" if backend == "sqlite" else "PostgreSQL"
            with store_url(backend, "b2_steps") as steps_url:
                steps = stage_costs(steps_url, samples=config.step_samples)
            section.notes.append(
                f"{name}: per callback, in-process medians of the receiver's steps: correlation token "
                f"{steps['token'] * 1e6:.0f} µs, signatures {steps['signature'] * 1e6:.0f} µs, "
                f"callback model {steps['model'] * 1e6:.0f} µs, "
                f"store transaction {steps['store'] * 1000:.2f} ms "
                f"(one callback at a time, so at most {1 / sum(steps.values()):,.0f} callbacks/s per thread "
                "before HTTP, routing and logging)."
            )
            best_bare = max(median([r.throughput for r in row.bare]) for row in rows)
            section.notes.append(
                " ".join(
                    [
                        f"{name}: concurrent callbacks share one transaction (group commit: each is answered",
                        "after the shared commit); a lone sender still pays a whole commit per callback.",
                        f"Reaching 50 % of the bare endpoint ({best_bare / 2:,.0f}/s) would leave",
                        f"{2 / best_bare * 1000:.2f} ms per callback for HTTP, token, signatures, the",
                        "callback model and the write together.",
                    ]
                )
            )
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
            resent_stored = ledger.resent.get("stored", 0)
            late = ledger.resent.get("duplicate", 0)
            never = ledger.resent.get("never acknowledged", 0)
            section.notes.append(
                " ".join(
                    [
                        f"{name}: {ledger.sent:,} distinct callbacks sent; at the first try",
                        f"{ledger.stored:,} answered 200 `stored`, {ledger.duplicate} `duplicate`,",
                        f"{ledger.unacknowledged} something else. Those were sent again byte for byte, as",
                        f"Vobiz retries: {resent_stored} then `stored`, {late} `duplicate` (committed after",
                        f"the receiver had answered 503), {never} never acknowledged. The store holds",
                        f"{stored:,} events, {duplicate_rows} of them twice.",
                    ]
                )
            )
            section.checks.append(
                Check(
                    name=f"B2 stored == answered (0 lost, 0 duplicated), {name}",
                    measured=(
                        f"{stored:,} stored / {ledger.acknowledged:,} acknowledged / {ledger.sent:,} sent, "
                        f"{duplicate_rows} dup"
                    ),
                    target="equal, 0 dup",
                    passed=stored == ledger.acknowledged == ledger.sent
                    and duplicate_rows == 0
                    and ledger.duplicate == 0,
                )
            )
    top = max(config.concurrency)
    section.notes.append(
        f"Closed-loop senders: the mean latency is senders / throughput (Little's law), so p99 < 50 ms with "
        f"{top} senders needs at least {top / P99_TARGET:,.0f} answers/s; compare with the bare endpoint's "
        "own p99 in the same row."
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
