"""B1 — waiting triggers, as the triggerer sees them.

N real :class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger` s (built with the keyword arguments
the operator passes) await in one asyncio loop of a fresh process, driven the way the triggerer drives
them (``async for event in trigger.run()``), against a real callback store in which the calls were
recorded as fired. Meanwhile the parent process plays the receiver: it writes hangup callbacks with
``CallLedger.ingest`` (one callback per transaction) at a steady rate. Baseline in the same run: the naive
design, a minimal trigger that polls its own row every interval (same store, same loop, same thread pool).

Measured in the trigger process, per poll interval over a fixed window (the figures are medians over the
window's intervals):

* store queries: every statement the store's engine sends (``before_cursor_execute``), transaction control
  (SQLite's ``BEGIN``, ``PRAGMA``) counted apart;
* CPU: ``time.process_time()`` (all threads of the process, so the store's worker threads count);
* RSS per waiting trigger: ``VmRSS`` after the N triggers are waiting minus before they were created, / N;
* objects per waiting trigger: the objects the cyclic garbage collector tracks (``gc.get_objects()``), after
  a full collection, once the window and the drain are over, minus before the triggers were created, / the
  triggers still waiting (every one of them is walked by each full collection, so this is what lengthens
  its pause). Counted after the window so that the collection it needs does not change the window's GC;
* callback→TriggerEvent latency: time the event is yielded minus time the hangup write committed;
* loop stall: Airflow's triggerer watchdog, reproduced (``sleep(0.1)``; elapsed > 0.2 s is its warning).

The start-up (creating the N triggers at once, until every one waits) ends with a full collection, counted
in the start-up stall: the heap's growth makes one due, and the window measures waiting, not start-up.
"""

