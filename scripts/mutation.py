"""Mutation testing of the modules that decide trust: does each module's own test suite notice a broken rule?

Usage (through ``./scripts/mutation``)::

    scripts/mutation.py [--config scripts/mutation.toml] [--jobs N] [--fail-under PCT] [module ...]

For each target named in the config (or each ``module`` given, matched against the targets' paths), the
module's AST is changed one small way at a time (a *mutant*: a flipped comparison, a constant ±1, a dropped
``not``, ``and``/``or`` swapped, a deleted statement, a removed tuple/list/dict element or keyword
argument, a changed regex quantifier, ...) and the target's own tests run against it. A mutant the tests
fail on is *killed*; one they pass on *survived*. Score = killed / (mutants - equivalent), where
equivalent mutants (no behaviour changes) are listed with a reason in the config and not counted.

How it runs: one baseline run of the target's tests under coverage (per-test contexts) records which tests
execute each line; every mutant then runs, in a forked child with the mutated module compiled from its
AST and installed ahead of the real one on ``sys.meta_path``, only the tests that execute the mutated lines
(all of them for lines run at import time, so module-level constants and tables are mutated too, which
mutmut 3 cannot do). The parent imports the heavy third-party modules once, so a child starts in well
under a second. Exit status: 0 when every target reaches the threshold, 1 when one does not, 2 on a usage
error or when the unmutated tests fail.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import dataclasses
import gc
import hashlib
import importlib
import importlib.abc
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import CodeType, ModuleType

# ---------------------------------------------------------------------------------------------------------
# Mutants


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mutant:
    """One small change to a module.

    :param index: Position of the changed node in ``ast.walk`` order of the parsed module.
    :param operator: Name of the mutation operator.
    :param detail: Which variant of the operator (e.g. which element is removed).
    :param lineno: First line of the changed node.
    :param end_lineno: Last line of the changed node.
    :param description: ``before → after``, human-readable.
    :param id: Stable identifier: a hash of the module path, the source line, the description and the
        occurrence number; it survives edits elsewhere in the module.
    """

    index: int
    operator: str
    detail: int
    lineno: int
    end_lineno: int
    description: str
    id: str


_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
}
_DESCRIPTIVE_KEYWORDS = frozenset({"description", "title", "examples", "help", "metavar"})
_LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "warn"})
_LOGGER_NAMES = frozenset({"log", "logger", "_log", "_logger", "LOG"})
_REGEX_FUNCTIONS = frozenset({"compile", "match", "fullmatch", "search", "sub", "subn", "split", "findall"})
_QUANTIFIER = re.compile(r"\{(\d*)(,?)(\d*)\}")


def _is_log_call(node: ast.AST) -> bool:
    """``log.info(...)``, ``self.log.warning(...)``, ``warnings.warn(...)``: messages, not behaviour."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    if node.func.attr not in _LOG_METHODS:
        return False
    owner = node.func.value
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return name in _LOGGER_NAMES or name == "warnings"


