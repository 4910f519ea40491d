"""B5 — push: callback POST → TriggerEvent latency with a long poll interval, and the idle cost of push.

N = 1,000 real :class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger` s wait in one asyncio loop of a
fresh process (B1's harness), with ``poll_interval`` 5 s, against a store where their calls were recorded as
fired. The parent process posts signed hangup callbacks to a real ``vobiz-callbacks serve`` (same store,
signatures required) at a steady rate; the latency of each is the time its trigger yields its event minus
the time the POST began, so it includes HTTP, verification, the durable commit, the store's signal
(PostgreSQL ``NOTIFY``, SQLite ``PRAGMA data_version``) and the poller's early query. Without push that
latency is up to one interval (5 s). Then the same N triggers wait with no callback at all, and the CPU of
their process (every thread) over the window is the idle cost.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BENCH_AUTH_TOKEN,
    BENCH_SECRET,
    Check,
    Section,
    destination,
    fmt,
    fmt_ms,
    free_port,
    hangup_form,
    new_uuid,
    postgres_base_url,
    receiver_env,
    stop_process,
    store_url,
    wait_for_http,
)

P99_TARGET = 0.250
IDLE_TARGET = 1.0  # % of a core


@dataclass(frozen=True, kw_only=True)
class B5Config:
    n: int = 1_000
    interval: float = 5.0
    window: float = 6.0
    idle_window: float = 5.0
    rate: float = 15.0


FULL = B5Config()
SMOKE = B5Config(n=20, interval=0.5, window=1.0, idle_window=0.5, rate=5.0)


class _Poster:
    """Posts a signed hangup of a recorded call to the receiver, as Vobiz does (one keep-alive client)."""

    def __init__(self, base_url: str) -> None:
        import httpx

        self.base_url = base_url
        self.public_url = f"{base_url}/callbacks/hangup"
        self.client = httpx.Client(timeout=10.0)
        self.urls: dict[str, str] = {}
        self.failures = 0

    def __call__(self, request_uuid: str, to: str, correlation: Any) -> None:
        from vobiz_provider.correlation import KINDS_OF_URL, callback_url
        from vobiz_provider.signatures import signature_headers

        url = self.urls.get(correlation.ti_key)
        if url is None:
            expires_at = time.time() + 3600
            token = correlation.encode(BENCH_SECRET, kinds=KINDS_OF_URL["hangup"], expires_at=expires_at)
            url = self.urls[correlation.ti_key] = callback_url(self.base_url, "hangup", token)
        headers = signature_headers(self.public_url, BENCH_AUTH_TOKEN)
        form = hangup_form(call_uuid=new_uuid(), request_uuid=request_uuid, to=to)
        response = self.client.post(url, data=form, headers=headers)
        if response.status_code != 200:
            self.failures += 1

    def close(self) -> None:
        self.client.close()


def _start_receiver(url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    from benchmarks.b2_receiver import _receiver_command

    port = free_port()
    base_url = f"http://127.0.0.1:{port}/vobiz"
    env = receiver_env(url, base_url)
    log = open(workdir / "receiver.log", "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(_receiver_command(port), env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for_http(f"{base_url}/health", process=process)
    return process, base_url


def run(*, smoke: bool = False, log: Any = print) -> Section:
    """Run B5 and return its section of RESULTS.md."""
    import vobiz_provider.triggers.hangup  # noqa: F401 - imported before forking, so children need not
    from benchmarks.b1_triggers import B1Config, _record_fired, _run_case
    from vobiz_provider.ledger.change_signal import SQLITE_CHECK_INTERVAL
    from vobiz_provider.triggers.poller import PUSH_MIN_GAP

    config = SMOKE if smoke else FULL
    backends = ["sqlite"] + (["postgresql"] if postgres_base_url() else [])
    section = Section(
        key="b5",
        title="B5 — push: callback POST → TriggerEvent",
        method=(
            f"N = {config.n:,} `VobizCallHangupTrigger`s waiting in one loop of a fresh process (B1's "
            f"harness), `poll_interval` {config.interval:g} s. Hangups POSTed, signed, to `vobiz-callbacks "
            f"serve` on the same store at {config.rate:g}/s for {config.window:g} s; latency = event yielded "
            "minus POST begun (HTTP, checks, durable commit, the store's signal, the early query). Then "
            f"{config.idle_window:g} s with no callback: CPU of the trigger process (all threads) = idle "
            f"cost. Early queries at most every {PUSH_MIN_GAP:g} s; SQLite's `PRAGMA data_version` read "
            f"every {SQLITE_CHECK_INTERVAL * 1000:.0f} ms."
        ),
        headers=[
            "store",
            "N",
            "poll interval",
            "callbacks → events",
            "p50 latency",
            "p99 latency",
            "early queries / interval",
            "timed queries / interval",
            "idle CPU (% of a core)",
            "max watchdog sleep",
        ],
    )
    b1_config = B1Config(sizes=(config.n,), interval=config.interval, window=config.window)
    with tempfile.TemporaryDirectory(prefix="vobiz-bench-b5-") as directory:
        for backend in backends:
            name = "SQLite" if backend == "sqlite" else "PostgreSQL"
            with store_url(backend, "b5") as url:
                plan = [(new_uuid(), destination(index)) for index in range(config.n)]
                _record_fired(url, plan)
                receiver, base_url = _start_receiver(url, Path(directory))
                poster = _Poster(base_url)
                try:
                    busy = _run_case(
                        backend=backend,
                        url=url,
                        plan=plan,
                        design="shared",
                        config=b1_config,
                        window=config.window,
                        rate=config.rate,
                        send=poster,
                    )
                    idle = _run_case(
                        backend=backend,
                        url=url,
                        plan=plan,
                        design="shared",
                        config=b1_config,
                        window=config.idle_window,
                        rate=0.0,
                    )
                finally:
                    poster.close()
                    stop_process(receiver)
            log(
                f"  B5 {backend}: p99 {busy.p99 * 1000:.0f} ms, {busy.delivered}/{busy.written} delivered, "
                f"idle {idle.core_percent:.2f} % of a core"
            )
            section.rows.append(
                [
                    name,
                    f"{config.n:,}",
                    f"{config.interval:g} s",
                    f"{busy.delivered} / {busy.written}"
                    + (f" ({poster.failures} not 200)" if poster.failures else ""),
                    fmt_ms(busy.p50, 0),
                    fmt_ms(busy.p99, 0),
                    fmt(busy.pushed_per_interval, 1),
                    fmt(busy.queries_per_interval - busy.pushed_per_interval, 1),
                    fmt(idle.core_percent, 2, " %"),
                    f"{max(busy.max_stall, idle.max_stall):.2f} s",
                ]
            )
            section.checks.append(
                Check(
                    name=f"B5 p99 callback POST → TriggerEvent, N={config.n:,}, {name}",
                    measured=fmt_ms(busy.p99, 0),
                    target=f"≤ 250 ms (poll interval {config.interval:g} s)",
                    passed=busy.delivered == busy.written and busy.p99 <= P99_TARGET and not poster.failures,
                )
            )
            section.checks.append(
                Check(
                    name=f"B5 idle cost, N={config.n:,}, {name}",
                    measured=fmt(idle.core_percent, 2, " % of a core"),
                    target="≤ 1 %",
                    passed=idle.core_percent <= IDLE_TARGET,
                )
            )
    if not postgres_base_url():
        section.notes.append(
            "PostgreSQL rows skipped: set VOBIZ_BENCH_POSTGRES_URL (or VOBIZ_TEST_POSTGRES_URL) to include "
            "them."
        )
    return section


if __name__ == "__main__":  # pragma: no cover - python -m benchmarks.b5_push
    section = run(smoke="--smoke" in sys.argv)
    print(section.rows, [(check.name, check.measured, check.passed) for check in section.checks], sep="\n")
