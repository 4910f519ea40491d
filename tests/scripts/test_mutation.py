"""``scripts/mutation.py``: the mutants it makes, and that its score tells strong tests from weak ones.

The end-to-end tests run the tool as ``./scripts/mutation`` would, on a toy project in a temporary
directory: real forked pytest runs against real mutants.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "mutation.py"


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vobiz_mutation_tool", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


tool = _load_tool()

TOY = '''\
"""A toy module."""

from __future__ import annotations

import re

LIMIT = 18
PATTERN = re.compile(r"[0-9]{2,4}")


def is_adult(age: int) -> bool:
    """Docstrings are not mutated."""
    return age >= LIMIT


def code_ok(code: str) -> bool:
    return PATTERN.fullmatch(code) is not None
'''

STRONG_TESTS = """\
from toy import code_ok, is_adult


def test_adult_boundary():
    assert is_adult(18)
    assert not is_adult(17)


def test_code_lengths():
    assert not code_ok("1")
    assert code_ok("12")
    assert code_ok("1234")
    assert not code_ok("12345")
    assert not code_ok("12a")
"""

WEAK_TESTS = """\
from toy import code_ok, is_adult


def test_adult():
    assert is_adult(40)
    assert not is_adult(3)


def test_code():
    assert code_ok("123")
"""


def _descriptions(source: str) -> list[str]:
    return [mutant.description for mutant in tool.enumerate_mutants(source, path="toy.py")]


def test_mutants_cover_the_operators_the_score_is_about() -> None:
    descriptions = _descriptions(TOY)
    assert "`>=` → `>`" in descriptions
    assert "`18` → `19`" in descriptions and "`18` → `17`" in descriptions
    assert "regex '[0-9]{2,4}': `{2,4}` → `{1,4}`" in descriptions
    assert "regex '[0-9]{2,4}': `{2,4}` → `{2,5}`" in descriptions
    assert "`is not` → `is`" in descriptions
    assert any(description.startswith("statement `return age >= LIMIT`") for description in descriptions)


def test_docstrings_annotations_type_checking_blocks_and_log_calls_are_not_mutated() -> None:
    source = textwrap.dedent(
        '''\
        """Doc."""
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from x import Y
        __all__ = ["a", "b"]
        def a(value: dict[str, int] = None) -> tuple[int, int]:
            """Doc."""
            log.info("value %s", value)
            return value
        '''
    )
    descriptions = _descriptions(source)
    assert descriptions == ["statement `return value` deleted"]


def test_each_element_and_keyword_and_comprehension_filter_can_be_removed() -> None:
    source = (
        'SCHEMES = ("v2", "v3")\nkeys = [k for k in SCHEMES if k]\nf(a=1, b=True)\nwhile x:\n    continue\n'
    )
    descriptions = _descriptions(source)
    assert "element `'v2'` removed" in descriptions and "element `'v3'` removed" in descriptions
    assert "filter `if k` removed" in descriptions
    assert "keyword `a=` removed" in descriptions and "keyword `b=` removed" in descriptions
    assert "`continue` → `break`" in descriptions
    assert "v2 → ''" in descriptions


def test_ids_survive_edits_elsewhere_in_the_module() -> None:
    before = {mutant.description: mutant.id for mutant in tool.enumerate_mutants(TOY, path="toy.py")}
    shifted = TOY.replace("import re\n", "import re\nimport os\n\n\nUNUSED = os.sep\n")
    after = {mutant.description: mutant.id for mutant in tool.enumerate_mutants(shifted, path="toy.py")}
    assert after["`>=` → `>`"] == before["`>=` → `>`"]
    assert tool.enumerate_mutants(TOY, path="toy.py") != tool.enumerate_mutants(TOY, path="other.py")


def test_applying_a_mutant_changes_only_that_node() -> None:
    tree = ast.parse(TOY)
    mutant = next(m for m in tool.enumerate_mutants(TOY, path="toy.py") if m.description == "`>=` → `>`")
    mutated = ast.unparse(tool.apply_mutant(tree, mutant))
    assert "return age > LIMIT" in mutated
    assert ast.unparse(tree) == ast.unparse(ast.parse(TOY))  # the original tree is untouched
    assert mutated.replace("age > LIMIT", "age >= LIMIT") == ast.unparse(tree)


def _toy_project(tmp_path: Path, tests: str, equivalent: str = "") -> Path:
    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_toy.py").write_text(tests)
    config = tmp_path / "mutation.toml"
    config.write_text(
        f'threshold = 90\n[[target]]\nmodule = "toy.py"\ntests = ["tests/test_toy.py"]\n{equivalent}'
    )
    return config


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "VOBIZ_TEST_POSTGRES_URL"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--config", str(config), "--jobs", "2", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )


@pytest.mark.timeout(300)
def test_strong_tests_kill_every_mutant_and_pass_the_threshold(tmp_path: Path) -> None:
    result = _run(_toy_project(tmp_path, STRONG_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    total = len(tool.enumerate_mutants(TOY, path="toy.py"))
    assert f"toy.py  {total:7}  {total:6}         0           0  100.0 %" in result.stdout
    assert "mutation: ok" in result.stdout


@pytest.mark.timeout(300)
def test_weak_tests_fail_the_threshold_and_name_the_survivors(tmp_path: Path) -> None:
    survivor = next(m for m in tool.enumerate_mutants(TOY, path="toy.py") if m.description == "`>=` → `>`")
    listed = f'[[equivalent]]\nid = "{survivor.id}"\nmodule = "toy.py"\nwhy = "test of the listing"\n'
    result = _run(_toy_project(tmp_path, WEAK_TESTS, equivalent=listed))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mutation: FAILED (threshold 90 %)" in result.stdout
    survivors = result.stdout.split("survivors in toy.py:")[1]
    assert "`{2,4}` → `{1,4}`" in survivors and "`18` → `17`" in survivors
    assert survivor.id not in survivors  # listed as equivalent: neither a survivor nor counted
    assert "           1  " in result.stdout.splitlines()[2]  # the equivalent column


def test_the_unmutated_tests_must_pass(tmp_path: Path) -> None:
    result = _run(_toy_project(tmp_path, "def test_broken():\n    assert False\n"))
    assert result.returncode == 2
    assert "fail without any mutant" in result.stdout


def test_field_constraints_are_mutated_and_their_texts_are_not() -> None:
    source = 'class M:\n    x: int = Field(ge=1, description="how many")\n'
    descriptions = _descriptions(source)
    assert "keyword `ge=` removed" in descriptions and "`1` → `2`" in descriptions
    assert not any("description" in description or "how many" in description for description in descriptions)