from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.common import (
    Check,
    Section,
    StatementCounter,
    destination,
    fmt,
    fmt_ms,
    hangup_form,
    median,
    new_uuid,
    percentile,
    postgres_base_url,
    store_url,
    vm_rss_bytes,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from multiprocessing.connection import Connection

#: Airflow's triggerer watchdog: it sleeps this long ...
WATCHDOG_TICK = 0.1
#: ... and warns when the sleep took longer than this (``[triggerer] blocked_main_thread_warning_threshold``).
STALL_THRESHOLD = 0.2
#: Fired rows are recorded in transactions of this many calls (``register_fired_calls`` with paired UUIDs).
FIRED_BATCH = 500
#: The deadline and reconcile_after the operator would compute (ring 120 s + time limit 14400 s + margin):
#: far beyond the window, so the triggers never ask the API.
DEADLINE_SECONDS = 14_400 + 120 + 600
RECONCILE_SECONDS = 14_400 + 120 + 300
#: Longest wait, after the window, for the events of the last callbacks written (not measured).
DRAIN_SECONDS = 10.0
#: The window is cut into this many consecutive parts; each figure is the median over the parts.
PARTS = 3


@dataclass(frozen=True, kw_only=True)
class B1Config:
    """Sizes and timings of one B1 run.

    :param sizes: The numbers of waiting triggers.
    :param interval: The triggers' ``poll_interval`` (seconds).
    :param window: Seconds measured per case.
    :param naive_window_at_max: Seconds measured for the naive design at the largest N.
    :param rate_cap: Most hangup callbacks written per second.
    :param warmup_timeout: Longest wait for the triggers to settle before measuring.
    """

    sizes: tuple[int, ...] = (100, 1_000, 10_000)
    interval: float = 1.0
    window: float = 6.0
    naive_window_at_max: float = 4.0
    rate_cap: float = 20.0
    warmup_timeout: float = 60.0


FULL = B1Config()
SMOKE = B1Config(sizes=(20,), interval=0.25, window=0.75, naive_window_at_max=0.75, rate_cap=20.0)


# ---------------------------------------------------------------------------------------------------------
# the naive baseline
# ---------------------------------------------------------------------------------------------------------


def _naive_trigger_class() -> type:
    from airflow.triggers.base import BaseTrigger, TriggerEvent

    class NaiveHangupTrigger(BaseTrigger):
        """The design the shared poller replaces: each trigger queries its own call every interval.

        :param request_uuid: The call's request UUID.
        :param store_url: The callback store.
        :param poll_interval: Seconds between two queries.
        :param start_delay: Seconds before the first query (triggers start at different moments).
        """

        polls = 0

        def __init__(
            self, *, request_uuid: str, store_url: str, poll_interval: float, start_delay: float = 0.0
        ) -> None:
            super().__init__()
            self.request_uuid = request_uuid
            self.store_url = store_url
            self.poll_interval = poll_interval
            self.start_delay = start_delay

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return (
                f"{__name__}.NaiveHangupTrigger",
                {
                    "request_uuid": self.request_uuid,
                    "store_url": self.store_url,
                    "poll_interval": self.poll_interval,
                    "start_delay": self.start_delay,
                },
            )

        async def run(self) -> AsyncIterator[TriggerEvent]:
            from vobiz_provider.ledger import get_ledger

            store = get_ledger(self.store_url)
            await asyncio.sleep(self.start_delay)
            while True:
                records = await asyncio.to_thread(store.lookup, request_uuids=[self.request_uuid])
                type(self).polls += 1
                if records and all(record.terminal for record in records):
                    yield TriggerEvent(
                        {"status": "hangup", "calls": [record.to_event() for record in records]}
                    )
                    return
                await asyncio.sleep(self.poll_interval)

    return NaiveHangupTrigger


# ---------------------------------------------------------------------------------------------------------
# the trigger process
# ---------------------------------------------------------------------------------------------------------


class _GcPauses:
    """The longest pause of Python's cyclic garbage collector (any thread), via ``gc.callbacks``."""

    def __init__(self) -> None:
        self.max_pause = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.max_pause = max(self.max_pause, time.perf_counter() - self._started)

    def take(self) -> float:
        value, self.max_pause = self.max_pause, 0.0
        return value


class _Watchdog:
    """Airflow's ``block_watchdog``: sleeps 0.1 s in a loop and records how long each sleep really took."""

    def __init__(self) -> None:
        self.max_elapsed = 0.0
        self.warnings = 0

    def take(self) -> tuple[float, int]:
        value, warnings = self.max_elapsed, self.warnings
        self.max_elapsed, self.warnings = 0.0, 0
        return value, warnings

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(WATCHDOG_TICK)
            elapsed = time.monotonic() - started
            self.max_elapsed = max(self.max_elapsed, elapsed)
            if elapsed > STALL_THRESHOLD:
                self.warnings += 1


async def _wait_for_trigger_process(
    *,
    pipe: Connection,
    url: str,
    plan: list[tuple[str, str]],
    design: str,
    config: B1Config,
    window: float,
) -> dict[str, Any]:
    from vobiz_provider.ledger import get_ledger
    from vobiz_provider.triggers.hangup import VobizCallHangupTrigger
    from vobiz_provider.triggers.poller import SharedPoller

    loop = asyncio.get_running_loop()
    store = get_ledger(url)  # the process-wide store the shared poller uses too
    await asyncio.to_thread(store.lookup, request_uuids=["warm-up"])  # engine and one pooled connection
    counter = StatementCounter(store.engine)
    watchdog = _Watchdog()
    watchdog_task = loop.create_task(watchdog.run())
    gc_pauses = _GcPauses()
    events: dict[str, tuple[float, str]] = {}
    naive_class = _naive_trigger_class()
    rng = random.Random(7)

    async def drive(trigger: Any, request_uuid: str) -> None:
        async for event in trigger.run():
            events[request_uuid] = (time.time(), str(event.payload.get("status")))

    gc.collect()
    objects_before = len(gc.get_objects())
    rss_before = vm_rss_bytes()
    created = time.monotonic()
    now = time.time()
    tasks = []
    for request_uuid, to in plan:
        if design == "shared":
            trigger: Any = VobizCallHangupTrigger(
                request_uuids=[request_uuid],
                destinations=[to],
                vobiz_conn_id="vobiz_default",
                deadline=now + DEADLINE_SECONDS,
                poll_interval=config.interval,
                reconcile_after=now + RECONCILE_SECONDS,
                use_store=True,
                hangup_on_kill=False,
            )
        else:
            trigger = naive_class(
                request_uuid=request_uuid,
                store_url=url,
                poll_interval=config.interval,
                start_delay=rng.uniform(0, config.interval),
            )
        tasks.append(loop.create_task(drive(trigger, request_uuid)))

    # Settle: every trigger waiting and at least one full poll behind us.
    deadline = time.monotonic() + config.warmup_timeout
    if design == "shared":
        while time.monotonic() < deadline:
            poller = SharedPoller._registry.get(loop, {}).get(url)
            if poller is not None and poller.subscriber_count == len(plan) and poller.lookups >= 2:
                break
            await asyncio.sleep(0.05)
    else:
        # Every naive trigger has polled once, or (when the store cannot keep up) two intervals have passed:
        # a saturated naive design never reaches a steadier state than that.
        naive_deadline = min(deadline, time.monotonic() + 2 * config.interval + 1.0)
        while time.monotonic() < naive_deadline and naive_class.polls < len(plan):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    # The start-up pays its own garbage-collector debt: each time creating the triggers grows the heap by a
    # quarter, a full collection falls due, and the last one fell by chance into the window's first second
    # (N=10,000: 0.15 s, 0.7 s after it began, and 2.5 % of a core over the window). A triggerer that picks
    # up its triggers over time pays those collections as they arrive; once they all wait, the heap stops
    # growing and no full collection is due. The watchdog then wakes, so the pause counts as start-up stall.
    gc.collect()
    await asyncio.sleep(2 * WATCHDOG_TICK)
    settled = time.monotonic() - created
    startup_stall, startup_warnings = watchdog.take()
    rss_after = vm_rss_bytes()
    waiting = sum(1 for task in tasks if not task.done())

    start_at = time.time() + 0.3
    pipe.send({"start_at": start_at})
    await asyncio.sleep(max(0.0, start_at - time.time()))
    watchdog.take()
    gc_pauses.take()
    intervals = max(1, round(window / config.interval))
    samples = []

    def lookups() -> int:
        if design == "naive":
            return naive_class.polls
        poller = SharedPoller._registry.get(loop, {}).get(url)
        return poller.lookups if poller is not None else 0

    def pushed() -> int:
        poller = SharedPoller._registry.get(loop, {}).get(url) if design == "shared" else None
        return poller.pushed_lookups if poller is not None else 0

    previous = (time.process_time(), *counter.snapshot(), lookups(), pushed())
    for index in range(intervals):
        await asyncio.sleep(max(0.0, start_at + (index + 1) * config.interval - time.time()))
        current = (time.process_time(), *counter.snapshot(), lookups(), pushed())
        stall, warnings = watchdog.take()
        samples.append(
            {
                "cpu": current[0] - previous[0],
                "queries": current[1] - previous[1],
                "control": current[2] - previous[2],
                "lookups": current[3] - previous[3],
                "pushed": current[4] - previous[4],
                "stall": stall,
                "warnings": warnings,
                "gc": gc_pauses.take(),
            }
        )
        previous = current
    # The parent names the calls it hung up; wait (unmeasured) until their events are out, at most DRAIN s.
    written = await asyncio.to_thread(pipe.recv)
    drain_until = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_until and any(key not in events for key in written):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    # Outside the window: the objects of the triggers still waiting (the finished ones' tasks let go first).
    tasks = [task for task in tasks if not task.done()]
    gc.collect()
    objects_per_trigger = (len(gc.get_objects()) - objects_before) / max(1, len(tasks))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    watchdog_task.cancel()
    return {
        "objects_per_trigger": objects_per_trigger,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "waiting": waiting,
        "settled": settled,
        "startup_stall": startup_stall,
        "startup_warnings": startup_warnings,
        "samples": samples,
        "events": events,
    }


def _trigger_process(
    pipe: Connection,
    url: str,
    plan: list[tuple[str, str]],
    design: str,
    config: B1Config,
    window: float,
) -> None:
    import os

    os.environ["AIRFLOW__VOBIZ__CALLBACK_STORE"] = url
    # The triggerer ships every trigger's log lines to the task's log; here they are formatted, then written
    # to /dev/null (the cost of formatting stays in the figures, the terminal stays readable).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        result = asyncio.run(
            _wait_for_trigger_process(
                pipe=pipe, url=url, plan=plan, design=design, config=config, window=window
            )
        )
    except BaseException as err:
        pipe.send({"error": f"{type(err).__name__}: {err}"})
        raise
    pipe.send(result)


