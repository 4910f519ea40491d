"""A scaled-out Airflow deployment on this machine, for ``./scripts/cluster up|down|status`` and the tests.

Every component is its own process group (``tests/faults/_airflow_processes.py`` starts the Airflow ones):

* PostgreSQL database ``vobiz_cluster_<id>`` (a fresh one per run on the server at 127.0.0.1:5432): the
  Airflow metadata DB, the Celery result backend and the callback store;
* Redis DB 10 at 127.0.0.1:6379: the Celery broker (flushed on ``down``);
* ``airflow api-server`` (Execution API, REST, and the receiver as plugin at ``/vobiz``),
  ``airflow dag-processor``, ``airflow scheduler`` with the ``CeleryExecutor``;
* ``worker-1``, ``worker-2``: ``airflow celery worker``; ``triggerer-1``, ``triggerer-2``;
* ``receiver``: ``vobiz-callbacks serve`` (the standalone receiver);
* ``nginx``: Debian's nginx in front of both receivers; its URL is everyone's ``callback_base_url``, so
  signatures are verified against the public URL, not an internal one;
* ``emulator``: the Vobiz emulator (``python -m vobiz_provider.testing.emulator``) at ``cps`` 10.

Failure detection is fast (``FAST_FAILURE_DETECTION``), so that failovers finish in CI time. The state
(ports, process ids, the database) is kept in ``<home>/cluster.json`` so that ``down`` in another process
stops everything and drops the database. Run as ``python tests/cluster/_deployment.py up|down|status``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "faults")]

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from _airflow_processes import AirflowProcesses, airflow_processes  # noqa: E402
from _nginx import nginx_binary, write_nginx_conf  # noqa: E402
from _process_tree import kill_tree, stop_pid_groups  # noqa: E402
from _processes import free_port, group_alive  # noqa: E402
from _waiting import wait_until  # noqa: E402

from vobiz_provider.testing import EmulatorSettings, RemoteEmulator  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

POSTGRES = os.environ.get("VOBIZ_CLUSTER_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BROKER = "redis://127.0.0.1:6379/10"
CPS = 10
DAGS_DIR = HERE / "dags"
DEFAULT_HOME = Path(os.environ.get("VOBIZ_CLUSTER_HOME", HERE.parent.parent / ".cluster"))
#: Celery task slots per worker.
WORKER_CONCURRENCY = 8

#: Seconds without a heartbeat after which Airflow gives a dead component's work to another one.
TRIGGERER_HEALTH_THRESHOLD = 10
TASK_HEARTBEAT_TIMEOUT = 20
VISIBILITY_TIMEOUT = 45
FAST_FAILURE_DETECTION = {
    # A triggerer heartbeats every 2 s; one silent for 10 s is dead and its triggers move.
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_THRESHOLD),
    # A running task heartbeats every 2 s; one silent for 20 s (its worker died) fails and is retried.
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
}


def _pg_url(database: str, *, driver: str = "postgresql+psycopg2") -> str:
    return sa.engine.make_url(POSTGRES).set(drivername=driver, database=database).render_as_string(False)


def _admin() -> sa.engine.Engine:
    return sa.create_engine(
        _pg_url(sa.engine.make_url(POSTGRES).database or "postgres"), isolation_level="AUTOCOMMIT"
    )


def _cluster_env(database: str, nginx_port: int) -> dict[str, str]:
    store = _pg_url(database, driver="postgresql")
    return {
        "AIRFLOW__CELERY__BROKER_URL": REDIS_BROKER,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{_pg_url(database)}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        # A worker killed with tasks it had taken but not finished (acks late): Redis gives them to another
        # worker once they have been unacknowledged this long (Airflow's default is 24 h). Longer than any
        # task here runs before it defers; a duplicate delivery of a task that did run is refused by the
        # Execution API (the task instance is no longer queued).
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        # The PostgreSQL server is shared: connections are opened when needed, not pooled.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED": "False",
        "AIRFLOW__CORE__PARALLELISM": "64",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "1000",
        "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "10",
        "AIRFLOW__VOBIZ__CALLBACK_STORE": store,
        "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": f"http://127.0.0.1:{nginx_port}/vobiz",
        **FAST_FAILURE_DETECTION,
    }


@dataclass
class Cluster:
    """The running deployment.

    :param home: Its directory (AIRFLOW_HOME, logs, state).
    :param database: The PostgreSQL database of this run.
    :param airflow: The Airflow components (and the receiver, nginx, emulator: all in ``processes``).
    :param emulator: Control client of the emulator.
    :param connection: The ``vobiz_default`` connection (the emulator).
    :param ports: Every port it listens on.
    """

    home: Path
    database: str
    airflow: AirflowProcesses
    emulator: RemoteEmulator
    connection: dict[str, Any]
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        return _pg_url(self.database, driver="postgresql")

    @property
    def callback_base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['nginx']}/vobiz"

    def save(self) -> None:
        """Write ``cluster.json``: what ``down`` needs to stop everything."""
        state = {
            "database": self.database,
            "ports": self.ports,
            "pids": {name: process.pid for name, process in self.airflow.processes.items()},
            "api_url": self.airflow.api_url,
            "emulator_url": self.emulator.url,
            "callback_base_url": self.callback_base_url if "nginx" in self.ports else None,
        }
        (self.home / "cluster.json").write_text(json.dumps(state, indent=1))

    def start_component(self, name: str, command: list[str], *, env: dict[str, str] | None = None) -> None:
        """Start a non-Airflow component (receiver, nginx, emulator) as its own process group."""
        if name in self.airflow.processes:
            raise RuntimeError(f"{name} is already running")
        with open(self.airflow.log_path(name), "ab") as log_file:
            process = subprocess.Popen(
                command,
                cwd=self.home,
                env={**self.airflow.env, **(env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.airflow.processes[name] = process  # type: ignore[assignment]
        self.save()

    def start_receiver(self) -> None:
        self.start_component(
            "receiver",
            [
                str(Path(sys.executable).parent / "vobiz-callbacks"),
                "serve",
                "--port",
                str(self.ports["receiver"]),
            ],
        )
        wait_until(
            lambda: _answers(f"http://127.0.0.1:{self.ports['receiver']}/vobiz/health"),
            timeout=60,
            interval=0.3,
            message=lambda: f"the receiver did not start:\n{self.airflow.log_tail('receiver')}",
        )

    def start_worker(self, name: str) -> None:
        self.airflow.start(
            name,
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@%h",
            "--concurrency",
            str(WORKER_CONCURRENCY),
            env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
        )
        self.save()

    def start_triggerer(self, name: str) -> int:
        """Start a triggerer; the id of its ``TriggererJob`` once it heartbeats."""
        newest = self.airflow.query("SELECT COALESCE(MAX(id), 0) FROM job WHERE job_type = 'TriggererJob'")
        self.airflow.start(
            name, "triggerer", env={"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
        )
        self.save()
        return self.airflow.wait_for_job(name, "TriggererJob", newer_than=int(newest[0][0]))

    def kill(self, name: str) -> None:
        """``kill -9`` component ``name`` as if its host died (its task processes too); forget it."""
        process = self.airflow.processes.pop(name)
        kill_tree(process.pid)
        process.wait(timeout=10)
        self.save()

    def status(self) -> dict[str, str]:
        return status(self.home)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start_emulator(cluster_home: Path, port: int) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """The emulator on ``port``, its log (uvicorn's, on stderr) in ``emulator.log``. Its banner (stdout)
    prints the connection with the account's token: it goes nowhere, the connection is built here."""
    log_path = cluster_home / "emulator.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vobiz_provider.testing.emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--cps",
                str(CPS),
                "--concurrency",
                "5000",
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state_file = cluster_home / "cluster.json"
    state = json.loads(state_file.read_text())
    state["pids"]["emulator"] = process.pid  # so that down() stops it whatever happens next
    state_file.write_text(json.dumps(state))

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited:\n{log_path.read_text(errors='replace')}")
        with RemoteEmulator(f"http://127.0.0.1:{port}") as remote:
            try:
                return remote.health()
            except (httpx.HTTPError, ValueError):
                return False

    wait_until(healthy, timeout=60, interval=0.2, what="the emulator to start")
    defaults = EmulatorSettings()
    connection = {
        "conn_type": "vobiz",
        "login": defaults.auth_id,
        "password": defaults.auth_token,
        # The account's limit: every worker paces to it, through the store.
        "extra": {"base_url": f"http://127.0.0.1:{port}/api/v1", "cps": CPS},
    }
    return process, connection


@contextlib.contextmanager
def deployment(home: Path, *, keep_running: bool = False) -> Iterator[Cluster]:
    """Bring the whole deployment up in ``home``; stop it and drop its database on exit (unless
    ``keep_running``, for ``./scripts/cluster up``, and then only when it came up)."""
    home.mkdir(parents=True, exist_ok=True)
    if (home / "cluster.json").exists():
        raise RuntimeError(f"a cluster is already up in {home} (./scripts/cluster down first)")
    nginx = nginx_binary()
    database = f"vobiz_cluster_{uuid.uuid4().hex[:10]}"
    admin = _admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    admin.dispose()
    (home / "cluster.json").write_text(json.dumps({"database": database, "pids": {}}))
    _flush_broker()
    ports = {name: free_port() for name in ("emulator", "receiver", "nginx")}
    up = False
    try:
        emulator_process, connection = _start_emulator(home, ports["emulator"])
    except BaseException:
        down(home)
        raise
    try:
        with airflow_processes(
            home,
            dags=DAGS_DIR,
            connection=connection,
            parallelism=64,
            metadata_url=_pg_url(database),
            executor="CeleryExecutor",
            extra_env=_cluster_env(database, ports["nginx"]),
            stop_on_exit=not keep_running,
        ) as airflow:
            airflow.processes["emulator"] = emulator_process
            ports["api"] = int(airflow.api_url.rsplit(":", 1)[1])
            emulator_url = f"http://127.0.0.1:{ports['emulator']}"
            with RemoteEmulator(emulator_url) as remote:
                cluster = Cluster(
                    home=home,
                    database=database,
                    airflow=airflow,
                    emulator=remote,
                    connection=connection,
                    ports=ports,
                )
                cluster.save()
                cluster.start_receiver()
                conf = write_nginx_conf(home, ports)
                cluster.start_component("nginx", [nginx, "-c", str(conf), "-p", str(home)])
                wait_until(
                    lambda: _answers(f"http://127.0.0.1:{ports['nginx']}/nginx-health"),
                    timeout=30,
                    interval=0.2,
                    message=lambda: f"nginx did not start:\n{airflow.log_tail('nginx')}",
                )
                airflow.start("scheduler", "scheduler")
                cluster.save()
                airflow.wait_for_job("scheduler", "SchedulerJob")
                cluster.start_worker("worker-1")
                cluster.start_worker("worker-2")
                cluster.start_triggerer("triggerer-1")
                cluster.start_triggerer("triggerer-2")
                _wait_for_workers(cluster)
                up = True
                yield cluster
    finally:
        if not (keep_running and up):
            down(home)


def _wait_for_workers(cluster: Cluster) -> None:
    def both() -> bool:
        for name in ("worker-1", "worker-2"):
            process = cluster.airflow.processes[name]
            if process.poll() is not None:
                raise AssertionError(f"{name} exited:\n{cluster.airflow.log_tail(name)}")
            if " ready." not in cluster.airflow.log_path(name).read_text(errors="replace"):
                return False
        return True

    wait_until(
        both,
        timeout=180,
        interval=0.5,
        message=lambda: f"the workers did not start\n{cluster.airflow.describe()}",
    )


def _flush_broker() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_BROKER)
    try:
        client.flushdb()
    finally:
        client.close()


