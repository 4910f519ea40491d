"""A real Airflow deployment run as separate processes, so that one of them can be killed and restarted.

``airflow standalone`` supervises its components itself; a fault test needs to kill the triggerer with
``SIGKILL`` and start a new one while the scheduler and the API server keep running. So each component is
its own process (its own process group, stopped as a whole by :func:`stop_process_group`), all sharing one
``AIRFLOW_HOME`` and one SQLite metadata DB, with the LocalExecutor:

* ``airflow api-server`` (REST API, Execution API) and ``airflow dag-processor``: started once;
* ``airflow scheduler`` and ``airflow triggerer``: started by the test with extra environment (the callback
  store it runs against), killed or stopped by the test.

The metadata DB is read directly (read-only SQLite) for what the REST API does not show: the ``trigger``
table and the triggerer jobs' heartbeats.

``tests/cluster`` (``./scripts/cluster``) runs the same components at scale: a PostgreSQL metadata DB
(``metadata_url``), the ``CeleryExecutor`` (``executor`` plus the ``[celery]`` settings in ``extra_env``),
two triggerers and two Celery workers, each started here as its own component.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from _processes import (
    components_healthy,
    execution_api_warm,
    free_port,
    group_alive,
    redact,
    stop_process_group,
    tail,
)
from _waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

#: Seconds the API server and the DAG processor get to become healthy (~60-90 s on 2 busy cores).
STARTUP_TIMEOUT = 300.0
#: Seconds after its last heartbeat at which a triggerer counts as gone and its triggers are taken over.
TRIGGERER_HEALTH_THRESHOLD = 10
CALLBACK_SECRET = "faults-callback-secret-0123456789abcdef"
JWT_SECRET = "faults-jwt-secret-0123456789abcdef0123456789"


@dataclass
class AirflowProcesses:
    """One AIRFLOW_HOME and the Airflow processes running in it.

    :param home: The AIRFLOW_HOME (DAGs, metadata DB, one log file per component).
    :param env: The environment every component starts with.
    :param api_url: Root URL of the API server.
    """

    home: Path
    env: dict[str, str]
    api_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: The metadata DB's SQLAlchemy URL when it is not ``<home>/airflow.db`` (PostgreSQL).
    metadata_url: str | None = None

    def __post_init__(self) -> None:
        self.api = httpx.Client(base_url=f"{self.api_url}/api/v2", timeout=60.0)
        self._engine: Any = None

    # -- processes

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``airflow <args>`` as component ``name`` (its output appended to ``<home>/<name>.log``)."""
        if name in self.processes:
            raise RuntimeError(f"{name} is already running")
        with open(self.log_path(name), "ab") as log_file:
            log_file.write(f"\n===== {_now()} airflow {' '.join(args)}\n".encode())
            log_file.flush()
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "airflow"), *args],
                cwd=self.home,
                env={**self.env, **(env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def stop(self, name: str, *, grace: float = 10.0) -> None:
        """Stop component ``name`` (SIGTERM to its process group, SIGKILL after ``grace`` seconds)."""
        process = self.processes.pop(name, None)
        if process is not None:
            stop_process_group(process, grace=grace)

    def kill(self, name: str) -> None:
        """``kill -9`` component ``name``: SIGKILL to its whole process group (the process and its children,
        as when the machine or container under it dies), and wait until none of it runs."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        wait_until(lambda: not group_alive(process.pid), timeout=30, interval=0.1, what=f"{name} to die")
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name, grace=5)
        self.api.close()
        if self._engine is not None:
            self._engine.dispose()

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def log_tail(self, name: str, lines: int = 60) -> str:
        return tail(self.log_path(name), lines)

    def describe(self) -> str:
        """The end of every component's log, for failure messages."""
        names = sorted(path.stem for path in self.home.glob("*.log"))
        return "\n".join(f"--- {name} (tail):\n{self.log_tail(name)}" for name in names)

    # -- the metadata DB

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query of the metadata DB (``?`` placeholders on either backend)."""
        if self.metadata_url is not None:
            import sqlalchemy as sa

            if self._engine is None:
                self._engine = sa.create_engine(self.metadata_url, pool_size=2)
            names = {f"p{index}": value for index, value in enumerate(params)}
            text = sql
            for index in range(len(params)):
                text = text.replace("?", f":p{index}", 1)
            with self._engine.connect() as conn:
                return [tuple(row) for row in conn.execute(sa.text(text), names).all()]
        uri = f"file:{self.home / 'airflow.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
            return db.execute(sql, params).fetchall()

    def live_job(self, job_type: str, *, newer_than: int = 0) -> int | None:
        """The id of the newest running ``job_type`` job (``TriggererJob``, ``SchedulerJob``) whose id is
        above ``newer_than`` and that heartbeated recently, if there is one."""
        rows = self.query(
            "SELECT id, latest_heartbeat FROM job WHERE job_type = ? AND state = 'running' AND id > ? "
            "ORDER BY id DESC LIMIT 1",
            job_type,
            newer_than,
        )
        if not rows or rows[0][1] is None:
            return None
        job_id, heartbeat = rows[0]
        beat = heartbeat if isinstance(heartbeat, datetime) else datetime.fromisoformat(str(heartbeat))
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=timezone.utc)
        fresh = (datetime.now(timezone.utc) - beat).total_seconds() < TRIGGERER_HEALTH_THRESHOLD
        return int(job_id) if fresh else None

    def wait_for_job(self, name: str, job_type: str, *, newer_than: int = 0, timeout: float = 180) -> int:
        """Wait until component ``name`` runs a ``job_type`` job newer than ``newer_than``; its id."""

        def running() -> int | None:
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.log_tail(name)}")
            try:
                return self.live_job(job_type, newer_than=newer_than)
            except Exception:
                return None  # the DB is being written: look again

        job_id: int = wait_until(
            running,
            timeout=timeout,
            interval=0.5,
            message=lambda: (
                f"{name} did not start a {job_type} within {timeout:.0f} s:\n{self.log_tail(name)}"
            ),
        )
        return job_id

    # -- REST

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.api.get(path, **kwargs)
        response.raise_for_status()
        return response.json()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _env(
    home: Path,
    *,
    api_port: int,
    connection: Mapping[str, Any],
    parallelism: int,
    metadata_url: str | None = None,
    executor: str = "LocalExecutor",
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every component: nothing inherited from the test session's Airflow."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_", "AIRFLOW__", "_AIRFLOW")) and key != "PYTEST_CURRENT_TEST"
    }
    bin_dir = str(Path(sys.executable).parent)
    api_url = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            # Every component signs or checks the Execution API's tokens: one secret for all of them.
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
            "AIRFLOW__API__SECRET_KEY": JWT_SECRET,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": "1000",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_THRESHOLD),
            # The log servers default to fixed ports on every interface; keep parallel runs apart.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(connection),
            "AIRFLOW__VOBIZ__CALLBACK_SECRET": CALLBACK_SECRET,
            # The API server and the DAG processor never touch the store; the test gives the scheduler
            # (its workers), the triggerer and the receiver the store they share.
            "AIRFLOW__VOBIZ__CALLBACK_STORE": f"sqlite:///{home / 'unused-callbacks.db'}",
            "AIRFLOW__VOBIZ__REQUIRE_SIGNATURES": "True",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    return env


@contextlib.contextmanager
def airflow_processes(
    home: Path,
    *,
    dags: Path,
    connection: Mapping[str, Any],
    parallelism: int = 8,
    metadata_url: str | None = None,
    executor: str = "LocalExecutor",
    extra_env: Mapping[str, str] | None = None,
    stop_on_exit: bool = True,
) -> Iterator[AirflowProcesses]:
    """A migrated metadata DB (``<home>/airflow.db``, or ``metadata_url``) with the DAG files of ``dags``,
    and a healthy API server and DAG processor; everything started is stopped on exit (unless
    ``stop_on_exit`` is false and the block ends normally: ``./scripts/cluster up`` leaves them running)."""
    shutil.copytree(dags, home / "dags", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    api_port = free_port()
    env = _env(
        home,
        api_port=api_port,
        connection=connection,
        parallelism=parallelism,
        metadata_url=metadata_url,
        executor=executor,
        extra_env=extra_env,
    )
    airflow = AirflowProcesses(
        home=home, env=env, api_url=f"http://127.0.0.1:{api_port}", metadata_url=metadata_url
    )
    ok = False
    try:
        migrate = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{redact(migrate.stdout + migrate.stderr)}")
        airflow.start("api-server", "api-server")
        airflow.start("dag-processor", "dag-processor")

        def healthy() -> bool:
            for name, process in airflow.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited:\n{airflow.log_tail(name)}")
            try:
                health = airflow.api.get("/monitor/health")
            except httpx.HTTPError:
                return False
            if health.status_code != 200:
                return False
            return components_healthy(
                health.json(), ("metadatabase", "dag_processor")
            ) and execution_api_warm(airflow.api_url, STARTUP_TIMEOUT)

        wait_until(
            healthy,
            timeout=STARTUP_TIMEOUT,
            interval=1.0,
            message=lambda: f"the API server and DAG processor did not become healthy:\n{airflow.describe()}",
        )
        yield airflow
        ok = True
    finally:
        if stop_on_exit or not ok:
            airflow.stop_all()