# ---------------------------------------------------------------------------------------------------------
# the parent: set-up, the receiver's writes, figures
# ---------------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class CaseResult:
    backend: str
    n: int
    design: str
    window: float
    queries_per_interval: float
    control_per_interval: float
    lookups_per_interval: float
    #: Of the queries, those run early because the store signalled a write (push).
    pushed_per_interval: float
    cpu_seconds_per_minute: float
    core_percent: float
    rss_per_trigger: float
    #: Objects tracked by the garbage collector per trigger still waiting after the window.
    objects_per_trigger: float
    written: int
    delivered: int
    p50: float
    p99: float
    max_stall: float
    max_gc_pause: float
    stall_warnings: int
    startup_stall: float
    settled: float
    waiting: int
    lookup_cpu: float = math.nan
    error: str | None = None


def _record_fired(url: str, plan: list[tuple[str, str]]) -> None:
    """Record the calls as fired, as the operator does before deferring (batches, from a few threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger import CallLedger

    store = CallLedger(url)
    store.upgrade()

    def record(start: int) -> None:
        chunk = plan[start : start + FIRED_BATCH]
        store.register_fired_calls(
            request_uuids=[request_uuid for request_uuid, _ in chunk],
            destinations=[to for _, to in chunk],
            from_number="919000000001",
            correlation=CorrelationToken(dag_id="reminders", run_id="bench", task_id="call", map_index=start),
        )

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(record, range(0, len(plan), FIRED_BATCH)))
    finally:
        store.dispose()


def _lookup_cost(url: str, request_uuids: list[str], repeats: int = 3) -> float:
    """Median CPU seconds of one ``CallLedger.lookup`` of these calls (what every poll tick costs)."""
    from vobiz_provider.ledger import CallLedger

    store = CallLedger(url)
    costs = []
    try:
        for _ in range(repeats):
            started = time.process_time()
            store.lookup(request_uuids=request_uuids)
            costs.append(time.process_time() - started)
    finally:
        store.dispose()
    return median(costs)


def _run_case(
    *,
    backend: str,
    url: str,
    plan: list[tuple[str, str]],
    design: str,
    config: B1Config,
    window: float,
    rate: float | None = None,
    send: Callable[[str, str, Any], None] | None = None,
) -> CaseResult:
    """One case in a forked trigger process while this process writes hangups.

    :param rate: Hangups per second (default: min(``rate_cap``, N / (2 x window))); 0 writes none.
    :param send: Delivers one hangup ``(request_uuid, to, correlation)`` (default: ``CallLedger.ingest``,
        timed from its commit); latencies are then timed from the call of ``send``.
    """
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger import CallLedger

    n = len(plan)
    rate = min(config.rate_cap, n / (2 * window)) if rate is None else rate
    context = multiprocessing.get_context("fork")
    parent_pipe, child_pipe = context.Pipe()
    process = context.Process(
        target=_trigger_process, args=(child_pipe, url, plan, design, config, window), daemon=True
    )
    process.start()
    writer = CallLedger(url)
    write_times: dict[str, float] = {}
    try:
        if not parent_pipe.poll(config.warmup_timeout + 60):
            raise TimeoutError("the trigger process did not get ready")
        ready = parent_pipe.recv()
        if "error" in ready:
            raise RuntimeError(ready["error"])
        start_at = ready["start_at"]
        order = list(plan)
        random.Random(n).shuffle(order)
        # Each callback comes through the URL of the try that recorded its call (the receiver binds them).
        owner = {
            request_uuid: CorrelationToken(
                dag_id="reminders", run_id="bench", task_id="call", map_index=start
            )
            for start in range(0, len(plan), FIRED_BATCH)
            for request_uuid, _ in plan[start : start + FIRED_BATCH]
        }
        for index, (request_uuid, to) in enumerate(order if rate else ()):
            due = start_at + index / rate
            if due >= start_at + window - 0.05:
                break
            time.sleep(max(0.0, due - time.time()))
            if send is not None:
                write_times[request_uuid] = time.time()
                send(request_uuid, to, owner[request_uuid])
                continue
            form = hangup_form(call_uuid=new_uuid(), request_uuid=request_uuid, to=to)
            writer.ingest(
                [
                    writer.prepare_callback(
                        "hangup", form, correlation=owner[request_uuid], replay_keys=(new_uuid(),)
                    )
                ]
            )
            write_times[request_uuid] = time.time()
        parent_pipe.send(list(write_times))
        if not parent_pipe.poll(window + DRAIN_SECONDS + 120):
            raise TimeoutError("the trigger process did not report")
        result = parent_pipe.recv()
        if "error" in result:
            raise RuntimeError(result["error"])
    finally:
        writer.dispose()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    samples = result["samples"]
    latencies = [
        result["events"][key][0] - written for key, written in write_times.items() if key in result["events"]
    ]
    delivered = len(latencies)
    if delivered < len(write_times):
        # Not delivered within the drain: count them as later than anything measured.
        latencies += [math.inf] * (len(write_times) - delivered)
    # Consecutive stretches of the window (the last one takes the remainder).
    size = max(1, len(samples) // PARTS)
    parts = [samples[start : start + size] for start in range(0, size * (PARTS - 1), size)]
    parts.append(samples[size * (PARTS - 1) :] or samples)
    parts = [part for part in parts if part]  # a window shorter than PARTS intervals (B5): fewer parts

    def per_interval(key: str) -> float:
        return median([sum(sample[key] for sample in part) / len(part) for part in parts])

    cpu = per_interval("cpu") / config.interval
    return CaseResult(
        backend=backend,
        n=n,
        design=design,
        window=window,
        queries_per_interval=per_interval("queries"),
        control_per_interval=per_interval("control"),
        lookups_per_interval=per_interval("lookups"),
        pushed_per_interval=per_interval("pushed"),
        cpu_seconds_per_minute=cpu * 60,
        core_percent=cpu * 100,
        rss_per_trigger=(result["rss_after"] - result["rss_before"]) / n,
        objects_per_trigger=result["objects_per_trigger"],
        written=len(write_times),
        delivered=delivered,
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        max_stall=max(sample["stall"] for sample in samples),
        max_gc_pause=max(sample["gc"] for sample in samples),
        stall_warnings=sum(sample["warnings"] for sample in samples),
        startup_stall=result["startup_stall"],
        settled=result["settled"],
        waiting=result["waiting"],
    )


def _latency(value: float) -> str:
    return f"> {DRAIN_SECONDS:.0f} s (undelivered)" if math.isinf(value) else fmt_ms(value)


def run(*, smoke: bool = False, log: Any = print) -> Section:
    """Run B1 and return its section of RESULTS.md."""
    import vobiz_provider.triggers.hangup  # noqa: F401 - imported before forking, so children need not
    from vobiz_provider.triggers.poller import PUSH_MIN_GAP

    config = SMOKE if smoke else FULL
    backends = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])
    section = Section(
        key="b1",
        title="B1 — waiting triggers (the triggerer's view)",
        headers=[
            "store",
            "N",
            "design",
            "queries / interval",
            "of them early (push)",
            "lookups / interval",
            "CPU of a full lookup of N",
            "CPU s / min",
            "% of a core",
            "RSS / trigger",
            "GC objects / waiting trigger",
            "callbacks → events",
            "p50 latency",
            "p99 latency",
            "max watchdog sleep",
            "longest GC pause",
            "start-up stall",
        ],
    )
    results: list[CaseResult] = []
    for backend in backends:
        for n in config.sizes:
            with store_url(backend, f"b1_{n}") as url:
                plan = [(new_uuid(), destination(index)) for index in range(2 * n)]
                started = time.monotonic()
                _record_fired(url, plan)
                elapsed = time.monotonic() - started
                log(f"  B1 {backend} N={n}: {2 * n} fired calls recorded in {elapsed:.1f} s")
                lookup_cpu = _lookup_cost(url, [request_uuid for request_uuid, _ in plan[:n]])
                for design, part in (("shared", plan[:n]), ("naive", plan[n:])):
                    window = config.window
                    if design == "naive" and n == max(config.sizes):
                        window = config.naive_window_at_max
                    result = _run_case(
                        backend=backend, url=url, plan=part, design=design, config=config, window=window
                    )
                    if design == "shared":
                        result.lookup_cpu = lookup_cpu
                    log(
                        f"  B1 {backend} N={n} {design}: {result.queries_per_interval:.0f} queries/interval, "
                        f"{result.core_percent:.1f}% core, p99 {_latency(result.p99)}, "
                        f"watchdog max {result.max_stall:.2f} s, GC max {result.max_gc_pause:.2f} s, "
                        f"{result.objects_per_trigger:.1f} GC objects/waiting trigger"
                    )
                    results.append(result)
    for result in results:
        section.rows.append(
            [
                "SQLite" if result.backend == "sqlite" else "PostgreSQL",
                f"{result.n:,}",
                "shared poller" if result.design == "shared" else "naive (baseline)",
                fmt(result.queries_per_interval, 1)
                + (f" (+{result.control_per_interval:.1f} BEGIN)" if result.control_per_interval else ""),
                fmt(result.pushed_per_interval, 1) if result.design == "shared" else "-",
                fmt(result.lookups_per_interval, 1),
                fmt_ms(result.lookup_cpu, 1),
                fmt(result.cpu_seconds_per_minute, 1),
                fmt(result.core_percent, 1, " %"),
                fmt(result.rss_per_trigger / 1024, 1, " KiB"),
                fmt(result.objects_per_trigger, 1),
                f"{result.delivered} / {result.written}",
                _latency(result.p50),
                _latency(result.p99),
                f"{result.max_stall:.2f} s"
                + (f" ({result.stall_warnings} warn.)" if result.stall_warnings else ""),
                f"{result.max_gc_pause:.2f} s",
                f"{result.startup_stall:.2f} s",
            ]
        )
    limit = config.interval + 0.25
    for result in results:
        if result.design != "shared":
            continue
        store = "SQLite" if result.backend == "sqlite" else "PostgreSQL"
        label = f"N={result.n:,}, {store}"
        timed = result.queries_per_interval - result.pushed_per_interval
        section.checks.append(
            Check(
                name=f"B1 timed store queries per interval, {label}",
                measured=f"{timed:.1f} (+{result.pushed_per_interval:.1f} early, on a signalled write)",
                target=f"≤ 1, early ≤ {1 / PUSH_MIN_GAP * config.interval:.0f} (one per {PUSH_MIN_GAP:g} s)",
                passed=timed <= 1 and result.pushed_per_interval <= config.interval / PUSH_MIN_GAP,
            )
        )
        if result.n == max(config.sizes):
            section.checks.append(
                Check(
                    name=f"B1 CPU at the largest N, {label}",
                    measured=fmt(result.core_percent, 1, " % of a core"),
                    target="≤ 5 %",
                    passed=result.core_percent <= 5.0,
                )
            )
        section.checks.append(
            Check(
                name=f"B1 p99 callback→event latency, {label}",
                measured=_latency(result.p99),
                target=f"≤ {fmt_ms(limit)} (interval + 250 ms)",
                passed=result.delivered == result.written and result.p99 <= limit,
            )
        )
        section.checks.append(
            Check(
                name=f"B1 event-loop stall while waiting, {label}",
                measured=f"{result.max_stall:.2f} s",
                target=f"≤ {STALL_THRESHOLD} s",
                passed=result.max_stall <= STALL_THRESHOLD,
            )
        )
    for result in results:
        if result.design != "shared":
            continue
        store = "SQLite" if result.backend == "sqlite" else "PostgreSQL"
        notes = []
        if result.n == max(config.sizes):
            share = result.lookup_cpu / config.interval * 100
            notes.append(
                f"a full `CallLedger.lookup` of {result.n:,} calls costs {fmt_ms(result.lookup_cpu, 0)} "
                f"of CPU (SQL plus one `CallRecord` per row), {share:.0f} % of a core if it ran every "
                f"{config.interval:g} s; the shared poller does it only once for newly subscribed triggers "
                "and otherwise reads just the rows changed since its previous query."
            )
            if result.lookups_per_interval < 0.9:
                notes.append(
                    f"The poller managed only {result.lookups_per_interval:.2f} lookups per interval, so "
                    f"events wait for the next slow tick (p99 {_latency(result.p99)})."
                )
        if result.max_stall > STALL_THRESHOLD and result.max_gc_pause >= 0.7 * (
            result.max_stall - WATCHDOG_TICK
        ):
            notes.append(
                f"The loop stall ({result.max_stall:.2f} s watchdog sleep) is a garbage-collector pause "
                f"(longest {result.max_gc_pause:.2f} s): a full collection walks every object of the process "
                "(Airflow, SQLAlchemy and the N waiting triggers) while holding the GIL; the poller itself "
                "does no per-tick work that grows with N."
            )
        if notes:
            section.notes.append(f"{store}, N={result.n:,}: " + " ".join(notes))
    sizes = ", ".join(f"{n:,}" for n in config.sizes)
    section.method = (
        f"N = {sizes} triggers per case, `poll_interval` {config.interval:g} s, measured over "
        f"{config.window:g} s ({config.naive_window_at_max:g} s for the naive baseline at "
        f"N={max(config.sizes):,}) once every trigger is waiting; hangup callbacks written at "
        f"min({config.rate_cap:g}/s, N / (2 x window)). Queries per interval, CPU and RSS: the window is cut "
        f"into {PARTS} consecutive stretches and the figure is the median over them; watchdog sleep: the "
        "maximum over the window (Airflow's triggerer warns above 0.2 s); latencies: percentiles over every "
        "callback written in the window. GC objects per waiting trigger: objects tracked by the garbage "
        "collector after a full collection once the window is over, minus before the triggers were created, "
        "divided by the triggers still waiting (a full collection walks all of them). Start-up stall: the "
        "longest watchdog sleep while the N triggers "
        "were created at once, including a full garbage collection at its end (the heap's growth makes one "
        "due, and without it the last one may fall into the window; informational: a real triggerer picks "
        "up at most 50 triggers per loop). "
        "Each case runs in a fresh (forked) process; the store holds 2N fired calls (N per design). "
        "The store signals committed callbacks (PostgreSQL NOTIFY, SQLite data_version) and the shared "
        "poller then queries early, at most once per "
        f"{PUSH_MIN_GAP:g} s: those early queries are counted apart from the timed one per interval."
    )
    if not postgres_base_url():
        section.notes.append(
            "PostgreSQL rows skipped: set VOBIZ_BENCH_POSTGRES_URL (or VOBIZ_TEST_POSTGRES_URL) to include "
            "them."
        )
    return section
