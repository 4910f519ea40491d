"""The main job on embedded defaults: run a Vobiz DAG for real against a local Vobiz.

Run it through ``./scripts/demo`` (which prepares the virtualenv). It

1. makes a throw-away AIRFLOW_HOME with a SQLite metadata DB (``airflow db migrate``),
2. starts the Vobiz emulator (``python -m vobiz_provider.testing.emulator``) and scripts what each
   recipient does (answers and presses a key, is busy, does not answer),
3. starts the standalone callback receiver (``vobiz-callbacks serve``) that Vobiz's callbacks reach
   (signed, as the provider's callback URLs carry credentials; the receiver requires signatures by default),
4. runs the DAG with ``airflow dags test`` (real Airflow: the operator fires, defers, the trigger waits
   for the hangup in the callback store),
5. prints each call's timeline as the emulator saw it and the outcome table as the provider recorded it,

and stops every process it started, whatever happens.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
DAGS = REPO / "example_dags"
RECIPIENTS_CSV = DAGS / "data" / "reminders.csv"

# What each recipient of the reminder list does, in CSV order; the rest answer and press 1.
SCRIPTED = [
    {"outcome": "completed", "digits": "1"},
    {"outcome": "busy"},
    {"outcome": "no-answer"},
    {"outcome": "completed", "digits": "2"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, *, what: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: {what} exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"demo: {what} did not answer {url} within {timeout:.0f} s")


def start(stack: ExitStack, argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own process group; the stack stops the whole group on exit."""
    handle = log.open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        handle.close()

    stack.callback(stop)
    return proc


