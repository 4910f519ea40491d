"""Stopping a component as if its host died: its process group and every process below it.

Airflow's task supervisor puts each task process in a process group of its own, so ``killpg`` of a Celery
worker's group leaves its running tasks alive. :func:`kill_tree` finds them through ``/proc`` first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

from _processes import group_alive
from _waiting import wait_until

__all__ = ["descendants", "kill_tree", "stop_pid_groups"]


def descendants(root: int) -> list[int]:
    """Every living process below ``root`` (``/proc``), including those in process groups of their own:
    Airflow's task supervisor puts each task process in its own group."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            children[int(fields[1])].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_tree(pid: int) -> None:
    """``kill -9`` a component as if its host died: its process group and every process below it."""
    below = descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for child in below:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    wait_until(
        lambda: not group_alive(pid) and not any(_alive(child) for child in below),
        timeout=30,
        interval=0.1,
        what=f"process tree {pid} to die",
    )


def stop_pid_groups(pids: list[int], grace: float) -> None:
    """SIGTERM every group at once, SIGKILL what is left of each tree after ``grace`` seconds."""
    below = {pid: descendants(pid) for pid in pids}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace

    def running(pid: int) -> bool:
        return group_alive(pid) or any(_alive(child) for child in below[pid])

    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        kill_tree(pid)
        for child in below[pid]:  # task processes in groups of their own, whose parent is gone
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)
