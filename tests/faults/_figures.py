"""The figures every fault scenario reports, and the sizes it runs at.

Each scenario of ``tests/faults`` ends with one :func:`record` per store: what it sent, what was
acknowledged, what the store holds, and what went wrong. ``./scripts/faults`` runs the suite at full size
(``VOBIZ_FAULTS_FULL=1``) with ``VOBIZ_FAULTS_REPORT`` naming a JSON-lines file, then prints the rows as one
table (``python tests/faults/_figures.py REPORT``); CI runs the same scenarios at the smaller size of
:func:`size`. ``docs/reliability.md`` holds the last full table.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

#: Set to ``1`` by ``./scripts/faults``: every scenario runs at the size the issue asks for.
FULL = os.environ.get("VOBIZ_FAULTS_FULL") == "1"


def size(*, ci: int, full: int) -> int:
    """The number of requests, events or crashes a scenario runs: ``full`` under ``./scripts/faults``,
    ``ci`` in the test suite (kept small enough for CI's time budget)."""
    return full if FULL else ci


@dataclass(frozen=True, kw_only=True)
class Figures:
    """One row of the fault table.

    :param scenario: Short name, e.g. ``"fuzz"`` or ``"receiver kill -9"``.
    :param store: ``"sqlite"`` or ``"postgresql"``.
    :param sent: Requests (or events: calls, crashes) sent.
    :param acknowledged: Answered 200 (or, for task scenarios, tasks that ended in their expected state).
    :param stored: Distinct callbacks (or calls) the store holds at the end.
    :param lost: Acknowledged but not stored (or tasks whose outcome was wrong or missing).
    :param duplicated: Stored more than once.
    :param double_dials: Destinations dialled more than once by one try and its retries.
    :param expected_5xx: 503 answers during a real store outage (by design).
    :param unexpected_5xx: Every other answer >= 500.
    :param slowest_answer_s: Slowest answer to any request, in seconds.
    :param note: Anything else the row needs (e.g. how many kills).
    """

    scenario: str
    store: str
    sent: int
    acknowledged: int
    stored: int
    lost: int
    duplicated: int
    double_dials: int = 0
    expected_5xx: int = 0
    unexpected_5xx: int = 0
    slowest_answer_s: float = 0.0
    note: str = ""

    @property
    def clean(self) -> bool:
        """No loss, no double dial and no unexpected 5xx."""
        return self.lost == 0 and self.double_dials == 0 and self.unexpected_5xx == 0


def record(figures: Figures) -> Figures:
    """Append ``figures`` to ``$VOBIZ_FAULTS_REPORT`` (when set) and print them; returns them for asserts."""
    line = json.dumps(asdict(figures), sort_keys=True)
    print(f"fault figures: {line}")
    report = os.environ.get("VOBIZ_FAULTS_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as out:
            out.write(line + "\n")
    return figures


_HEADINGS = {
    "scenario": "Scenario",
    "store": "Store",
    "sent": "Sent",
    "acknowledged": "Acknowledged",
    "stored": "Stored",
    "lost": "Lost",
    "duplicated": "Duplicated",
    "double_dials": "Double dials",
    "expected_5xx": "503 (outage)",
    "unexpected_5xx": "Other 5xx",
    "slowest_answer_s": "Slowest answer",
    "note": "Note",
}


def table(rows: list[Figures]) -> str:
    """``rows`` as a Markdown table."""
    names = [f.name for f in fields(Figures)]
    lines = [
        "| " + " | ".join(_HEADINGS[name] for name in names) + " |",
        "|" + "|".join("---" for _ in names) + "|",
    ]
    for row in rows:
        cells = []
        for name in names:
            value = getattr(row, name)
            cells.append(f"{value:.3f} s" if name == "slowest_answer_s" else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read(path: Path) -> list[Figures]:
    """The rows a run appended to ``path``."""
    return [Figures(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def main(argv: list[str]) -> int:
    """Print the table of the report ``argv[0]``; exit 1 when a row is not clean or there is none."""
    rows = read(Path(argv[0]))
    print(table(rows))
    dirty = [row for row in rows if not row.clean]
    for row in dirty:
        print(f"NOT CLEAN: {row.scenario} on {row.store}", file=sys.stderr)
    return 1 if dirty or not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
