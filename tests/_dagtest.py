"""Shared helpers for tests that run DAGs end to end with ``dag.test()``: the emulator as Vobiz, the
standalone callback receiver on loopback, and readers for what a run left in the metadata DB.

Test directories use them from their ``conftest.py``::

    from _dagtest import answer_url, callback_receiver, dag_runner, store_without_receiver  # noqa: F401

(``tests/`` is on ``sys.path`` because its ``conftest.py`` sits in a directory without ``__init__.py``.)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.sdk import DAG

    from vobiz_provider.testing import EmulatorHandle


class DagTestRunner:
    """Run DAGs with ``dag.test()`` and read back what they left in the metadata DB."""

    @staticmethod
    def run(dag: DAG, **kwargs: Any) -> Any:
        """Register ``dag`` in the metadata DB (as the DAG processor would) and run it with ``dag.test()``."""
        DagTestRunner.register(dag)
        return dag.test(**kwargs)

    @staticmethod
    def xcoms(dag_run: Any, task_id: str) -> dict[int, Any]:
        """The ``return_value`` XComs of ``task_id`` in ``dag_run``, by map index."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.scalars(
                XComModel.get_many(
                    run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value"
                )
            ).all()
            return {row.map_index: XComModel.deserialize_value(row) for row in rows}

    @staticmethod
    def states(dag_run: Any) -> dict[tuple[str, int], tuple[str, int]]:
        """``(task_id, map_index) -> (state, try_number)`` of every task instance of ``dag_run``."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            tis = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
                )
            ).all()
            return {(ti.task_id, ti.map_index): (str(ti.state), ti.try_number) for ti in tis}

    @staticmethod
    def rendered_fields(dag_run: Any) -> list[dict[str, Any]]:
        """The rendered template fields stored for every task instance of ``dag_run``."""
        from airflow.models.renderedtifields import RenderedTaskInstanceFields
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.scalars(
                select(RenderedTaskInstanceFields).where(
                    RenderedTaskInstanceFields.dag_id == dag_run.dag_id,
                    RenderedTaskInstanceFields.run_id == dag_run.run_id,
                )
            ).all()
            return [dict(row.rendered_fields) for row in rows]

    @staticmethod
    def call_requests(handle: EmulatorHandle) -> list[Any]:
        """The ``POST /Call/`` requests the emulator received, in order."""
        return [r for r in handle.requests if r.method == "POST" and r.path.endswith("/Call/")]

    @staticmethod
    def register(dag: DAG) -> None:
        """Register ``dag`` in the metadata DB without running it (as the DAG processor would)."""
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()
        bag = DagBag(dag_folder=os.devnull)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)


@pytest.fixture
def dag_runner(airflow_db: Any) -> DagTestRunner:
    """Runs DAGs with ``dag.test()`` against the migrated test metadata DB."""
    return DagTestRunner()


#: VobizXML that keeps an answered call up until the callee (the emulator's script) hangs up.
HOLD_XML = '<?xml version="1.0" encoding="UTF-8"?><Response><Wait length="3600"/></Response>'


@pytest.fixture(scope="session")
def answer_url() -> Iterator[str]:
    """A local ``answer_url`` serving VobizXML that holds the call until the script ends it."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from vobiz_provider.testing.emulator.server import serve_in_thread

    async def answer(request: Any) -> Response:
        return Response(HOLD_XML, media_type="application/xml")

    app = Starlette(routes=[Route("/answer.xml", answer, methods=["GET", "POST"])])
    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}/answer.xml"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def callback_receiver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The standalone callback receiver (``vobiz-callbacks serve``'s app) on loopback, with its own
    SQLite store; ``[vobiz] callback_base_url`` and ``callback_store`` point at them. Yields the base URL.
    """
    from vobiz_provider.config import get_settings
    from vobiz_provider.ledger import dispose_ledgers, get_ledger
    from vobiz_provider.receiver.server_app import build_server_app
    from vobiz_provider.testing.emulator.server import serve_in_thread

    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/vobiz"
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", f"sqlite:///{tmp_path / 'callbacks.db'}")
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", base_url)
    settings = get_settings()
    store = get_ledger(settings.callback_store)
    store.upgrade()
    try:
        with serve_in_thread(build_server_app(settings=settings, ledger=store), port=port):
            yield base_url
    finally:
        dispose_ledgers()


@pytest.fixture
def store_without_receiver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A private SQLite callback store and no callback base URL (callbacks off). Yields the store URL."""
    from vobiz_provider.ledger import dispose_ledgers

    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", url)
    monkeypatch.delenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", raising=False)
    try:
        yield url
    finally:
        dispose_ledgers()


#: The example DAGs shipped with the provider.
EXAMPLE_DAGS = Path(__file__).resolve().parents[1] / "example_dags"


def load_example_dag(dag_id: str) -> DAG:
    """Parse ``example_dags/<dag_id>.py`` as the DAG processor would (import errors fail the test)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Vobiz connection defined, and any attempt to open a network connection fails the test."""
    monkeypatch.delenv("AIRFLOW_CONN_VOBIZ_DEFAULT", raising=False)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network connection was opened while the DAG file was parsed")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def clear_and_rerun(dag: DAG, dag_run: Any, task_ids: set[str]) -> str:
    """Clear these task instances of a finished run, as *Clear* in the UI does, and run them again.

    ``dag.test()`` cannot do this (it replaces the run, so try numbers start over); this is the minimal
    scheduler loop of ``dag.test()`` applied to the existing run: each cleared task instance gets the next
    try number and runs in-process (deferrals run their trigger inline). Returns the run's final state.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_run.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id.in_(task_ids),
            )
        ).all()
        clear_task_instances(list(tis), session, dag_run_state=DagRunState.RUNNING)
    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_run.dag_id, DagRun.run_id == dag_run.run_id)
        ).one()
        run.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        while run.state == DagRunState.RUNNING:
            session.expire_all()
            schedulable, _ = run.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in schedulable:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
            if not schedulable:
                session.expire_all()
                run.update_state(session=session)
                session.commit()
                break
        return run.state
