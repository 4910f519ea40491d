"""B4 — DAG-parse cost: what the provider's DAG-facing modules add on top of ``import airflow.sdk``.

Each sample is a fresh interpreter that times, with ``time.perf_counter()``, first ``import airflow.sdk``
(the baseline, which every DAG file pays) and then the provider modules a DAG file imports (operator,
sensor, notifier). The figure is the median over the samples. One more interpreter runs the same imports
under ``python -X importtime`` to list the heaviest modules our imports pull in that ``airflow.sdk`` did
not already load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.common import Check, Section, fmt_ms, median

#: The modules a DAG file imports to use the provider.
DAG_MODULES = (
    "vobiz_provider.operators.call",
    "vobiz_provider.sensors.call",
    "vobiz_provider.notifications.vobiz",
)
#: Modules that must not be imported at DAG-parse time (deferred until execute).
HEAVY_MODULES = ("httpx", "sqlalchemy", "fastapi", "starlette", "tenacity", "uvicorn", "anyio")
TARGET_SECONDS = 0.030
MARK = "--vobiz-bench-mark--"

_TIMER = """
import json, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
before = set(sys.modules)
{imports}
t2 = time.perf_counter()
new = sorted(set(sys.modules) - before)
print(json.dumps({{"sdk": t1 - t0, "ours": t2 - t1, "new": new}}))
"""

_IMPORTTIME = """
import airflow.sdk, sys
sys.stderr.write("{mark}\\n")
{imports}
"""


def _modules() -> list[str]:
    present = []
    for name in DAG_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                present.append(name)
        except ModuleNotFoundError:
            pass
    return present


def _imports(modules: list[str]) -> str:
    return "\n".join(f"import {name}" for name in modules)


_PYCACHE = tempfile.mkdtemp(prefix="vobiz-bench-pycache-")


def _child_env() -> dict[str, str]:
    """The environment of each interpreter: with a bytecode cache, as a DAG processor has.

    pip compiles installed packages (Airflow's included) at install time, and a DAG processor re-parses DAG
    files in an environment whose ``.pyc`` files exist. This machine sets ``PYTHONDONTWRITEBYTECODE=1``,
    which would make every sample compile our (editable, never compiled) sources — a cost no real
    deployment pays — so the samples use a private ``PYTHONPYCACHEPREFIX`` warmed by one uncounted run.
    """
    env = os.environ.copy()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    return env


def _sample(modules: list[str]) -> dict[str, Any]:
    code = _TIMER.format(imports=_imports(modules))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_child_env()
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _importtime(modules: list[str]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Our top-level imports with their cumulative µs, and every module they pulled in with its self µs."""
    code = _IMPORTTIME.format(mark=MARK, imports=_imports(modules))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=_child_env(),
    )
    lines = done.stderr.splitlines()
    after = lines[lines.index(MARK) + 1 :] if MARK in lines else []
    top_level: list[tuple[str, int]] = []
    every: list[tuple[str, int]] = []
    for line in after:
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        try:
            self_value, cumulative = int(self_us), int(cumulative_us)
        except ValueError:
            continue
        # The name is indented by two spaces per nesting level, after one separating space.
        if not name.startswith("   "):
            top_level.append((name.strip(), cumulative))
        every.append((name.strip(), self_value))
    return top_level, sorted(every, key=lambda item: item[1], reverse=True)


def run(*, smoke: bool = False, log: Any = print) -> Section:
    """Run B4 and return its section of RESULTS.md."""
    modules = _modules()
    samples_count = 1 if smoke else 7
    _sample(modules)  # warms the bytecode cache; not counted
    samples = []
    for index in range(samples_count):
        samples.append(_sample(modules))
        log(
            f"  B4 sample {index + 1}/{samples_count}: airflow.sdk {samples[-1]['sdk'] * 1000:.0f} ms, "
            f"provider modules {samples[-1]['ours'] * 1000:.1f} ms"
        )
    sdk = median([sample["sdk"] for sample in samples])
    ours = median([sample["ours"] for sample in samples])
    new_modules = samples[-1]["new"]
    heavy = sorted({name.split(".")[0] for name in new_modules if name.split(".")[0] in HEAVY_MODULES})
    section = Section(
        key="b4",
        title="B4 — DAG-parse cost",
        method=(
            f"{samples_count} fresh interpreters (bytecode cache warmed by one uncounted run, as in a real "
            "install); each times `import airflow.sdk` (baseline) and then "
            f"`import {', '.join(modules)}` with `time.perf_counter()`; medians. Heaviest imports from one "
            "more interpreter under `python -X importtime` (µs, after `airflow.sdk` was imported)."
        ),
        headers=["measure", "median", "samples"],
        rows=[
            [
                "`import airflow.sdk` (baseline)",
                fmt_ms(sdk),
                ", ".join(f"{sample['sdk'] * 1000:.0f}" for sample in samples) + " ms",
            ],
            [
                "provider modules on top",
                fmt_ms(ours, 1),
                ", ".join(f"{sample['ours'] * 1000:.1f}" for sample in samples) + " ms",
            ],
            ["added, relative to the baseline", f"{ours / sdk * 100:.1f} %", ""],
            ["modules newly imported", str(len(new_modules)), ""],
        ],
    )
    missing = [name for name in DAG_MODULES if name not in modules]
    if missing:
        section.notes.append(f"Not present (not measured): {', '.join(missing)}.")
    eager = [
        name
        for name in ("vobiz_provider.models.responses", "vobiz_provider.models.callbacks")
        if name in new_modules
    ]
    if eager:
        section.notes.append(
            "The operator only needs `vobiz_provider.models.call` (`MakeCallRequest`) at parse time, but "
            "importing it runs `vobiz_provider/models/__init__.py`, which imports every model package-wide: "
            + ", ".join(f"`{name}`" for name in eager)
            + " are built (pydantic schema generation) on every DAG parse."
        )
    if not smoke:
        top_level, slowest = _importtime(modules)
        section.notes.append(
            "`-X importtime`, cumulative per DAG-facing import: "
            + "; ".join(f"`{name}` {micros / 1000:.1f} ms" for name, micros in top_level if name in modules)
            + ". Slowest modules they pull in (self time): "
            + "; ".join(f"`{name}` {micros / 1000:.1f} ms" for name, micros in slowest[:8])
            + "."
        )
    section.notes.append(
        "Heavy libraries imported at DAG-parse time: "
        + (
            ", ".join(f"`{name}`" for name in heavy)
            if heavy
            else "none (httpx, SQLAlchemy, FastAPI, tenacity, uvicorn, anyio all deferred until execute)"
        )
        + "."
    )
    section.checks.append(
        Check(
            name="B4 import time added on top of `import airflow.sdk`",
            measured=fmt_ms(ours, 1),
            target=f"≤ {fmt_ms(TARGET_SECONDS)}",
            passed=ours <= TARGET_SECONDS,
        )
    )
    section.checks.append(
        Check(
            name="B4 heavy imports deferred until execute",
            measured=", ".join(heavy) if heavy else "none at parse time",
            target="none of " + ", ".join(HEAVY_MODULES),
            passed=not heavy,
            note="" if not heavy else "imported by the DAG-facing modules (see the notes for the chain)",
        )
    )
    return section
