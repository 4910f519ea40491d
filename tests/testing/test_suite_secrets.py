"""``tests/_suite_secrets.py`` lists every secret the tests define: the leak scans look for exactly those, so
a secret missing from it would leak unnoticed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from _suite_secrets import NOT_SECRETS, SUITE_SECRETS

from vobiz_provider.testing.secret_scan import MIN_SECRET_LENGTH

TESTS = Path(__file__).resolve().parents[1]
_SECRET_NAME = re.compile(r"(SECRET|TOKEN)$")
_SECRET_KEYWORDS = {"callback_secret", "auth_token", "main_account_token", "AIRFLOW__VOBIZ__CALLBACK_SECRET"}
_SECRET_ENV = "AIRFLOW__VOBIZ__CALLBACK_SECRET"


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def secret_literals(tree: ast.AST) -> set[str]:
    """String literals a test module uses as secrets: assigned to ``*SECRET``/``*TOKEN`` names, passed as
    ``callback_secret=``/``auth_token=``/``main_account_token=``, or set as the callback-secret variable."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and _SECRET_NAME.search(target.id):
                    found.add(_string(node.value) or "")
        elif isinstance(node, ast.keyword) and node.arg in _SECRET_KEYWORDS:
            found.add(_string(node.value) or "")
        elif isinstance(node, ast.Call) and len(node.args) >= 2 and _string(node.args[0]) == _SECRET_ENV:
            found.add(_string(node.args[1]) or "")  # monkeypatch.setenv(VAR, value), os.environ.setdefault
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if _string(key) == _SECRET_ENV:
                    found.add(_string(value) or "")
    return {value for value in found if len(value) >= MIN_SECRET_LENGTH}


def test_every_secret_the_tests_define_is_in_the_list() -> None:
    known = {secret.value for secret in SUITE_SECRETS} | NOT_SECRETS
    missing = {
        str(path.relative_to(TESTS)): sorted(secret_literals(ast.parse(path.read_text())) - known)
        for path in sorted(TESTS.rglob("*.py"))
        if not path.name.startswith("_planted")
    }
    missing = {where: values for where, values in missing.items() if values}
    assert not missing, f"add these to tests/_suite_secrets.py (or NOT_SECRETS): {missing}"


def test_the_check_sees_each_way_a_secret_is_written() -> None:
    source = """
SECRET = "module-level-secret-0123"
connect(auth_token="keyword-auth-token-0123")
monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET", "setenv-callback-secret-0123")
env = {"AIRFLOW__VOBIZ__CALLBACK_SECRET": "dict-callback-secret-0123"}
short = dict(callback_secret="tiny")
"""
    assert secret_literals(ast.parse(source)) == {
        "module-level-secret-0123",
        "keyword-auth-token-0123",
        "setenv-callback-secret-0123",
        "dict-callback-secret-0123",
    }


def test_secret_names_are_unique() -> None:
    names = [secret.name for secret in SUITE_SECRETS]
    assert len(names) == len(set(names))
