"""The release metadata agrees with itself: one version everywhere, the classifiers and URLs an Airflow
provider is found by, the licence and the typing marker shipped.

What the built wheel really contains is checked by ``scripts/wheel-smoke`` in CI; these tests read the
checkout and the installed distribution's metadata.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

import vobiz_provider
from vobiz_provider import __version__
from vobiz_provider.get_provider_info import get_provider_info

REPO = Path(__file__).resolve().parent.parent
DIST = "airflow-provider-vobiz"


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_version_is_written_once_and_read_everywhere(project: dict) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    # pyproject.toml holds no version of its own: setuptools reads vobiz_provider.__version__.
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vobiz_provider.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+|\.dev\d+)?", __version__), __version__
    # The installed distribution (built from the same source), the package and Airflow's view agree.
    assert metadata.version(DIST) == __version__
    assert get_provider_info()["versions"][0] == __version__


def test_changelog_has_an_unreleased_section_and_the_current_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    released = headings[1:]
    assert released, "no released version in CHANGELOG.md"
    # Either the current version was released (it is the newest entry) or it is being prepared.
    assert __version__ == released[0] or __version__ not in released


def test_classifiers_make_it_an_airflow_provider(project: dict) -> None:
    classifiers = set(metadata.metadata(DIST).get_all("Classifier") or [])
    assert classifiers == set(project["classifiers"])
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= classifiers
    assert "Typing :: Typed" in classifiers
    # PEP 639: the SPDX expression is the licence; a "License ::" classifier alongside it is an error.
    assert not any(c.startswith("License ::") for c in classifiers)
    python_versions = {c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r".* :: 3\.\d+", c)}
    lowest = project["requires-python"].removeprefix(">=")
    assert min(python_versions, key=lambda v: tuple(map(int, v.split(".")))) == lowest


def test_licence_and_urls(project: dict) -> None:
    assert project["license"] == "Apache-2.0"
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    urls = metadata.metadata(DIST).get_all("Project-URL") or []
    assert urls, "no project URLs"
    assert all(re.fullmatch(r"[^,]+, https://\S+", url) for url in urls), urls


def test_the_package_is_marked_typed() -> None:
    assert (Path(vobiz_provider.__file__).parent / "py.typed").is_file()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["vobiz_provider"]
