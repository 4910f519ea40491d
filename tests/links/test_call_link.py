"""The "Vobiz call" extra link: from a task instance to the calls page filtered to it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from vobiz_provider.get_provider_info import get_provider_info
from vobiz_provider.links.call import VobizCallLink
from vobiz_provider.operators.call import VobizCallOperator

if TYPE_CHECKING:
    import pytest


def _ti(map_index: int = -1) -> SimpleNamespace:
    return SimpleNamespace(
        dag_id="reminders", run_id="manual__2026-12-03T10:00:00+00:00", task_id="call", map_index=map_index
    )


def test_the_operator_and_the_provider_declare_the_link() -> None:
    assert [link.name for link in VobizCallOperator.operator_extra_links] == ["Vobiz call"]
    assert "vobiz_provider.links.call.VobizCallLink" in get_provider_info()["extra-links"]


def test_the_link_filters_the_page_to_the_task_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://localhost:8080")
    url = VobizCallLink().get_link(None, ti_key=_ti(map_index=3))  # type: ignore[arg-type]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("", "", "/vobiz-calls/")
    assert parse_qs(parts.query) == {
        "dag_id": ["reminders"],
        "run_id": ["manual__2026-12-03T10:00:00+00:00"],
        "task_id": ["call"],
        "map_index": ["3"],
    }


def test_the_link_keeps_the_api_servers_path_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://example.com/airflow/")
    url = VobizCallLink().get_link(None, ti_key=_ti())  # type: ignore[arg-type]
    assert url.startswith("/airflow/vobiz-calls/?dag_id=reminders&")
