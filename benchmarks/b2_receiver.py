"""B2 — receiver ingest: the standalone receiver under 1, 8 and 64 connections of ``wrk``.

The receiver runs as in production: ``vobiz-callbacks serve`` in its own process, signatures required and
checked against the configured public URL, a SQLite (WAL) file store or a PostgreSQL store, default log
level. The baseline, measured in the same run and interleaved with it, is a bare Starlette route on the same
server stack (uvicorn with the same loop and HTTP implementation, same log level) that parses the form body
and answers 200.

The load generator is ``wrk`` (Debian's package; a C program) with :file:`b2_replay.lua`, which replays
pre-generated callbacks, each once: a realistic hangup (the full Plivo-style field set) of a distinct call,
posted form-encoded to ``/vobiz/callbacks/hangup?t=<signed correlation token>`` with real
``X-Vobiz-Signature-V2/V3`` headers and a fresh nonce. wrk's connections are closed-loop: each posts its
next callback as soon as the previous one is answered. Where ``taskset`` works and there are at least two
CPUs, the servers run on CPU 0 and wrk on CPU 1. After the runs, the events in the store are counted and
compared with what was sent and answered 200; callbacks not acknowledged are sent again byte for byte.

Run as a module (``python -m benchmarks.b2_receiver --bare-server --port P``) it serves the bare route.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from benchmarks.common import (
    BENCH_AUTH_TOKEN,
    BENCH_SECRET,
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
    postgres_base_url,
    receiver_env,
    stop_process,
    store_url,
    wait_for_http,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request

CONCURRENCY = (1, 8, 64)
P99_TARGET = 0.050
THROUGHPUT_RATIO_TARGET = 0.5
#: The paced runs offer this share of what the receiver answered closed-loop (:func:`_bench_paced`).
PACED_SHARE = 0.5
#: Distinct correlation tokens used (one per simulated task instance).
TOKENS = 500
LUA_SCRIPT = Path(__file__).with_name("b2_replay.lua")


@dataclass(frozen=True, kw_only=True)
class B2Config:
    concurrency: tuple[int, ...] = CONCURRENCY
    duration: float = 2.0
    repetitions: int = 3
    warmup: float = 1.0
    step_samples: int = 200
    #: Callbacks per second no receiver here reaches: the calls recorded before a load cover it (a receiver
    #: that runs out is reported, and fails the stored == sent check).
    max_rate: int = 2500
    #: ``--workers`` counts compared on PostgreSQL at the highest concurrency, unpinned (empty: skipped).
    workers: tuple[int, ...] = (1, 2)
    #: Concurrency levels at which the floor runs (SQLite; informational).
    floor_concurrency: tuple[int, ...] = (64,)
    #: Share of the receiver's closed-loop throughput offered in the paced runs at the highest concurrency
    #: (0: no paced runs).
    paced_share: float = PACED_SHARE

    def runs(self) -> list[tuple[float, bool]]:
        """The runs of one load: ``(seconds, measured)``, a warm-up first, then the measured repetitions."""
        return [(self.warmup, False)] + [(self.duration, True)] * self.repetitions


FULL = B2Config()
SMOKE = B2Config(
    concurrency=(1, 8),
    duration=1.0,
    repetitions=1,
    warmup=1.0,
    step_samples=5,
    max_rate=500,
    floor_concurrency=(8,),
)
#: A receiver with N workers faster than one by at least this factor scales (2 CPUs, which PostgreSQL and
#: wrk share with it).
WORKERS_SCALING_TARGET = 1.15


# ---------------------------------------------------------------------------------------------------------
# the bare route (baseline)
# ---------------------------------------------------------------------------------------------------------


def bare_app() -> Starlette:
    """A Starlette app whose one route parses the form body and answers 200 ``{"status": "stored"}``."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def callback(request: Request) -> Response:
        form = await request.form()
        status = b'{"status":"stored"}' if form.get("CallUUID") else b'{"status":"empty"}'
        return Response(status, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b"ok")

    return Starlette(
        routes=[Route("/vobiz/callbacks/{kind}", callback, methods=["POST"]), Route("/", health)]
    )


def _serve_bare(port: int, log_level: str) -> None:
    import uvicorn

    # The same uvicorn as `vobiz-callbacks serve` (vobiz_provider.receiver.cli._serve), without its connection
    # guard and limits: a few dictionary operations per request and a timer per connection.
    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level=log_level, server_header=False)


