"""The "Vobiz calls" page in a real browser: Debian's chromium (Playwright) against ``airflow standalone``
with real logins, after real calls through the emulator.

Two DAGs place four calls through the emulator (answered with a key, busy, never answered; and one call of
a second DAG). Then, in the browser: an anonymous visit is refused; the admin's page lists every call, the
status filter and the run filter (with its outcome chart) work; the task instance's "Vobiz call" extra link
(as Airflow's REST API returns it) lands on that task instance's call, whose page shows its timeline and
callbacks; a user granted only the first DAG sees none of the second DAG's calls, and sees numbers masked.

``airflow standalone`` always runs SimpleAuthManager, which has roles but no per-DAG permissions, so the
test installs ``calls_page_plugins/vobiz_test_dag_grants.py`` (a grant table on SimpleAuthManager's
``is_authorized_dag``): the page is judged by whatever the auth manager answers, as it would be with FAB.

Screenshots land in ``test-artifacts/`` (kept by CI); ``docs/img/calls-page.png`` is one of them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import pytest
from _browser import CHROMIUM_ARGS, find_chromium, screenshot
from _standalone import run_standalone
from _suite_secrets import CALLS_PAGE_JWT_SECRET
from playwright.sync_api import Page, expect, sync_playwright

from vobiz_provider.phone_masking import mask_number
from vobiz_provider.testing import CallScript
from vobiz_provider.testing.emulator.settings import EmulatorSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _processes import EmulatorProcess
    from _standalone import StandaloneAirflow

pytestmark = [pytest.mark.slow, pytest.mark.airflow_db, pytest.mark.timeout(480)]

HERE = Path(__file__).resolve().parent
DAG_A, DAG_B = "vobiz_calls_page_a", "vobiz_calls_page_b"
ANSWERED, BUSY, SILENT = "+14155550111", "+14155550112", "+14155550113"
OTHER = "+14155550121"
PASSWORDS = {"admin": "calls-page-admin-pw", "nina": "calls-page-nina-pw"}
RUN_TIMEOUT = 180.0


def _token(api_url: str, user: str) -> str:
    response = httpx.post(
        f"{api_url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30
    )
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def chromium() -> Path:
    return find_chromium()


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, emulator_process: EmulatorProcess, chromium: Path
) -> Iterator[StandaloneAirflow]:
    """``airflow standalone`` with real logins: admin (Admin), nina (Viewer, granted DAG A only)."""
    home = tmp_path_factory.mktemp("calls-page-airflow-home")
    (home / "plugins").mkdir()
    (home / "plugins" / "vobiz_test_dag_grants.py").write_text(
        (HERE / "calls_page_plugins" / "vobiz_test_dag_grants.py").read_text()
    )
    passwords_file = home / "passwords.json"
    passwords_file.write_text(json.dumps(PASSWORDS))
    overrides: dict[str, str | None] = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": None,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,nina:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": CALLS_PAGE_JWT_SECRET,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "VOBIZ_TEST_DAG_GRANTS": f"nina={DAG_A}",
        # The emulator writes callback times in its console timezone: say which, so the page's times are
        # the calls' real times (checked below).
        "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(
            {
                **emulator_process.connection,
                "extra": {**emulator_process.connection["extra"], "timezone": EmulatorSettings().timezone},
            }
        ),
    }

    def authenticate(standalone: StandaloneAirflow) -> None:
        standalone.api.headers["Authorization"] = f"Bearer {_token(standalone.api_url, 'admin')}"

    with run_standalone(
        home,
        emulator_process,
        dags_dir=HERE / "calls_page_dags",
        env_overrides=overrides,
        authenticate=authenticate,
    ) as standalone:
        yield standalone


def _run_dags(airflow: StandaloneAirflow, emulator: EmulatorProcess) -> dict[str, str]:
    emulator.remote.reset()
    emulator.remote.script(
        ANSWERED,
        CallScript(
            outcome="completed",
            ring_after=0.2,
            answer_after=1.0,
            talk_for=None,
            digits="1",
            media_seconds=0.5,
        ),
    )
    emulator.remote.script(BUSY, CallScript.busy(1.0))
    emulator.remote.script(SILENT, CallScript.no_answer(1.5))
    emulator.remote.script(OTHER, CallScript.busy(0.5))
    deadline = time.monotonic() + 90
    while any(airflow.api.get(f"/dags/{dag}").status_code != 200 for dag in (DAG_A, DAG_B)):
        assert time.monotonic() < deadline, airflow.describe_run(DAG_A, None)
        time.sleep(1)
    runs = {}
    for dag in (DAG_A, DAG_B):
        response = airflow.api.post(f"/dags/{dag}/dagRuns", json={"logical_date": None})
        assert response.status_code == 200, response.text
        runs[dag] = response.json()["dag_run_id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        states = {dag: airflow.get(f"/dags/{dag}/dagRuns/{run}")["state"] for dag, run in runs.items()}
        if all(state in ("success", "failed") for state in states.values()):
            break
        assert time.monotonic() < deadline, f"runs {states}\n{airflow.describe_run(DAG_A, runs[DAG_A])}"
        time.sleep(1)
    assert states == {DAG_A: "success", DAG_B: "success"}, (
        f"{emulator.describe()}\n{airflow.describe_run(DAG_A, runs[DAG_A])}"
    )
    return runs


def _shot(page: Page, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    screenshot(page, name, capsys, full_page=True)


def _rows(page: Page) -> list[str]:
    return [str(row.get_attribute("data-call")) for row in page.locator("table.calls tbody tr").all()]


def test_calls_page_in_the_browser(
    airflow: StandaloneAirflow,
    emulator_process: EmulatorProcess,
    chromium: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = _run_dags(airflow, emulator_process)
    uuid_of = {call["to"]: call["call_uuid"] for call in emulator_process.remote.calls()}
    assert set(uuid_of) == {ANSWERED, BUSY, SILENT, OTHER}
    base = f"{airflow.api_url}/vobiz-calls/"

    # The extra link of the task instance that called BUSY (map index 1), as Airflow's REST API gives it.
    links = airflow.get(
        f"/dags/{DAG_A}/dagRuns/{quote(runs[DAG_A], safe='')}/taskInstances/call/links",
        params={"map_index": 1},
    )
    link = links["extra_links"]["Vobiz call"]
    assert link.startswith("/vobiz-calls/?"), links

    # The page's JSON, as the admin sees it: the answered call's times are in order, in UTC.
    admin_api = {"Authorization": f"Bearer {_token(airflow.api_url, 'admin')}"}
    answered = httpx.get(f"{base}api/calls/{uuid_of[ANSWERED]}", headers=admin_api, timeout=30).json()
    call = answered["call"]
    placed, answered_at, ended = (
        dt.datetime.fromisoformat(call[key].replace("Z", "+00:00"))
        for key in ("placed_at", "answer_time", "end_time")
    )
    # Vobiz's callback times have whole seconds; the ledger's placed_at has microseconds.
    assert placed.replace(microsecond=0) <= answered_at <= ended, call
    assert ended - placed < dt.timedelta(minutes=2), call
    assert [step["step"] for step in answered["timeline"]] == [
        "queued",
        "ringing",
        "answered",
        "keys 1",
        "hangup NORMAL_CLEARING",
    ]

    # Anonymous: refused by Airflow's authentication, in the browser and through the JSON API.
    assert httpx.get(f"{base}api/calls", timeout=30).status_code == 401

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            anonymous = browser.new_page()
            response = anonymous.goto(base)
            assert response is not None and response.status == 401
            anonymous.close()

            admin = browser.new_context(viewport={"width": 1400, "height": 900})
            admin.add_cookies([{"name": "_token", "value": _token(airflow.api_url, "admin"),
                                "url": airflow.api_url}])  # fmt: skip
            page = admin.new_page()
            page.set_default_timeout(30_000)
            try:
                page.goto(base)
                expect(page.locator("h1")).to_contain_text("Vobiz calls")
                assert set(_rows(page)) == set(uuid_of.values())
                # The admin may edit both DAGs: numbers whole.
                expect(page.locator(f'tr[data-call="{uuid_of[BUSY]}"] td.destination')).to_have_text(BUSY)
                _shot(page, "calls-page.png", capsys)

                # Filter by status through the form.
                page.select_option("select[name=status]", "busy")
                page.click("button[type=submit]")
                expect(page.locator("table.calls tbody tr")).to_have_count(2)
                assert set(_rows(page)) == {uuid_of[BUSY], uuid_of[OTHER]}

                # Filter by DAG and run: the run's outcome chart.
                page.goto(base)
                page.fill("input[name=dag_id]", DAG_A)
                page.fill("input[name=run_id]", runs[DAG_A])
                page.click("button[type=submit]")
                expect(page.locator("table.calls tbody tr")).to_have_count(3)
                chart = page.locator("svg.run-summary")
                for outcome, count in (("answered", 1), ("busy", 1), ("no answer", 1), ("failed", 0)):
                    expect(chart.locator(f'rect[data-outcome="{outcome}"]')).to_have_attribute(
                        "data-count", str(count)
                    )
                _shot(page, "calls-page-run-summary.png", capsys)

                # The extra link lands on that task instance's call, and the call's page shows its story.
                page.goto(airflow.api_url + link)
                assert _rows(page) == [uuid_of[BUSY]]
                page.click("a.call-link")
                expect(page.locator("h1")).to_contain_text(uuid_of[BUSY])
                expect(page.locator("svg.timeline circle")).to_have_count(3)  # queued, ringing, hangup
                expect(page.locator('svg.timeline circle[data-step="ringing"]')).to_have_count(1)
                assert page.locator("pre.callback").count() >= 2  # ring and hangup, raw
                page.goto(f"{base}calls/{uuid_of[ANSWERED]}")
                expect(page.locator('svg.timeline circle[data-step="keys 1"]')).to_have_count(1)
                _shot(page, "calls-page-call.png", capsys)

                # Inside Airflow's own UI: Browse -> Vobiz calls (an external view in a frame).
                page.goto(f"{airflow.api_url}/plugin/vobiz-calls")
                frame = page.frame_locator("iframe")
                expect(frame.locator("h1")).to_contain_text("Vobiz calls", timeout=60_000)
                _shot(page, "calls-page-in-airflow.png", capsys)
            except Exception:
                _shot(page, "calls-page-failure.png", capsys)
                raise

            # nina may read DAG A only: DAG B's call is nowhere, and she sees numbers masked.
            nina = browser.new_context(viewport={"width": 1400, "height": 900})
            nina.add_cookies([{"name": "_token", "value": _token(airflow.api_url, "nina"),
                               "url": airflow.api_url}])  # fmt: skip
            page = nina.new_page()
            page.goto(base)
            assert set(_rows(page)) == {uuid_of[ANSWERED], uuid_of[BUSY], uuid_of[SILENT]}
            assert DAG_B not in page.content() and uuid_of[OTHER] not in page.content()
            expect(page.locator(f'tr[data-call="{uuid_of[BUSY]}"] td.destination')).to_have_text(
                mask_number(BUSY)
            )
            page.goto(f"{base}?dag_id={DAG_B}")
            assert _rows(page) == []
            response = page.goto(f"{base}calls/{uuid_of[OTHER]}")
            assert response is not None and response.status == 404
            _shot(page, "calls-page-restricted-user.png", capsys)
        finally:
            browser.close()
