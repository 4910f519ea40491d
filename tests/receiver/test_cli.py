"""``vobiz-callbacks``: arguments in-process; ``serve``, ``db upgrade`` and ``prune`` as real subprocesses."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import time
from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa
from _ledger_helpers import place, store_callback, token_for
from _receiver_server import cli_command, serve_subprocess

from vobiz_provider.correlation import CorrelationToken, callback_url
from vobiz_provider.ledger import CallLedger
from vobiz_provider.ledger.schema import calls, events
from vobiz_provider.receiver.cli import format_duration, main, parse_duration
from vobiz_provider.signatures import signature_headers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = "cli-test-callback-secret-0123456789abcdef"
AUTH_TOKEN = "cli-test-auth-token"
PUBLIC_BASE = "https://hooks.example.com/vobiz"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'callbacks.db'}"


@pytest.fixture
def cli_env(store_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__VOBIZ__")}
    env.update(
        {
            "AIRFLOW__VOBIZ__CALLBACK_SECRET": SECRET,
            "AIRFLOW__VOBIZ__CALLBACK_STORE": store_url,
            "AIRFLOW__VOBIZ__CALLBACK_BASE_URL": PUBLIC_BASE,
            "AIRFLOW_CONN_VOBIZ_DEFAULT": json.dumps(
                {"conn_type": "vobiz", "login": "MA_CLITEST1", "password": AUTH_TOKEN}
            ),
        }
    )
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_command(), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


# -- arguments ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", dt.timedelta(minutes=30)),
        ("12h", dt.timedelta(hours=12)),
        ("7d", dt.timedelta(days=7)),
        ("45s", dt.timedelta(seconds=45)),
        ("2w", dt.timedelta(weeks=2)),
        (" 7D ", dt.timedelta(days=7)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["7", "d", "0d", "-1h", "7 days", "1.5h", "7x", ""])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("value", "text"), [(dt.timedelta(days=7), "7d"), (dt.timedelta(minutes=90), "90m")])
def test_format_duration(value: dt.timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["prune"], "--older-than"),
        (["prune", "--older-than", "7x"], "invalid duration '7x'"),
        (["serve", "--port", "70000"], "invalid port '70000'"),
        (["serve", "--log-level", "loud"], "invalid choice"),
        (["db"], "DB_COMMAND"),
        (["db", "downgrade"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("secret", "fallbacks", "message"),
    [
        ("", "", "callback_secret is not set"),
        ("dev-secret", "", "callback_secret is shorter than 32 bytes"),  # the docs' old example
        (SECRET, "old-secret", "callback_secret_fallbacks is shorter than 32 bytes"),
    ],
    ids=["missing", "weak", "weak-fallback"],
)
def test_serve_without_a_strong_callback_secret_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
    secret: str,
    fallbacks: str,
    message: str,
) -> None:
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET", secret)
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET_FALLBACKS", fallbacks)
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", store_url)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert message in err
    if secret:
        assert "secrets.token_urlsafe(32)" in err
        assert "dev-secret" not in err and "old-secret" not in err


def test_unreachable_store_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", "postgresql://nobody:hunter22@127.0.0.1:1/x")
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "callback store unavailable" in err
    assert "hunter22" not in err


# -- subprocesses -------------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_store(cli_env: dict[str, str], store_url: str) -> None:
    result = run_cli("db", "upgrade", env=cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "is up to date" in result.stdout
    tables = set(sa.inspect(sa.create_engine(store_url)).get_table_names())
    assert {"vobiz_callback_events", "vobiz_calls", "vobiz_nonces"} <= tables


def test_prune_deletes_only_old_rows(cli_env: dict[str, str], store_url: str) -> None:
    store = CallLedger(store_url)
    correlation = CorrelationToken(dag_id="d", run_id="r", task_id="t")
    for call_uuid in ("old-call", "new-call"):
        store_callback(
            store,
            "hangup",
            {
                "CallUUID": call_uuid,
                "RequestUUID": f"req-{call_uuid}",
                "Event": "Hangup",
                "CallStatus": "completed",
                "HangupCauseCode": "4000",
            },
            correlation=correlation,
        )
    two_hours_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    with store.engine.begin() as conn:
        conn.execute(
            events.update().where(events.c.call_uuid == "old-call").values(received_at=two_hours_ago)
        )
        conn.execute(calls.update().where(calls.c.call_uuid == "old-call").values(updated_at=two_hours_ago))
    store.dispose()

    result = run_cli("prune", "--older-than", "1h", env=cli_env)

    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"Deleted 2 rows older than 1h", result.stdout), result.stdout
    remaining = {record.call_uuid for record in store.lookup(call_uuids=["old-call", "new-call"])}
    assert remaining == {"new-call"}


@pytest.fixture
def serving(cli_env: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
    """``vobiz-callbacks serve --port 0`` as a subprocess; yields its origin and (later) its stderr lines."""
    with serve_subprocess(cli_env, "--log-level", "info") as served:
        yield served.origin, served.lines


def test_serve_answers_health_and_stores_a_signed_callback(
    serving: tuple[str, list[str]], store_url: str
) -> None:
    origin, stderr = serving
    correlation = CorrelationToken(dag_id="d", run_id="r", task_id="t", try_number=1)
    token = token_for(correlation, "hangup", secret=SECRET)
    store = CallLedger(store_url)
    place(store, "cli-request-1", ["+919876543210"], correlation=correlation)
    store.dispose()
    fields = {
        "CallUUID": "cli-call-1",
        "RequestUUID": "cli-request-1",
        "Event": "Hangup",
        "CallStatus": "busy",
        "HangupCause": "USER_BUSY",
        "HangupCauseCode": "3010",
    }
    # Vobiz called the public URL; a proxy forwarded it to the standalone receiver.
    headers = signature_headers(callback_url(PUBLIC_BASE, "hangup", token), AUTH_TOKEN)
    with httpx.Client(timeout=30) as client:
        health = client.get(f"{origin}/vobiz/health")
        response = client.post(callback_url(f"{origin}/vobiz", "hangup", token), data=fields, headers=headers)
        forged = client.post(
            callback_url(f"{origin}/vobiz", "hangup", token),
            data={**fields, "CallUUID": "cli-call-2"},
            headers=signature_headers(callback_url(f"{origin}/vobiz", "hangup", token), AUTH_TOKEN),
        )

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert response.status_code == 200, response.text
    assert forged.status_code == 403  # signed for the local URL, not the configured public one
    store = CallLedger(store_url)
    [record] = store.lookup(call_uuids=["cli-call-1", "cli-call-2"])
    assert (record.call_uuid, record.status, record.hangup_cause_code) == ("cli-call-1", "busy", 3010)
    store.dispose()
    output = "".join(stderr)
    assert token not in output and AUTH_TOKEN not in output


@pytest.mark.postgres
def test_db_upgrade_and_prune_on_postgresql(cli_env: dict[str, str], pg_schema_url: str) -> None:
    # A schema of its own: the shared database may hold another branch's (newer) store.
    env = {**cli_env, "AIRFLOW__VOBIZ__CALLBACK_STORE": pg_schema_url}
    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    assert "is up to date" in upgraded.stdout
    pruned = run_cli("prune", "--older-than", "3650d", env=env)
    assert pruned.returncode == 0, pruned.stderr[-2000:]
    assert re.search(r"Deleted \d+ rows older than 3650d", pruned.stdout), pruned.stdout


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            return "\tZ (zombie)" not in handle.read()
    except FileNotFoundError:
        return False


def _children(pid: int) -> set[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    try:
        with open(path, encoding="ascii") as handle:
            return {int(each) for each in handle.read().split()}
    except FileNotFoundError:
        return set()


@pytest.mark.postgres
def test_serve_with_workers_shares_the_socket_and_stops_them_all(
    cli_env: dict[str, str], pg_schema_url: str
) -> None:
    env = {**cli_env, "AIRFLOW__VOBIZ__CALLBACK_STORE": pg_schema_url}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    store = CallLedger(pg_schema_url)
    correlation = CorrelationToken(dag_id="d", run_id="r", task_id="t", try_number=1)
    token = token_for(correlation, "hangup", secret=SECRET)
    requests = [f"workers-request-{index}" for index in range(8)]
    for request in requests:
        place(store, request, ["+919876543210"], correlation=correlation)
    with serve_subprocess(env, "--workers", "2") as served:
        deadline = time.monotonic() + 30
        while not (workers := _children(served.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)  # it forks once it has said where it listens
        assert len(workers) == 1  # the parent serves too
        for index, request in enumerate(requests):
            fields = {
                "CallUUID": f"workers-call-{index}",
                "RequestUUID": request,
                "Event": "Hangup",
                "CallStatus": "completed",
                "HangupCauseCode": "4000",
            }
            # A new connection each time: the kernel hands them to either process.
            response = httpx.post(
                callback_url(f"{served.origin}/vobiz", "hangup", token),
                data=fields,
                headers=signature_headers(callback_url(PUBLIC_BASE, "hangup", token), AUTH_TOKEN),
                timeout=30,
            )
            assert response.status_code == 200, response.text
    # The worker stops with its parent: no server is left behind (gone, or dead and not yet reaped).
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers)
    stored = store.lookup(call_uuids=[f"workers-call-{index}" for index in range(8)])
    assert sorted(record.call_uuid for record in stored) == [f"workers-call-{index}" for index in range(8)]
    store.dispose()
