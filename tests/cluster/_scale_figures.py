"""The figures of the cluster scenario, computed from what the emulator, the store and the metadata DB saw.

Kept apart from the scenario so that each piece can be read on its own: :func:`max_rate` (the highest
number of accepted ``POST /Call/`` in any sliding second), :func:`percentile`, and :class:`ScaleFigures`,
the line ``./scripts/cluster bench`` prints and ``docs/scaling.md`` quotes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

#: Recipients of the scenario: ``./scripts/cluster bench`` sets 500 or more; CI runs this many.
RECIPIENTS = int(os.environ.get("VOBIZ_CLUSTER_RECIPIENTS") or 60)


def max_rate(times: Sequence[datetime], *, window: float = 1.0) -> int:
    """The most events of ``times`` inside any window of ``window`` seconds (half-open, as Vobiz's sliding
    second: two events exactly ``window`` apart are in different windows)."""
    stamps = sorted(t.timestamp() for t in times)
    best, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0-100) of ``values`` by the nearest-rank method; ``nan`` when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, kw_only=True)
class ScaleFigures:
    """What the scenario measured.

    :param recipients: Mapped call tasks (one recipient each).
    :param calls_placed: ``POST /Call/`` the emulator accepted.
    :param http_429: ``POST /Call/`` the emulator refused for the account's CPS.
    :param cps: The account's limit.
    :param max_rate: Most calls accepted in any sliding second.
    :param double_dials: Recipients dialled more than once.
    :param lost_outcomes: Calls whose hangup the store does not hold with the emulator's status, or whose
        task did not succeed.
    :param triggers_per_triggerer: Triggers first run by triggerer-1 and by triggerer-2.
    :param worker_kill_tasks: Tasks running on the killed worker (retried).
    :param triggerer_kill_triggers: Triggers the killed triggerer held (taken over by the other).
    :param callbacks_after_receiver_stop: Callbacks answered 200 (through nginx) after the standalone
        receiver was stopped.
    :param failed_callback_attempts: Callback attempts that got no 200 (the emulator retries them).
    :param event_p50_s: Callback stored to TriggerEvent, median (triggers whose triggerer lived).
    :param event_p99_s: Same, 99th percentile.
    :param finished_p50_s: Callback stored to the resumed task finished, median.
    :param finished_p99_s: Same, 99th percentile.
    :param failover_finished_max_s: Callback stored to task finished, slowest, for triggers moved from
        the killed triggerer (includes the heartbeat timeout).
    :param duration_s: Run start to run end.
    """

    recipients: int
    calls_placed: int
    http_429: int
    cps: int
    max_rate: int
    double_dials: int
    lost_outcomes: int
    triggers_per_triggerer: tuple[int, int]
    worker_kill_tasks: int
    triggerer_kill_triggers: int
    callbacks_after_receiver_stop: int
    failed_callback_attempts: int
    event_p50_s: float
    event_p99_s: float
    finished_p50_s: float
    finished_p99_s: float
    failover_finished_max_s: float
    duration_s: float

    def line(self) -> str:
        """One JSON line (``cluster figures: {...}``)."""
        return "cluster figures: " + json.dumps(asdict(self), sort_keys=True)

    def table(self) -> str:
        """The figures as a Markdown table (what ``docs/scaling.md`` shows)."""
        t1, t2 = self.triggers_per_triggerer
        rows = [
            ("Recipients (mapped call tasks)", f"{self.recipients}"),
            ("Calls placed (POST /Call/ accepted)", f"{self.calls_placed}"),
            ("HTTP 429", f"{self.http_429}"),
            ("Highest calls in one sliding second vs cps", f"{self.max_rate} vs {self.cps}"),
            ("Double dials", f"{self.double_dials}"),
            ("Lost outcomes", f"{self.lost_outcomes}"),
            ("Triggers run by triggerer-1 / triggerer-2", f"{t1} / {t2}"),
            ("Tasks on the killed worker (retried, not redialled)", f"{self.worker_kill_tasks}"),
            ("Triggers on the killed triggerer (moved)", f"{self.triggerer_kill_triggers}"),
            ("Callbacks through nginx after the receiver stopped", f"{self.callbacks_after_receiver_stop}"),
            ("Callback attempts without a 200", f"{self.failed_callback_attempts}"),
            (
                "Callback stored -> TriggerEvent, p50 / p99",
                f"{self.event_p50_s:.2f} s / {self.event_p99_s:.2f} s",
            ),
            (
                "Callback stored -> task finished, p50 / p99",
                f"{self.finished_p50_s:.2f} s / {self.finished_p99_s:.2f} s",
            ),
            ("Same, slowest moved trigger", f"{self.failover_finished_max_s:.1f} s"),
            ("Run duration", f"{self.duration_s:.0f} s"),
        ]
        return "\n".join(["| Figure | Value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])