def airflow_env(*, home: Path, dags: Path, receiver: str, store_url: str, connection: str) -> dict[str, str]:
    """The environment of a private Airflow (SQLite in ``home``) whose tasks call back ``receiver``.

    :param home: Its AIRFLOW_HOME.
    :param dags: Its DAGs folder.
    :param receiver: The callback receiver's public URL (``[vobiz] callback_base_url``).
    :param store_url: The call ledger (``[vobiz] callback_store``).
    :param connection: ``vobiz_default`` as JSON.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__VOBIZ__CALLBACK_BASE_URL=receiver,
        AIRFLOW__VOBIZ__CALLBACK_SECRET=secrets.token_urlsafe(32),
        AIRFLOW__VOBIZ__CALLBACK_STORE=store_url,
        AIRFLOW__VOBIZ__POLL_INTERVAL="0.5",
        AIRFLOW_CONN_VOBIZ_DEFAULT=connection,
    )
    return env


def recipients() -> list[str]:
    with RECIPIENTS_CSV.open(newline="") as handle:
        return [row["phone"].strip() for row in csv.DictReader(handle)]


def timeline(emulator: str) -> list[tuple[str, list[str]]]:
    """Per call, the lines of its life as the emulator lived it (times relative to the first request)."""
    from vobiz_provider.testing import RemoteEmulator

    with RemoteEmulator(emulator) as api:
        requests, callbacks, calls = api.requests(), api.callbacks(), api.calls()
    fired = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/Call/")]
    if not fired:
        return []
    t0 = min(_ts(r["received_at"]) for r in fired)
    out = []
    for call in sorted(calls, key=lambda c: c.get("to") or ""):
        uuid = call["call_uuid"]
        lines = []
        for r in fired:
            body = r.get("json") or r.get("body") or {}
            if isinstance(body, dict) and call["to"] in str(body.get("to", "")):
                lines.append(f"{_ts(r['received_at']) - t0:7.2f}s  fired     POST /Call/ -> {uuid[:8]}…")
                break
        for cb in sorted(
            (c for c in callbacks if c.get("call_uuid") == uuid), key=lambda c: _ts(c["sent_at"])
        ):
            if cb.get("attempt", 1) > 1 and cb.get("status") == 200:
                continue
            lines.append(f"{_ts(cb['sent_at']) - t0:7.2f}s  {_describe(cb)}")
        out.append((call["to"], lines))
    return out


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


def _describe(cb: dict[str, Any]) -> str:
    f = cb["fields"]
    kind = cb["kind"]
    answered = f"-> HTTP {cb['status']}" if cb.get("status") else f"-> {cb.get('error') or 'no answer'}"
    if kind == "ring":
        return f"ringing   (ring callback {answered})"
    if kind == "answer":
        return f"answered  (answer XML fetched {answered})"
    if kind == "gather":
        digits = f.get("Digits") or "nothing"
        return f"keypad    pressed {digits} (gather action {answered})"
    if kind == "machine-detection":
        return f"machine   Machine={f.get('Machine')} ({answered})"
    if kind == "hangup":
        return (
            f"hangup    {f.get('CallStatus')}: cause {f.get('HangupCauseCode')} {f.get('HangupCauseName')}, "
            f"by {f.get('HangupSource')}, {f.get('Duration')} s (hangup callback {answered})"
        )
    return f"{kind:9} {answered}"


def outcome_table(store_url: str, dag_id: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from vobiz_provider.ledger import CallLedger
    from vobiz_provider.ledger.schema import calls

    ledger = CallLedger(store_url)
    try:
        task_instances = sa.select(calls.c.run_id, calls.c.task_id, calls.c.map_index).where(
            calls.c.dag_id == dag_id
        )
        with ledger.engine.connect() as conn:
            keys = conn.execute(task_instances.distinct()).all()
        records = [
            record
            for run_id, task_id, map_index in keys
            for record in ledger.find_attempts(
                dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index
            )
        ]
        return [r.to_event() for r in sorted(records, key=lambda r: r.to or "")]
    finally:
        ledger.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dag", default="example_vobiz_reminders", help="DAG id to run (example_dags/)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME")
    args = parser.parse_args()

    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="vobiz-demo-"))
    emu_port, rcv_port = free_port(), free_port()
    emulator = f"http://127.0.0.1:{emu_port}"
    receiver = f"http://127.0.0.1:{rcv_port}/vobiz"
    store_url = f"sqlite:///{home / 'vobiz_callbacks.db'}"
    env = airflow_env(
        home=home,
        dags=DAGS,
        receiver=receiver,
        store_url=store_url,
        connection=(
            '{"conn_type": "vobiz", "login": "MA_DEMO00001", "password": "demo-auth-token", '
            f'"extra": {{"base_url": "{emulator}/api/v1", "cps": 5, "timezone": "Asia/Kolkata"}}}}'
        ),
    )
    print(f"demo: AIRFLOW_HOME={home} (SQLite), emulator {emulator}, receiver {receiver}")
    with ExitStack() as stack:
        print("demo: airflow db migrate …", flush=True)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        emu = start(
            stack,
            [
                sys.executable,
                "-m",
                "vobiz_provider.testing.emulator",
                "--port",
                str(emu_port),
                "--auth-id",
                "MA_DEMO00001",
                "--auth-token",
                "demo-auth-token",
                "--timezone",
                "Asia/Kolkata",
                "--cps",
                "5",
            ],
            env=env,
            log=home / "emulator.log",
        )
        wait_http(f"{emulator}/_emulator/health", what="the emulator", proc=emu)
        if RECIPIENTS_CSV.exists():
            from vobiz_provider.testing import CallScript, RemoteEmulator

            with RemoteEmulator(emulator) as api:
                for phone, script in zip(recipients(), SCRIPTED, strict=False):
                    api.script(phone, CallScript(answer_after=0.3, talk_for=0.5, **script))
        rcv = start(
            stack,
            ["vobiz-callbacks", "serve", "--host", "127.0.0.1", "--port", str(rcv_port)],
            env=env,
            log=home / "receiver.log",
        )
        wait_http(f"{receiver}/health", what="the callback receiver", proc=rcv)

        print(f"demo: airflow dags test {args.dag} …", flush=True)
        log = home / "dags_test.log"
        with log.open("wb") as handle:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "test", args.dag],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        print("\nCall timelines (as the Vobiz emulator lived them):")
        for to, lines in timeline(emulator):
            print(f"  {to}")
            for line in lines:
                print(f"    {line}")
        rows = outcome_table(store_url, args.dag)
        print("\nOutcomes (as the provider recorded them in the callback store):")
        print(f"  {'to':<16} {'status':<10} {'digits':<7} {'cause':<32} {'source':<12} {'secs':>5}")
        for row in rows:
            cause = f"{row.get('hangup_cause_code') or ''} {row.get('hangup_cause_name') or ''}".strip()
            print(
                f"  {row.get('to') or '':<16} {row.get('status') or '':<10} {row.get('digits') or '-':<7} "
                f"{cause:<32} {row.get('hangup_source') or '':<12} {row.get('duration') or 0:>5}"
            )
        state = "success" if result.returncode == 0 else f"failed (exit code {result.returncode})"
        print(f"\ndemo: DAG run {args.dag}: {state}; `airflow dags test` log: {log}")
        if result.returncode != 0:
            print(log.read_text(errors="replace")[-4000:])
    print(f"demo: all processes stopped; wall time {time.monotonic() - started:.1f} s")
    if not args.keep and result.returncode == 0:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
