"""``airflow standalone`` for the end-to-end tests: its settings, its start-up check and a handle on it.

Imported by ``conftest.py`` (the session's shared run) and by tests that need a run with settings of their
own (``test_calls_page.py``). Kept out of ``conftest.py`` because ``from conftest import ...`` names
whichever test directory's ``conftest`` was imported first when several directories run together.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from _processes import (
    EmulatorProcess,
    components_healthy,
    execution_api_warm,
    free_port,
    redact,
    stop_process_group,
    tail,
)
from _suite_secrets import E2E_CALLBACK_SECRET
from _waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

DAGS_DIR = Path(__file__).resolve().parent / "dags"
#: Seconds ``airflow standalone`` gets to become healthy and serve the plugin (~70 s on 2 busy cores).
STARTUP_TIMEOUT = 240.0
CALLBACK_SECRET = E2E_CALLBACK_SECRET
#: ``[vobiz] inbound_applications`` of the run: the incident line of ``dags/vobiz_e2e_inbound.py``.
INBOUND_APPLICATIONS = {
    "e2e-line": {
        "message": "This is the e2e incident line.",
        "gather": {"prompt": "Press 1 to acknowledge the incident.", "num_digits": 1, "timeout": 5},
    }
}


#: Access-log lines of the REST requests the tests themselves make (polling states, reading logs).
_POLLING = re.compile(r"\[http\.access\].* method=GET path=/api/v2/")


@dataclass
class StandaloneAirflow:
    """``airflow standalone`` (scheduler, DAG processor, API server, triggerer, LocalExecutor)."""

    process: subprocess.Popen[bytes]
    home: Path
    api_url: str
    log_path: Path
    callback_base_url: str
    callback_store: str

    def __post_init__(self) -> None:
        self.api = httpx.Client(base_url=f"{self.api_url}/api/v2", timeout=30.0)

    def close(self) -> None:
        self.api.close()

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.api.get(path, **kwargs)
        response.raise_for_status()
        return response.json()

    def log_tail(self, lines: int = 120) -> str:
        """The end of the standalone output, without the access-log lines of the test's own REST polling."""
        return tail(self.log_path, lines, skip=_POLLING)

    def describe_run(self, dag_id: str, run_id: str | None) -> str:
        """The run's task instances and the standalone log, for failure messages."""
        parts = []
        if run_id is not None:
            try:
                tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
                parts.append(
                    "task instances: "
                    + json.dumps(
                        [
                            {k: ti.get(k) for k in ("task_id", "state", "try_number", "end_date")}
                            for ti in tis
                        ],
                        indent=1,
                    )
                )
                for ti in tis:
                    parts.append(f"--- log of {ti['task_id']} (try {ti['try_number']}):")
                    parts.append(redact(self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"] or 1)))
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                parts.append(f"could not read the task instances: {exc}")
        try:
            errors = self.get("/importErrors")
            if errors.get("total_entries"):
                parts.append("import errors: " + json.dumps(errors, indent=1))
        except httpx.HTTPError:
            pass
        parts.append(f"--- airflow standalone output (tail of {self.log_path}):\n{self.log_tail()}")
        return "\n".join(parts)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The task's log (worker and trigger parts, interleaved by Airflow) as plain text."""
        body = self.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        content = body.get("content") or []
        if isinstance(content, str):
            return content
        lines = []
        for item in content:
            if not isinstance(item, dict):
                lines.append(str(item))
                continue
            lines.append(str(item.get("event", "")))
            # A failed task's exception comes as structured details, not in the event text.
            for error in item.get("error_detail") or ():
                if isinstance(error, dict):
                    lines.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
        return "\n".join(lines)


def _standalone_env(home: Path, *, api_port: int, connection: dict[str, Any]) -> dict[str, str]:
    """The environment of ``airflow standalone``: nothing inherited from the test session's Airflow."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_", "AIRFLOW__", "_AIRFLOW")) and key != "PYTEST_CURRENT_TEST"
    }
    bin_dir = str(Path(sys.executable).parent)  # standalone runs `airflow ...` sub-commands
    api_url = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            # The log servers default to fixed ports on every interface; keep parallel runs apart.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(connection),
            "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": f"{api_url}/vobiz",
            "AIRFLOW__VOBIZ__CALLBACK_SECRET": CALLBACK_SECRET,
            "AIRFLOW__VOBIZ__CALLBACK_STORE": f"sqlite:///{home / 'vobiz_callbacks.db'}",
            # [vobiz] require_signatures is left at its default (on): the e2e run proves the default.
            "AIRFLOW__VOBIZ__POLL_INTERVAL": "1",
            # Watchers of one shared stream (tests/e2e/dags/vobiz_e2e_inbound.py) join before it polls.
            "AIRFLOW__TRIGGERER__SHARED_STREAM_COHORT_GRACE_PERIOD": "5",
            # The inbound application of tests/e2e/test_standalone_inbound.py.
            "AIRFLOW__VOBIZ__INBOUND_APPLICATIONS": json.dumps(INBOUND_APPLICATIONS),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextlib.contextmanager
def run_standalone(
    home: Path,
    emulator: EmulatorProcess,
    *,
    dags_dir: Path = DAGS_DIR,
    env_overrides: Mapping[str, str | None] | None = None,
    authenticate: Callable[[StandaloneAirflow], None] | None = None,
) -> Iterator[StandaloneAirflow]:
    """``airflow standalone`` in ``home`` with the DAGs of ``dags_dir``, healthy and serving ``/vobiz``.

    :param env_overrides: Settings changed (``None``: removed) from :func:`_standalone_env`'s, e.g. real
        logins instead of ``simple_auth_manager_all_admins``.
    :param authenticate: Gives ``airflow.api`` its credentials once the API server answers (for a run with
        real logins), before the plugin check that lists plugins through the REST API.
    """
    shutil.copytree(dags_dir, home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    api_port = free_port()
    env = _standalone_env(home, api_port=api_port, connection=emulator.connection)
    for key, value in (env_overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    log_path = home / "standalone.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "standalone"],
            cwd=home,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    airflow = StandaloneAirflow(
        process=process,
        home=home,
        api_url=f"http://127.0.0.1:{api_port}",
        log_path=log_path,
        callback_base_url=env["AIRFLOW__VOBIZ__CALLBACK_BASE_URL"],
        callback_store=env["AIRFLOW__VOBIZ__CALLBACK_STORE"],
    )
    authenticated = authenticate is None
    try:

        def healthy() -> bool:
            nonlocal authenticated
            if process.poll() is not None:
                pytest.fail(
                    f"airflow standalone exited with {process.returncode}:\n{airflow.log_tail()}",
                    pytrace=False,
                )
            try:
                health = airflow.api.get("/monitor/health")
                plugin = httpx.get(f"{airflow.callback_base_url}/health", timeout=5.0)
                if health.status_code == 200 and not authenticated and authenticate is not None:
                    authenticate(airflow)
                    authenticated = True
            except httpx.HTTPError:
                return False
            # The UI answers 200 (its HTML page) on unknown paths: only the receiver's JSON proves it is up.
            receiver_up = plugin.status_code == 200 and plugin.headers.get("content-type", "").startswith(
                "application/json"
            )
            if health.status_code == 200 and not receiver_up:
                # The API server is up, so it has loaded its plugins: the receiver is not among them.
                plugins = airflow.api.get("/plugins").text
                pytest.fail(
                    f"the API server does not serve the Vobiz receiver at /vobiz (VobizPlugin not mounted).\n"
                    f"GET /api/v2/plugins: {plugins}\n{airflow.log_tail()}",
                    pytrace=False,
                )
            if health.status_code != 200:
                return False
            components = health.json()
            if (components.get("dag_processor") or {"status": "healthy"}).get("status") != "healthy":
                return False
            return components_healthy(
                components, ("metadatabase", "scheduler", "triggerer")
            ) and execution_api_warm(airflow.api_url, STARTUP_TIMEOUT)

        wait_until(
            healthy,
            timeout=STARTUP_TIMEOUT,
            interval=1.0,
            message=lambda: (
                f"airflow standalone did not become healthy (API, scheduler, triggerer, DAG processor and "
                f"the /vobiz plugin) within {STARTUP_TIMEOUT:.0f} s:\n{airflow.log_tail()}"
            ),
        )
        yield airflow
    finally:
        airflow.close()
        stop_process_group(process)
