"""B2's paced runs: with a mean wait, wrk's connections send about connections / wait requests per second
instead of as many as the server answers (:file:`benchmarks/b2_replay.lua`'s ``delay``). Against the bare
route; the bounds are wide (a factor of two either way), since only the pacing itself is checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.b2_receiver import CallbackFactory, run_wrk
from benchmarks.common import free_port, stop_process, wait_for_http

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="B2's load generator is Debian's wrk")

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_a_mean_wait_paces_each_connection(tmp_path: Path) -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.b2_receiver",
            "--bare-server",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
    )
    try:
        wait_for_http(f"{root}/", process=server)
        requests = tmp_path / "requests.txt"
        CallbackFactory(f"{root}/vobiz", None, capacity=0).write(requests, 200)
        connections, think = 8, 0.1
        closed = run_wrk(root, requests, connections=connections, duration=2)
        paced = run_wrk(root, requests, connections=connections, duration=2, think=think)
    finally:
        stop_process(server)

    offered = connections / think  # 80/s
    assert offered / 2 < paced.throughput < offered * 2, paced
    assert closed.throughput > 4 * paced.throughput, (closed, paced)
    assert paced.other == paced.errors == 0
