"""Run the provider's benchmarks, print one markdown report and write it to ``benchmarks/RESULTS.md``.

Usage (from the repository root)::

    python -m benchmarks.run                 # everything, writes benchmarks/RESULTS.md
    python -m benchmarks.run --only b1,b3    # some of them
    python -m benchmarks.run --smoke         # tiny sizes: proves the code runs (figures meaningless)

PostgreSQL rows need ``VOBIZ_BENCH_POSTGRES_URL`` (or ``VOBIZ_TEST_POSTGRES_URL``), e.g.
``postgresql://postgres@127.0.0.1:5432/test``; each case uses its own schema, dropped afterwards.

Exit status: 0 when every target is met, 1 when one is missed, 2 when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # ``python benchmarks/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO_ROOT, Check, Section, machine_info, markdown_table, prepare_environment

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

BENCHMARKS = ("b1", "b2", "b3", "b4", "b5")
#: Order of execution: the import benchmark first (fresh interpreters, nothing else running), B1 last.
ORDER = ("b4", "b3", "b2", "b5", "b1")
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "RESULTS.md"
TIME_BUDGET = 600.0


def _runner(key: str) -> Callable[..., Section]:
    if key == "b1":
        from benchmarks.b1_triggers import run
    elif key == "b2":
        from benchmarks.b2_receiver import run
    elif key == "b3":
        from benchmarks.b3_firing import run
    elif key == "b5":
        from benchmarks.b5_push import run
    else:
        from benchmarks.b4_import import run
    return run


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def render(
    sections: Sequence[Section], *, info: dict[str, str], command: str, seconds: float, smoke: bool
) -> str:
    """The whole report as markdown."""
    checks = [check for section in sections for check in section.checks]
    missed = [check for check in checks if check.passed is False]
    lines = ["# Benchmark results", ""]
    if smoke:
        lines += ["**Smoke run (tiny sizes): the figures below say nothing about performance.**", ""]
    lines += [
        f"Command: `{command}` — {seconds:.0f} s in all (budget {TIME_BUDGET:.0f} s). "
        f"{len(checks) - len(missed)} of {len(checks)} target checks met"
        + (f", **{len(missed)} missed**." if missed else "."),
        "",
        "Every figure is a median over repeated runs or intervals and sits next to its baseline, measured in "
        "the same run (how, per benchmark, below). The machine is shared: read ratios rather than absolute "
        "figures, and compare the load average.",
        "",
        "## Machine",
        "",
        markdown_table(["", ""], [[key, value] for key, value in info.items()]),
        "",
        "## Targets",
        "",
        markdown_table(
            ["check", "measured", "target", "verdict"],
            [[c.name, c.measured, c.target, c.verdict + (f" — {c.note}" if c.note else "")] for c in checks],
        ),
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.method:
            lines += [f"*How:* {section.method}", ""]
        if section.headers:
            lines += [section.table(), ""]
        for note in section.notes:
            lines += [f"- {note}"]
        if section.notes:
            lines.append("")
        lines += [f"*({section.seconds:.0f} s)*", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the code runs")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated benchmarks to run (b1,b2,b3,b4)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where to write the report (default {DEFAULT_OUTPUT.relative_to(REPO_ROOT)}; "
        "a smoke run writes nothing unless given)",
    )
    args = parser.parse_args(argv)
    wanted = [key.strip().lower() for key in args.only.split(",") if key.strip()]
    unknown = sorted(set(wanted) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    output = args.output if args.output is not None else (None if args.smoke else DEFAULT_OUTPUT)
    if args.smoke:
        # Smoke runs prove the code paths on SQLite only and never touch a shared server.
        for name in ("VOBIZ_BENCH_POSTGRES_URL", "VOBIZ_TEST_POSTGRES_URL"):
            os.environ.pop(name, None)

    prepare_environment()
    os.chdir(REPO_ROOT)
    info = machine_info()
    started = time.monotonic()
    sections: list[Section] = []
    crashed = False
    for key in ORDER:
        if key not in wanted:
            continue
        _log(f"{key.upper()}: running{' (smoke)' if args.smoke else ''} ...")
        section_started = time.monotonic()
        try:
            section = _runner(key)(smoke=args.smoke, log=_log)
        except Exception as err:
            crashed = True
            traceback.print_exc()
            section = Section(key=key, title=f"{key.upper()} — could not run")
            section.checks.append(
                Check(
                    name=f"{key.upper()} ran to completion",
                    measured=f"{type(err).__name__}: {err}",
                    target="completes",
                    passed=False,
                )
            )
        section.seconds = time.monotonic() - section_started
        _log(f"{key.upper()}: done in {section.seconds:.0f} s")
        sections.append(section)
    sections.sort(key=lambda section: BENCHMARKS.index(section.key))
    seconds = time.monotonic() - started
    with contextlib.suppress(OSError):
        info["Load average at end (1/5/15 min)"] = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    command = "python -m benchmarks.run" + (" --smoke" if args.smoke else "")
    if set(wanted) != set(BENCHMARKS):
        command += f" --only {','.join(wanted)}"
    report = render(sections, info=info, command=command, seconds=seconds, smoke=args.smoke)
    print(report)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report + "\n", encoding="utf-8")
        _log(f"Report written to {output}")
    if crashed:
        return 2
    missed = [check for section in sections for check in section.checks if check.passed is False]
    if not args.smoke and seconds > TIME_BUDGET:
        _log(f"The run took {seconds:.0f} s, over the {TIME_BUDGET:.0f} s budget")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