# ---------------------------------------------------------------------------------------------------------
# load generation: wrk replaying pre-generated callbacks
# ---------------------------------------------------------------------------------------------------------


def _cpus() -> tuple[list[str], list[str]]:
    """``taskset`` prefixes pinning the servers to CPU 0 and wrk to CPU 1 (none where that cannot work)."""
    taskset = shutil.which("taskset")
    if taskset is None or len(os.sched_getaffinity(0)) < 2:
        return [], []
    first, second = sorted(os.sched_getaffinity(0))[:2]
    if subprocess.run([taskset, "-c", str(first), "true"], check=False).returncode != 0:
        return [], []
    return [taskset, "-c", str(first)], [taskset, "-c", str(second)]


SERVER_CPU, WRK_CPU = _cpus()


@dataclass
class LoadResult:
    """One wrk run (:func:`run_wrk`)."""

    seconds: float
    sent: int = 0
    ok: int = 0
    duplicate: int = 0
    other: int = 0
    errors: int = 0
    exhausted: int = 0
    p50: float = 0.0
    p99: float = 0.0

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


class CallbackFactory:
    """Signed hangup callbacks of distinct calls, as Vobiz would post them to the receiver.

    The receiver stores only callbacks of calls their URL's try placed, so the factory first records
    ``capacity`` calls in the ledger, as :data:`TOKENS` tries that each placed their share (untimed), and
    then hands out one hangup per call, cycling through the tries.

    :param base_url: The receiver root (``http://127.0.0.1:P/vobiz``), also the configured public URL.
    :param ledger_url: The receiver's ledger (``None`` for the bare route: nothing is recorded, each
        callback names a new call).
    :param capacity: How many calls to record: more than the load can send.
    """

    def __init__(self, base_url: str, ledger_url: str | None, *, capacity: int) -> None:
        from vobiz_provider.correlation import KINDS_OF_URL, CorrelationToken, callback_url
        from vobiz_provider.ledger import CallLedger

        self.public_url = f"{base_url}/callbacks/hangup"
        self.root = base_url[: base_url.index("/", len("http://"))]
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

    def next(self) -> tuple[str, bytes, dict[str, str], str]:
        """The next callback: its URL, body, headers and ``CallUUID``."""
        from vobiz_provider.signatures import signature_headers

        index = self.count
        self.count += 1
        request_uuid, to = (
            self.calls[index % len(self.calls)] if self.calls else (new_uuid(), destination(index))
        )
        call_uuid = new_uuid()
        form = hangup_form(call_uuid=call_uuid, request_uuid=request_uuid, to=to)
        headers = signature_headers(self.public_url, BENCH_AUTH_TOKEN)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.urls[index % TOKENS], urlencode(form).encode(), headers, call_uuid

    def write(self, path: Path, count: int) -> list[tuple[str, bytes, dict[str, str], str]]:
        """Write the next ``count`` callbacks to ``path`` for :file:`b2_replay.lua`; returns them."""
        made = [self.next() for _ in range(count)]
        with path.open("w", encoding="utf-8") as out:
            for url, body, headers, _ in made:
                out.write(url[len(self.root) :] + "\n")
                out.write("\t".join(f"{name}: {value}" for name, value in headers.items()) + "\n")
                out.write(body.decode("ascii") + "\n")
        return made