def _regex_strings(tree: ast.AST) -> set[int]:
    """ids of string constants used as regular expressions (``re.compile(...)``, ``pattern=...``)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        is_re = (
            isinstance(func, ast.Attribute)
            and func.attr in _REGEX_FUNCTIONS
            and isinstance(func.value, ast.Name)
            and func.value.id == "re"
        )
        if is_re and node.args and isinstance(node.args[0], ast.Constant):
            found.add(id(node.args[0]))
        for keyword in node.keywords:
            if keyword.arg in {"pattern", "regex"} and isinstance(keyword.value, ast.Constant):
                found.add(id(keyword.value))
    return found


def _regex_variants(pattern: str) -> list[tuple[str, str]]:
    """Each quantifier of ``pattern`` changed one way: ``(new pattern, description)``."""
    variants: list[tuple[str, str]] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "+*?" and i > 0 and pattern[i - 1] not in "(|":
            if char == "?" and pattern[i - 1] in "+*?}":
                i += 1  # a lazy marker, not a quantifier
                continue
            replacement = {"+": "*", "*": "+", "?": ""}[char]
            variants.append(
                (pattern[:i] + replacement + pattern[i + 1 :], f"`{char}` → `{replacement}` at {i}")
            )
        elif char == "{" and (match := _QUANTIFIER.match(pattern, i)):
            low, comma, high = match.groups()
            options: list[str] = []
            if low and int(low) > 0:
                options.append(f"{{{int(low) - 1}{comma}{high}}}")
            if comma and high:
                options.append(f"{{{low}{comma}{int(high) + 1}}}")
            elif not comma and low:
                options.append(f"{{{int(low) + 1}}}")
            for option in options:
                new = pattern[:i] + option + pattern[match.end() :]
                variants.append((new, f"`{match.group()}` → `{option}`"))
            i = match.end()
            continue
        elif char in "^$" and not in_class:
            variants.append((pattern[:i] + pattern[i + 1 :], f"anchor `{char}` removed at {i}"))
        i += 1
    return variants


class _Skips:
    """Nodes that are not behaviour: docstrings, annotations, ``__all__``, ``TYPE_CHECKING`` blocks, log
    calls."""

    def __init__(self, tree: ast.Module) -> None:
        self.ids: set[int] = set()
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and _is_docstring(body[0]):
                self._skip(body[0])
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.returns is not None:
                    self._skip(node.returns)
                for decorator in node.decorator_list:
                    self._skip(decorator)
                for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                    if arg.annotation is not None:
                        self._skip(arg.annotation)
                for arg in (node.args.vararg, node.args.kwarg):
                    if arg is not None and arg.annotation is not None:
                        self._skip(arg.annotation)
            elif isinstance(node, ast.ClassDef):
                for decorator in node.decorator_list:
                    self._skip(decorator)
            elif isinstance(node, ast.AnnAssign):
                self._skip(node.annotation)
            elif _is_unmutated_statement(node):
                self._skip(node)
            elif isinstance(node, ast.Subscript):
                self._skip(node.slice)  # type arguments and indices: dict[str, int], row[0]
            elif isinstance(node, ast.JoinedStr):
                self._skip(node)  # f-strings are messages
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"TypeVar", "cast"}) or (
                _is_log_call(node)
            ):
                self._skip(node)
            elif isinstance(node, ast.Call):
                # pydantic's Field(ge=..., pattern=...) constraints are rules; its texts are not.
                for keyword in node.keywords:
                    if keyword.arg in _DESCRIPTIVE_KEYWORDS:
                        self._skip(keyword)

    def _skip(self, node: ast.AST) -> None:
        self.ids.update(id(child) for child in ast.walk(node))


def _is_unmutated_statement(node: ast.AST) -> bool:
    """``__all__ = [...]``, ``if TYPE_CHECKING:`` and ``log.info(...)`` statements."""
    if isinstance(node, ast.Assign):
        return any(isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets)
    if isinstance(node, ast.If):
        return "TYPE_CHECKING" in ast.unparse(node.test)
    return isinstance(node, ast.Expr) and _is_log_call(node.value)


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _data_strings(tree: ast.Module) -> set[int]:
    """ids of string constants that are data, not messages: module-level constants, collection elements
    and comparison operands (header names, kinds, table keys)."""
    found: set[int] = set()
    for statement in tree.body:
        if isinstance(statement, (ast.Assign, ast.AnnAssign)) and isinstance(statement.value, ast.Constant):
            found.add(id(statement.value))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            found.update(id(element) for element in node.elts)
        elif isinstance(node, ast.Dict):
            found.update(id(element) for element in [*node.keys, *node.values] if element is not None)
        elif isinstance(node, ast.Compare):
            found.update(id(element) for element in [node.left, *node.comparators])
    return found


def _deletable(statement: ast.stmt) -> bool:
    return not isinstance(
        statement,
        (
            ast.FunctionDef,
            ast.AsyncFunctionDef,
            ast.ClassDef,
            ast.Import,
            ast.ImportFrom,
            ast.Pass,
            ast.Global,
        ),
    ) and not _is_docstring(statement)


def _variants(
    node: ast.AST, parent: ast.AST | None, skips: _Skips, regexes: set[int], data: set[int]
) -> list[tuple[str, int, str]]:
    """``(operator, detail, description)`` for each way ``node`` can be mutated."""
    if id(node) in skips.ids:
        return []
    out: list[tuple[str, int, str]] = []
    if isinstance(node, ast.Compare):
        for position, op in enumerate(node.ops):
            swap = _COMPARE_SWAPS.get(type(op))
            if swap is not None:
                out.append(("compare", position, f"`{_op_text(op)}` → `{_op_text(swap())}`"))
    elif isinstance(node, ast.BoolOp):
        other = "or" if isinstance(node.op, ast.And) else "and"
        out.append(("boolop", 0, f"`{'and' if other == 'or' else 'or'}` → `{other}`"))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        out.append(("not", 0, "`not` dropped"))
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        out.append(("binop", 0, f"`{_op_text(node.op)}` → `{_op_text(_BINOP_SWAPS[type(node.op)]())}`"))
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            out.append(("constant", 0, f"`{value}` → `{not value}`"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(("constant", 1, f"`{value!r}` → `{value + 1!r}`"))
            out.append(("constant", -1, f"`{value!r}` → `{value - 1!r}`"))
        elif isinstance(value, str) and id(node) in regexes:
            for detail, (_, description) in enumerate(_regex_variants(value)):
                out.append(("regex", detail, f"regex {value!r}: {description}"))
        elif isinstance(value, str) and value and id(node) in data:
            out.append(("string", 0, f"{_short(value)} → ''"))
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2:
        if not (isinstance(node, (ast.Tuple, ast.List)) and isinstance(node.ctx, ast.Store)):
            for position, element in enumerate(node.elts):
                out.append(("element", position, f"element `{_short(ast.unparse(element))}` removed"))
    elif isinstance(node, ast.Dict) and len(node.keys) >= 2:
        for position, key in enumerate(node.keys):
            label = ast.unparse(key) if key is not None else "**…"
            out.append(("element", position, f"entry `{_short(label)}` removed"))
    elif isinstance(node, ast.Call):
        for position, keyword in enumerate(node.keywords):
            if keyword.arg is not None and id(keyword) not in skips.ids:
                out.append(("keyword", position, f"keyword `{keyword.arg}=` removed"))
    elif isinstance(node, ast.comprehension):
        for position, condition in enumerate(node.ifs):
            out.append(
                ("comprehension-if", position, f"filter `if {_short(ast.unparse(condition))}` removed")
            )
    elif isinstance(node, ast.Continue):
        out.append(("loop", 0, "`continue` → `break`"))
    elif isinstance(node, ast.Break):
        out.append(("loop", 0, "`break` → `continue`"))
    if isinstance(node, ast.stmt) and _deletable(node):
        # Deleting a module-level assignment or a class attribute only breaks the import: not a useful mutant.
        in_body = not isinstance(parent, ast.Module | ast.ClassDef)
        if in_body or (isinstance(parent, ast.Module) and isinstance(node, (ast.If, ast.Expr))):
            out.append(("delete", 0, f"statement `{_short(ast.unparse(node).splitlines()[0])}` deleted"))
    return out


def _op_text(op: ast.AST) -> str:
    texts = {
        ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
        ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
        ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
    }  # fmt: skip
    return texts[type(op)]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def enumerate_mutants(source: str, *, path: str) -> list[Mutant]:
    """Every mutant of ``source`` (the text of the module at ``path``, relative to the project root)."""
    tree = ast.parse(source)
    skips = _Skips(tree)
    regexes = _regex_strings(tree)
    data = _data_strings(tree)
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    lines = source.splitlines()
    mutants: list[Mutant] = []
    seen: dict[str, int] = {}
    for index, node in enumerate(ast.walk(tree)):
        for operator, detail, description in _variants(node, parents.get(id(node)), skips, regexes, data):
            lineno = getattr(node, "lineno", None)
            if lineno is None:  # a comprehension: take its target's position
                lineno = node.target.lineno  # type: ignore[attr-defined]
                end = node.iter.end_lineno  # type: ignore[attr-defined]
            else:
                end = getattr(node, "end_lineno", lineno) or lineno
            key = f"{path}\n{lines[lineno - 1].strip()}\n{description}"
            seen[key] = seen.get(key, 0) + 1
            digest = hashlib.sha1(f"{key}\n{seen[key]}".encode()).hexdigest()[:8]
            mutants.append(
                Mutant(
                    index=index,
                    operator=operator,
                    detail=detail,
                    lineno=lineno,
                    end_lineno=end,
                    description=description,
                    id=digest,
                )
            )
    return mutants


def apply_mutant(tree: ast.Module, mutant: Mutant) -> ast.Module:
    """A copy of ``tree`` with ``mutant`` applied."""
    tree = copy.deepcopy(tree)
    node = next(node for index, node in enumerate(ast.walk(tree)) if index == mutant.index)
    parents = {id(child): parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    op, detail = mutant.operator, mutant.detail
    if op == "compare":
        node.ops[detail] = _COMPARE_SWAPS[type(node.ops[detail])]()  # type: ignore[attr-defined]
    elif op == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()  # type: ignore[attr-defined]
    elif op == "not":
        _replace(parents[id(node)], node, node.operand)  # type: ignore[attr-defined]
    elif op == "binop":
        node.op = _BINOP_SWAPS[type(node.op)]()  # type: ignore[attr-defined]
    elif op == "constant":
        value = node.value  # type: ignore[attr-defined]
        node.value = (not value) if isinstance(value, bool) else value + detail  # type: ignore[attr-defined]
    elif op == "regex":
        node.value = _regex_variants(node.value)[detail][0]  # type: ignore[attr-defined]
    elif op == "string":
        node.value = ""  # type: ignore[attr-defined]
    elif op == "element":
        if isinstance(node, ast.Dict):
            del node.keys[detail], node.values[detail]
        else:
            del node.elts[detail]  # type: ignore[attr-defined]
    elif op == "keyword":
        del node.keywords[detail]  # type: ignore[attr-defined]
    elif op == "comprehension-if":
        del node.ifs[detail]  # type: ignore[attr-defined]
    elif op == "loop":
        _replace(parents[id(node)], node, ast.Break() if isinstance(node, ast.Continue) else ast.Continue())
    elif op == "delete":
        _replace(parents[id(node)], node, ast.Pass())
    else:  # pragma: no cover - enumerate_mutants makes only the operators above
        raise ValueError(op)
    return ast.fix_missing_locations(tree)


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    ast.copy_location(new, old)
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list) and any(item is old for item in value):
            value[next(i for i, item in enumerate(value) if item is old)] = new
            return
    raise ValueError("node not found in its parent")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------------
# Running the tests against a mutant


class _MutantLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``module_name`` from a compiled mutant instead of its file."""

    def __init__(self, module_name: str, path: Path, code: CodeType) -> None:
        self.module_name, self.path, self.code = module_name, path, code

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module_name:
            return None
        return importlib.util.spec_from_file_location(fullname, self.path, loader=self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(self.code, module.__dict__)  # the mutant of our own module


class _ContextSwitcher:
    """pytest plugin: tells coverage which test is running, so lines map to the tests that run them."""

    def __init__(self, cov: Any) -> None:
        self.cov = cov

    def pytest_runtest_setup(self, item: Any) -> None:
        self.cov.switch_context(item.nodeid)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.cov.switch_context("")


def _quiet() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _pytest_args(tests: Sequence[str], basetemp: Path) -> list[str]:
    # --assert=plain: a failing assert still fails the test, without pytest rewriting every test module in
    # every child (0.8 s of a child's 2.4 s start-up).
    return [
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "--assert=plain",
        f"--basetemp={basetemp}",
        "-W",
        "ignore",
        *tests,
    ]


def _fork(run: Any) -> int:
    """Runs ``run()`` (returning an exit status) in a forked child; returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 3
        try:
            status = run()
        finally:
            os._exit(status)
    return pid


def _module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclasses.dataclass(kw_only=True)
class Target:
    """A module and its own tests.

    :param module: Path of the module, relative to the project root.
    :param tests: Its tests (files or node ids), relative to the project root.
    """

    module: str
    tests: list[str]


@dataclasses.dataclass(kw_only=True)
class Outcome:
    """What happened to one mutant: ``killed``, ``timeout`` (both count as killed), ``survived``,
    ``uncovered`` (no test runs its lines), ``error`` (pytest could not run the selected tests; not killed)
    or ``equivalent``."""

    mutant: Mutant
    status: str
    seconds: float = 0.0


def baseline(target: Target, root: Path, work: Path) -> tuple[dict[int, set[str]], float]:
    """Runs the target's tests once under coverage: for each line of the module, the node ids of the tests
    that ran it ("" = run at import); and how long the run took. Exits 2 if the tests fail unmutated."""
    result_file = work / "coverage.json"
    module_path = (root / target.module).resolve()

    def run() -> int:
        import coverage
        import pytest

        _quiet()
        cov = coverage.Coverage(data_file=None, include=[str(module_path)])
        cov.set_option("run:dynamic_context", None)
        cov.start()
        status = pytest.main(_pytest_args(target.tests, work / "baseline"), plugins=[_ContextSwitcher(cov)])
        cov.stop()
        data = cov.get_data()
        by_line = {
            str(line): sorted(contexts)
            for line, contexts in data.contexts_by_lineno(str(module_path)).items()
        }
        result_file.write_text(json.dumps(by_line))
        return int(status)

    started = time.monotonic()
    _, wait_status = os.waitpid(_fork(run), 0)
    elapsed = time.monotonic() - started
    if os.waitstatus_to_exitcode(wait_status) != 0:
        print(f"mutation: the tests of {target.module} fail without any mutant: {' '.join(target.tests)}")
        sys.exit(2)
    by_line = json.loads(result_file.read_text())
    return {int(line): set(contexts) for line, contexts in by_line.items()}, elapsed


def _tests_for(mutant: Mutant, coverage_map: dict[int, set[str]], target: Target) -> list[str] | None:
    """The node ids to run for ``mutant``: those that run its lines; all of the target's tests when a line
    runs at import; ``None`` when no test runs it."""
    contexts: set[str] = set()
    for line in range(mutant.lineno, mutant.end_lineno + 1):
        contexts |= coverage_map.get(line, set())
    if not contexts:
        return None
    if "" in contexts:
        return list(target.tests)
    return sorted(contexts)


def run_target(target: Target, root: Path, *, jobs: int, equivalent: set[str], work: Path) -> list[Outcome]:
    """Every mutant of ``target``, run ``jobs`` at a time."""
    module_path = root / target.module
    source = module_path.read_text()
    tree = ast.parse(source)
    mutants = enumerate_mutants(source, path=target.module)
    coverage_map, base_seconds = baseline(target, root, work)
    timeout = max(30.0, 5 * base_seconds + 10)
    module_name = _module_name(module_path.resolve(), root.resolve())

    outcomes: list[Outcome] = []
    pending: list[tuple[Mutant, list[str]]] = []
    for mutant in mutants:
        if mutant.id in equivalent:
            outcomes.append(Outcome(mutant=mutant, status="equivalent"))
            continue
        tests = _tests_for(mutant, coverage_map, target)
        if tests is None:
            outcomes.append(Outcome(mutant=mutant, status="uncovered"))
        else:
            pending.append((mutant, tests))

    print(
        f"mutation: {target.module}: {len(mutants)} mutants, {len(pending)} to run "
        f"(the unmutated tests took {base_seconds:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    running: dict[int, tuple[Mutant, float]] = {}

    def start(mutant: Mutant, tests: list[str]) -> None:
        code = compile(apply_mutant(tree, mutant), str(module_path.resolve()), "exec")
        basetemp = work / f"m{mutant.index}-{mutant.detail}-{mutant.operator}"

        def run() -> int:
            import pytest

            _quiet()
            sys.meta_path.insert(0, _MutantLoader(module_name, module_path.resolve(), code))
            return int(pytest.main(_pytest_args(tests, basetemp)))

        running[_fork(run)] = (mutant, time.monotonic())

    def reap(block: bool) -> None:
        pid, wait_status = os.waitpid(-1, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        mutant, started = running.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code == 0:
            status = "survived"
        elif code == -signal.SIGKILL:
            status = "timeout"
        elif code == 5:  # pytest collected no test: the run proved nothing
            status = "error"
        else:
            status = "killed"
        outcomes.append(Outcome(mutant=mutant, status=status, seconds=time.monotonic() - started))

    queue = list(pending)
    while queue or running:
        while queue and len(running) < jobs:
            start(*queue.pop(0))
        now = time.monotonic()
        for pid, (_, started) in list(running.items()):
            if now - started > timeout:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        reap(block=False)
        time.sleep(0.01)
    outcomes.sort(key=lambda outcome: (outcome.mutant.lineno, outcome.mutant.index, outcome.mutant.detail))
    return outcomes


# ---------------------------------------------------------------------------------------------------------
# Setup and report


def _preimport(root: Path, targets: Sequence[Target]) -> None:
    """Imports, once in this parent, what the children would each import anyway: the tests' conftest
    (which fixes Airflow's environment first) and the third-party libraries the project uses. The project's
    own package is left unimported so that each child imports its mutant."""
    tests_dir = root / "tests"
    if (tests_dir / "conftest.py").exists():
        sys.path.insert(0, str(tests_dir))
        importlib.import_module("conftest")
    warnings.simplefilter("ignore")
    for name in ("pytest", "coverage", "pydantic", "sqlalchemy", "fastapi", "httpx", "pendulum", "tenacity",
                 "uvicorn", "starlette.testclient", "airflow.sdk", "airflow.models", "psycopg2"):  # fmt: skip
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    own = {Path(target.module).parts[0].removesuffix(".py") for target in targets}
    for name in [name for name in sys.modules if name.split(".")[0] in own]:
        del sys.modules[name]
    warnings.resetwarnings()
    # What the parent holds is never garbage: keep each child's collections (pytest runs several at exit)
    # from walking it - 0.5 s per child.
    gc.freeze()


def _load_config(path: Path) -> tuple[Path, list[Target], float, dict[str, str]]:
    """The project root, the targets, the threshold and the equivalent mutants (id → module) of a config."""
    config = tomllib.loads(path.read_text())
    root = (path.parent / config.get("root", ".")).resolve()
    targets = [Target(module=entry["module"], tests=list(entry["tests"])) for entry in config["target"]]
    equivalent = {entry["id"]: entry["module"] for entry in config.get("equivalent", [])}
    return root, targets, float(config.get("threshold", 90)), equivalent


def _score(outcomes: Sequence[Outcome]) -> tuple[int, int, int, float]:
    counted = [outcome for outcome in outcomes if outcome.status != "equivalent"]
    killed = sum(outcome.status in {"killed", "timeout"} for outcome in counted)
    equivalent = len(outcomes) - len(counted)
    score = 100.0 * killed / len(counted) if counted else 100.0
    return len(outcomes), killed, equivalent, score


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="targets to run (substrings of their paths); default all")
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("mutation.toml"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fail-under", type=float, default=None, help="score threshold (default: config)")
    parser.add_argument("--list", action="store_true", help="only list the mutants")
    parser.add_argument("--json", type=Path, help="also write every outcome to this file")
    args = parser.parse_args(argv)

    root, targets, threshold, equivalent = _load_config(args.config)
    if args.fail_under is not None:
        threshold = args.fail_under
    if args.modules:
        targets = [target for target in targets if any(name in target.module for name in args.modules)]
        if not targets:
            print(f"mutation: no target matches {args.modules}", file=sys.stderr)
            return 2
    if args.list:
        for target in targets:
            for mutant in enumerate_mutants((root / target.module).read_text(), path=target.module):
                print(f"{mutant.id}  {target.module}:{mutant.lineno}  {mutant.description}")
        return 0

    os.chdir(root)
    sys.path.insert(0, str(root))  # as `python -m pytest` run from the root would
    _preimport(root, targets)
    results: list[tuple[Target, list[Outcome], float]] = []
    with tempfile.TemporaryDirectory(prefix="vobiz-mutation-") as scratch:
        for number, target in enumerate(targets):
            started = time.monotonic()
            work = Path(scratch) / str(number)
            work.mkdir()
            outcomes = run_target(target, root, jobs=args.jobs, equivalent=set(equivalent), work=work)
            results.append((target, outcomes, time.monotonic() - started))
            shutil.rmtree(work, ignore_errors=True)

    return _report(results, threshold=threshold, equivalent=equivalent, json_path=args.json)


def _report(results: Sequence[tuple[Target, list[Outcome], float]], *, threshold: float,
            equivalent: dict[str, str], json_path: Path | None) -> int:  # fmt: skip
    failed = False
    width = max(len(target.module) for target, _, _ in results)
    print(f"\n{'module':<{width}}  mutants  killed  survived  equivalent   score  seconds")
    for target, outcomes, seconds in results:
        total, killed, equiv, score = _score(outcomes)
        survived = total - killed - equiv
        mark = "" if score >= threshold else f"  < {threshold:g} %"
        failed |= score < threshold
        counts = f"{total:7}  {killed:6}  {survived:8}  {equiv:10}"
        print(f"{target.module:<{width}}  {counts}  {score:5.1f} %  {seconds:7.0f}{mark}")
    for target, outcomes, _ in results:
        survivors = [outcome for outcome in outcomes if outcome.status in {"survived", "uncovered", "error"}]
        if survivors:
            print(f"\nsurvivors in {target.module}:")
            for outcome in survivors:
                mutant = outcome.mutant
                tag = {
                    "uncovered": " (no test runs this line)",
                    "error": " (pytest could not run its tests)",
                }.get(outcome.status, "")
                print(f"  {mutant.id}  line {mutant.lineno}: {mutant.description}{tag}")
    for target, outcomes, _ in results:
        produced = {outcome.mutant.id for outcome in outcomes}
        stale = sorted(
            key for key, module in equivalent.items() if module == target.module and key not in produced
        )
        if stale:
            print(
                f"\nnote: listed as equivalent but no longer produced in {target.module}: {', '.join(stale)}"
            )
    if json_path is not None:
        json_path.write_text(
            json.dumps(
                [
                    {"module": target.module, "status": outcome.status, **dataclasses.asdict(outcome.mutant)}
                    for target, outcomes, _ in results
                    for outcome in outcomes
                ],
                indent=1,
            )
        )
    print(f"\nmutation: {'FAILED' if failed else 'ok'} (threshold {threshold:g} %)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