def down(home: Path) -> list[str]:
    """Stop every process of the deployment in ``home``, drop its database, flush the broker; what was
    stopped. Safe to run twice."""
    state_file = home / "cluster.json"
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    pids: dict[str, int] = state.get("pids", {})
    order = sorted(pids, key=lambda name: (name in ("api-server", "emulator", "nginx", "receiver"), name))
    # Workers, triggerers and the scheduler first (they talk to the others), then the rest.
    first = [name for name in order if name not in ("api-server", "emulator", "nginx", "receiver")]
    for group in (first, [name for name in order if name not in first]):
        with contextlib.suppress(Exception):
            stop_pid_groups([pids[name] for name in group], grace=10)
    left = [name for name in order if group_alive(pids[name])]
    database = state.get("database")
    if database:
        admin = _admin()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()
    _flush_broker()
    if left:
        raise RuntimeError(f"still running after SIGKILL: {left} (state kept in {state_file})")
    state_file.unlink()
    return order


def status(home: Path) -> dict[str, str]:
    """Each component: ``running`` or ``stopped``; plus the URLs."""
    state_file = home / "cluster.json"
    if not state_file.exists():
        return {}
    state = json.loads(state_file.read_text())
    found = {
        name: "running" if group_alive(pid) else "stopped" for name, pid in state.get("pids", {}).items()
    }
    found["database"] = state.get("database", "?")
    if state.get("api_url"):
        found["airflow"] = state["api_url"]
    if state.get("callback_base_url"):
        found["callback_base_url"] = state["callback_base_url"]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the deployment lives")
    args = parser.parse_args(argv)
    home: Path = args.home.resolve()
    if args.command == "up":
        with deployment(home, keep_running=True) as cluster:
            print(f"cluster up in {home}")
            print(f"  Airflow (REST, UI):  {cluster.airflow.api_url}  (all users admin)")
            print(
                f"  callback_base_url:   {cluster.callback_base_url}  (nginx -> receiver, api-server plugin)"
            )
            print(f"  Vobiz emulator:      http://127.0.0.1:{cluster.ports['emulator']}")
            print(f"  metadata DB + store: {cluster.store_url}")
            print(f"  Celery broker:       {REDIS_BROKER}")
            print("  stop it with: ./scripts/cluster down")
        return 0
    if args.command == "down":
        stopped = down(home)
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    found = status(home)
    if not found:
        print("no cluster is up")
        return 1
    for name, value in found.items():
        print(f"{name:20} {value}")
    return 0 if all(v != "stopped" for v in found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