def run_wrk(
    root: str, requests_file: Path, *, connections: int, duration: float, think: float = 0.0
) -> LoadResult:
    """Replay ``requests_file`` at ``root`` with ``connections`` wrk connections for ``duration`` s.

    :param think: Mean seconds each connection waits after an answer (exponential): 0 for a closed loop.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    command = [
        *WRK_CPU,
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        root,
        "--",
        str(requests_file),
        "1",
        *([f"{think * 1000:.0f}"] if think > 0 else []),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=duration + 60).stdout
    line = next((each for each in output.splitlines() if each.startswith("B2JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {output[-500:]}")
    data = json.loads(line[len("B2JSON ") :])
    return LoadResult(
        seconds=data["seconds"],
        sent=data["sent"],
        ok=data["ok"],
        duplicate=data["duplicate"],
        other=data["other"],
        errors=data["errors"],
        exhausted=data["exhausted"],
        p50=data["p50"],
        p99=data["p99"],
    )


def resend(items: list[tuple[str, bytes, dict[str, str], str]], *, attempts: int = 5) -> dict[str, int]:
    """Send callbacks again, byte for byte (same signature and nonce), as Vobiz retries.

    :return: How the resends were finally answered (``stored``, ``duplicate`` or ``never acknowledged``).
    """
    import httpx

    answers: dict[str, int] = {}
    with httpx.Client(timeout=10.0) as client:
        for url, body, headers, _ in items:
            answer = "never acknowledged"
            for _ in range(attempts):
                try:
                    response = client.post(url, content=body, headers=headers)
                except httpx.HTTPError:
                    time.sleep(0.5)
                    continue
                if response.status_code == 200:
                    answer = str(response.json().get("status"))
                    break
                time.sleep(0.5)
            answers[answer] = answers.get(answer, 0) + 1
    return answers


@dataclass
class Ledger:
    """What happened to every distinct callback sent to the receiver of one store."""

    sent: list[tuple[str, bytes, dict[str, str], str]] = field(default_factory=list)
    ok: int = 0
    duplicate: int = 0
    #: Sent but not answered 200 by wrk: refused, failed, or still in flight when wrk stopped.
    unanswered: int = 0
    missing: int = 0
    #: Requests wrk sent after running out of distinct callbacks (repeats of the last one).
    exhausted: int = 0
    resent: dict[str, int] = field(default_factory=dict)

    def add(self, result: LoadResult, made: list[tuple[str, bytes, dict[str, str], str]]) -> None:
        self.sent.extend(made[: result.sent])
        self.ok += result.ok
        self.duplicate += result.duplicate
        self.unanswered += result.sent - result.ok
        self.exhausted += result.exhausted

    def settle(self, store: str) -> tuple[int, int]:
        """Send again what the store misses; returns (events stored, events stored twice)."""
        time.sleep(1.0)  # callbacks still in flight when wrk stopped are committed by now
        stored = _stored_calls(store)
        missing = [item for item in self.sent if item[3] not in stored]
        self.missing = len(missing)
        self.resent = resend(missing)
        stored = _stored_calls(store)
        return sum(stored.values()), sum(count - 1 for count in stored.values() if count > 1)


def _stored_calls(url: str) -> dict[str, int]:
    """Events per ``CallUUID`` in the store."""
    import sqlalchemy as sa

    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.ledger.schema import events

    store = CallLedger(url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(events.c.call_uuid, sa.func.count()).group_by(events.c.call_uuid))
            return {str(call): int(count) for call, count in rows}
    finally:
        store.dispose()


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
    #: The floor's runs (:mod:`benchmarks.b2_floor`; SQLite only).
    floor: list[LoadResult] = field(default_factory=list)
    #: Mean seconds each connection waits between an answer and its next request (paced runs); 0 when
    #: closed-loop.
    think: float = 0.0


def _bench_backend(
    backend: str, config: B2Config, workdir: Path, log: Any
) -> tuple[list[Row], dict[int, list[LoadResult]], Ledger, int, int]:
    rows: list[Row] = []
    ledger = Ledger()
    workers: dict[int, list[LoadResult]] = {}
    with store_url(backend, "b2") as url:
        receiver_port, bare_port = free_port(), free_port()
        base_url = f"http://127.0.0.1:{receiver_port}/vobiz"
        env = receiver_env(url, base_url)
        # Another checkout's receiver (e.g. main, for a before/after comparison in one sitting).
        other = os.environ.get("VOBIZ_BENCH_RECEIVER_SRC")
        rx_env = {**env, "PYTHONPATH": os.pathsep.join([other, env["PYTHONPATH"]])} if other else env
        receiver = _start(
            [*SERVER_CPU, *_receiver_command(receiver_port)], rx_env, workdir / f"rx-{backend}.log"
        )
        bare = _start(
            [
                *SERVER_CPU,
                sys.executable,
                "-m",
                "benchmarks.b2_receiver",
                "--bare-server",
                "--port",
                str(bare_port),
            ],
            env,
            workdir / f"bare-{backend}.log",
        )
        bare_root = f"http://127.0.0.1:{bare_port}"
        worker_servers = (
            _start_workers(url, config, workdir) if backend == "postgresql" and config.workers else {}
        )
        floor = floor_root = None
        if backend == "sqlite":
            floor_port = free_port()
            floor_root = f"http://127.0.0.1:{floor_port}"
            floor = _start(
                [
                    *SERVER_CPU,
                    sys.executable,
                    "-m",
                    "benchmarks.b2_floor",
                    "--port",
                    str(floor_port),
                    "--db",
                    str(workdir / "floor.db"),
                    # The bare route's callbacks, signed for the bare route's URL.
                    "--public-url",
                    f"{bare_root}/vobiz/callbacks/hangup",
                ],
                env,
                workdir / "floor.log",
            )
        try:
            wait_for_http(f"{base_url}/health", process=receiver)
            wait_for_http(f"{bare_root}/", process=bare)
            if floor is not None:
                wait_for_http(f"{floor_root}/", process=floor)
            bare_file = workdir / "bare-requests.txt"
            # The bare route stores nothing: one file of callbacks of unrecorded calls serves every run (a run
            # that gets to its end repeats its last callback: the same work for this route).
            CallbackFactory(f"{bare_root}/vobiz", None, capacity=0).write(
                bare_file, int(max(config.duration, config.warmup) * config.max_rate)
            )
            for concurrency in config.concurrency:
                row = Row(backend=backend, concurrency=concurrency, bare=[], receiver=[])
                # The calls this level's callbacks report, recorded as their tasks would (untimed).
                per_run = int(config.duration * config.max_rate) + 1
                calls = CallbackFactory(
                    base_url,
                    url,
                    capacity=int(config.warmup * config.max_rate) + config.repetitions * per_run,
                )
                runs = config.runs()
                for seconds, measured in runs:
                    made = calls.write(workdir / "requests.txt", int(seconds * config.max_rate) + 1)
                    bare_result = run_wrk(bare_root, bare_file, connections=concurrency, duration=seconds)
                    floor_result = (
                        run_wrk(floor_root, bare_file, connections=concurrency, duration=seconds)
                        if floor_root and concurrency in config.floor_concurrency
                        else None
                    )
                    result = run_wrk(
                        calls.root, workdir / "requests.txt", connections=concurrency, duration=seconds
                    )
                    ledger.add(result, made)
                    if measured:  # warm-up runs (connections, thread pools, caches) only count in the store
                        row.bare.append(bare_result)
                        row.receiver.append(result)
                        if floor_result is not None:
                            row.floor.append(floor_result)
                log(
                    f"  B2 {backend} c={concurrency}: receiver "
                    f"{median([r.throughput for r in row.receiver]):.0f}/s, bare "
                    f"{median([r.throughput for r in row.bare]):.0f}/s"
                    + (f", floor {median([r.throughput for r in row.floor]):.0f}/s" if row.floor else "")
                )
                rows.append(row)
            if config.paced_share > 0:
                rows.append(
                    _bench_paced(rows[-1], bare_root, bare_file, base_url, url, config, workdir, ledger)
                )
                log(
                    f"  B2 {backend} c={rows[-1].concurrency} paced: receiver "
                    f"p99 {median([r.p99 for r in rows[-1].receiver]) * 1000:.1f} ms at "
                    f"{median([r.throughput for r in rows[-1].receiver]):.0f}/s"
                )
            if worker_servers:
                workers = _bench_workers(worker_servers, url, config, workdir, ledger, log)
            stored, duplicate_rows = ledger.settle(url)
        finally:
            stop_process(receiver)
            stop_process(bare)
            for _, process in worker_servers.values():
                stop_process(process)
            if floor is not None:
                stop_process(floor)
    return rows, workers, ledger, stored, duplicate_rows


def _bench_paced(
    saturated: Row,
    bare_root: str,
    bare_file: Path,
    base_url: str,
    url: str,
    config: B2Config,
    workdir: Path,
    ledger: Ledger,
) -> Row:
    """Latency below saturation: the receiver and the bare route at ``saturated``'s concurrency, each
    connection waiting a random time after an answer so that about ``config.paced_share`` of the receiver's
    closed-loop throughput is offered (the same wait for both; the bare route runs once, before the
    receiver's runs).

    A closed loop measures queueing at saturation: with C connections, a server answering X/s keeps each
    request waiting C / X s on average, whatever its own latency. Vobiz's callbacks arrive as calls end,
    independently of how fast earlier ones were answered; these runs show the latency of such traffic.
    """
    connections = saturated.concurrency
    rate = median([r.throughput for r in saturated.receiver])
    think = connections / (config.paced_share * rate) if rate else 1.0
    row = Row(backend=saturated.backend, concurrency=connections, bare=[], receiver=[], think=think)
    per_run = int(config.duration * rate) + 1  # about twice what a run offers
    calls = CallbackFactory(base_url, url, capacity=config.repetitions * per_run)
    for repetition in range(config.repetitions):
        made = calls.write(workdir / "requests.txt", per_run)
        if repetition == 0:  # the bare route once, as the reference: its latency here is about 1 ms
            row.bare.append(
                run_wrk(bare_root, bare_file, connections=connections, duration=config.duration, think=think)
            )
        result = run_wrk(
            calls.root,
            workdir / "requests.txt",
            connections=connections,
            duration=config.duration,
            think=think,
        )
        ledger.add(result, made)
        row.receiver.append(result)
    return row


def _start_workers(
    url: str, config: B2Config, workdir: Path
) -> dict[int, tuple[str, subprocess.Popen[bytes]]]:
    """Start ``vobiz-callbacks serve --workers N`` for each N of ``config.workers`` on the store at ``url``.

    Not pinned: N processes need N CPUs (wrk stays on its own). Returns each one's root URL and process.
    """
    servers: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
    for count in config.workers:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}/vobiz"
        command = [*_receiver_command(port), "--workers", str(count)]
        servers[count] = (
            base_url,
            _start(command, receiver_env(url, base_url), workdir / f"rx-w{count}.log"),
        )
    return servers


def _bench_workers(
    servers: dict[int, tuple[str, subprocess.Popen[bytes]]],
    url: str,
    config: B2Config,
    workdir: Path,
    ledger: Ledger,
    log: Any,
) -> dict[int, list[LoadResult]]:
    """Load each of :func:`_start_workers`'s receivers at the highest concurrency, the counts interleaved.

    What they store is counted in ``ledger`` with the rest (settle it before stopping them: the callbacks
    they missed are sent to them again).
    """
    connections = max(config.concurrency)
    results: dict[int, list[LoadResult]] = {count: [] for count in servers}
    runs = config.runs()
    factories = {}
    for count, (base_url, process) in servers.items():
        wait_for_http(f"{base_url}/health", process=process)
        rate = config.max_rate * count  # N processes may go N times as fast
        factories[count] = CallbackFactory(
            base_url, url, capacity=int(sum(seconds for seconds, _ in runs) * rate) + len(runs)
        )
    for seconds, measured in runs:
        for count, factory in factories.items():
            made = factory.write(workdir / "requests.txt", int(seconds * config.max_rate * count) + 1)
            result = run_wrk(
                factory.root, workdir / "requests.txt", connections=connections, duration=seconds
            )
            ledger.add(result, made)
            if measured:
                results[count].append(result)
    log(
        "  B2 postgresql --workers: "
        + ", ".join(
            f"{count}: {median([r.throughput for r in each]):.0f}/s" for count, each in results.items()
        )
    )
    return results


def _workers_check(workers: dict[int, list[LoadResult]], connections: int) -> tuple[Check, str]:
    """The scaling check of :func:`_bench_workers`'s runs, and a note with every count's figures."""
    rates = {count: median([r.throughput for r in runs]) for count, runs in workers.items()}
    p99s = {count: median([r.p99 for r in runs]) for count, runs in workers.items()}
    one, most = min(rates), max(rates)
    scaling = rates[most] / rates[one] if rates[one] else 0.0
    check = Check(
        name=f"B2 PostgreSQL, --workers {most} vs {one}, {connections} connections, unpinned",
        measured=f"{scaling:.2f}x ({rates[most]:,.0f} vs {rates[one]:,.0f}/s)",
        target=f"≥ {WORKERS_SCALING_TARGET:.2f}x (2 CPUs, shared with PostgreSQL and wrk)",
        passed=scaling >= WORKERS_SCALING_TARGET,
    )
    note = (
        f"PostgreSQL, `vobiz-callbacks serve --workers N` at {connections} connections, servers not pinned "
        "(wrk still on its CPU), medians over the runs: "
        + "; ".join(
            f"{count} worker{'s' if count > 1 else ''} {rates[count]:,.0f}/s, p99 {p99s[count] * 1000:.1f} ms"
            for count in rates
        )
        + f" ({scaling:.2f}x). Every worker is a receiver process with its own group-commit writer."
    )
    return check, note


def _floor_cell(floor: list[LoadResult], bare_tp: float) -> str:
    if not floor:
        return "-"
    floor_tp = median([r.throughput for r in floor])
    return f"{fmt_int(floor_tp)} ({fmt(floor_tp / bare_tp * 100 if bare_tp else 0.0, 0, ' %')})"


def run(*, smoke: bool = False, log: Any = print) -> Section:
    """Run B2 and return its section of RESULTS.md."""
    config = SMOKE if smoke else FULL
    backends = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])
    levels = ", ".join(map(str, config.concurrency))
    pinning = (
        f"servers pinned to CPU {SERVER_CPU[-1]} and wrk to CPU {WRK_CPU[-1]} with `taskset`"
        if SERVER_CPU
        else "no CPU pinning (`taskset` or a second CPU missing)"
    )
    section = Section(
        key="b2",
        title="B2 — receiver ingest",
        method=(
            f"`wrk` (one thread, {levels} keep-alive connections, closed-loop) with "
            "`benchmarks/b2_replay.lua` replaying pre-generated callbacks, each sent once; "
            f"{pinning}. {config.repetitions} runs of {config.duration:g} s per level after a "
            f"{config.warmup:g} s warm-up, bare route and receiver interleaved; figures are medians over "
            "the runs, latencies wrk's percentiles. Receiver: `vobiz-callbacks serve` (uvicorn + uvloop + "
            "httptools, log level info), require_signatures on, callback_base_url set, signatures V2+V3 "
            "with fresh nonces, one distinct call per callback. Each call was first recorded as fired by one "
            f"of {TOKENS} task tries (untimed, as the operator does after POST /Call/): the receiver stores "
            "callbacks of recorded calls only, so each one is bound to its try and merged into the existing "
            "call row. Bare route: a Starlette route on the same uvicorn that parses the form "
            "(`await request.form()`) and answers 200. Floor (SQLite rows, informational; "
            "`benchmarks/b2_floor.py`): a raw ASGI app on the same uvicorn that runs the receiver's own "
            "token, signature and callback-model checks and group-commits each callback into one table of a "
            "SQLite WAL file (synchronous=FULL) before answering, and nothing else: how much of the bare "
            "route the checks and a durable write leave, with the bare route's callbacks (at "
            f"{', '.join(map(str, config.floor_concurrency))} connections). Paced rows: at "
            f"{max(config.concurrency)} connections, each connection waits a random time (exponential) after "
            "an answer before its next callback, so that about "
            f"{config.paced_share:.0%} of the receiver's closed-loop rate is offered, to both servers alike "
            f"({config.repetitions} receiver runs, one bare-route run): "
            "the latency of callbacks that arrive as calls end rather than as fast as they are answered "
            "(a closed loop of C connections at X/s holds each request C / X s on average)."
        ),
        headers=[
            "store",
            "connections",
            "receiver callbacks/s",
            "bare route req/s",
            "ratio",
            "receiver p50",
            "receiver p99",
            "bare p50",
            "bare p99",
            "floor req/s (ratio)",
            "non-200 answers",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="vobiz-bench-b2-") as directory:
        for backend in backends:
            rows, workers, ledger, stored, duplicate_rows = _bench_backend(
                backend, config, Path(directory), log
            )
            name = "SQLite" if backend == "sqlite" else "PostgreSQL"
            with store_url(backend, "b2_steps") as steps_url:
                steps = stage_costs(steps_url, samples=config.step_samples)
            section.notes.append(
                f"{name}: per callback, in-process medians of the receiver's steps: correlation token "
                f"{steps['token'] * 1e6:.0f} µs, signatures {steps['signature'] * 1e6:.0f} µs, "
                f"callback model {steps['model'] * 1e6:.0f} µs, "
                f"store transaction of one callback {steps['store'] * 1000:.2f} ms "
                "(concurrent callbacks share one transaction: group commit)."
            )
            for row in rows:
                receiver_tp = median([r.throughput for r in row.receiver])
                bare_tp = median([r.throughput for r in row.bare])
                ratio = receiver_tp / bare_tp if bare_tp else 0.0
                p99 = median([r.p99 for r in row.receiver])
                other = sum(r.other for r in row.receiver)
                errors = sum(r.errors for r in row.receiver)
                paced = row.think > 0
                section.rows.append(
                    [
                        name,
                        f"{row.concurrency}, paced (mean wait {row.think * 1000:.0f} ms)"
                        if paced
                        else str(row.concurrency),
                        fmt_int(receiver_tp),
                        fmt_int(bare_tp),
                        "-" if paced else fmt(ratio * 100, 0, " %"),
                        fmt_ms(median([r.p50 for r in row.receiver]), 1),
                        fmt_ms(p99, 1),
                        fmt_ms(median([r.p50 for r in row.bare]), 1),
                        fmt_ms(median([r.p99 for r in row.bare]), 1),
                        _floor_cell(row.floor, bare_tp),
                        f"{other}" + (f", {errors} transport errors" if errors else ""),
                    ]
                )
                label = f"{row.concurrency} connection{'s' if row.concurrency > 1 else ''}, {name}"
                if paced:
                    section.checks.append(
                        Check(
                            name=f"B2 p99 latency below saturation, {label}, paced",
                            measured=(
                                f"{p99 * 1000:.1f} ms at {receiver_tp:,.0f}/s (bare route "
                                f"{median([r.p99 for r in row.bare]) * 1000:.1f} ms)"
                            ),
                            target=f"informational: about {config.paced_share:.0%} of the closed-loop rate",
                            passed=True,
                        )
                    )
                    continue
                section.checks.append(
                    Check(
                        name=f"B2 throughput vs bare route, {label}",
                        measured=f"{ratio * 100:.0f} % ({receiver_tp:,.0f} vs {bare_tp:,.0f}/s)",
                        target="≥ 50 % at 8 and 64 connections" if row.concurrency > 1 else "informational",
                        passed=ratio >= THROUGHPUT_RATIO_TARGET or row.concurrency == 1,
                    )
                )
                if row.concurrency == max(config.concurrency):
                    section.checks.append(
                        Check(
                            name=f"B2 p99 latency, {label}",
                            measured=fmt_ms(p99, 1),
                            target="< 50 ms",
                            passed=p99 < P99_TARGET,
                        )
                    )
            if workers:
                check, note = _workers_check(workers, max(config.concurrency))
                section.checks.append(check)
                section.notes.append(note)
            sent = len(ledger.sent)
            lost = max(0, ledger.missing - ledger.unanswered)
            never = ledger.resent.get("never acknowledged", 0)
            section.notes.append(
                " ".join(
                    [
                        f"{name}: {sent:,} distinct callbacks sent; {ledger.ok:,} answered 200 by the first",
                        f"try ({ledger.duplicate} of them `duplicate`), {ledger.unanswered} not (refused, or",
                        f"in flight when wrk stopped). {ledger.missing} were missing from the store and were",
                        f"sent again byte for byte, as Vobiz retries: {ledger.resent or 'none'}. The store",
                        f"holds {stored:,} events, {duplicate_rows} of them twice.",
                        f"wrk ran out of distinct callbacks {ledger.exhausted} times (raise max_rate)."
                        if ledger.exhausted
                        else "",
                    ]
                )
            )
            section.checks.append(
                Check(
                    name=f"B2 stored == sent (0 lost, 0 duplicated), {name}",
                    measured=(
                        f"{stored:,} stored / {sent:,} sent, {lost} lost, {duplicate_rows} dup, "
                        f"{never} never acknowledged"
                    ),
                    target="equal, 0 lost, 0 dup",
                    passed=stored == sent
                    and lost == 0
                    and never == 0
                    and duplicate_rows == 0
                    and ledger.duplicate == 0
                    and ledger.exhausted == 0,
                )
            )
    if not postgres_base_url():
        section.notes.append(
            "PostgreSQL rows skipped: set VOBIZ_BENCH_POSTGRES_URL (or VOBIZ_TEST_POSTGRES_URL) to include "
            "them."
        )
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="B2 helper: serve the bare Starlette route")
    parser.add_argument("--bare-server", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    _serve_bare(args.port, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
