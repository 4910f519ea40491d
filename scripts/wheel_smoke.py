"""Smoke test of an installed wheel, run by ``scripts/wheel-smoke`` with the fresh virtualenv's Python from
a directory outside the checkout, so only the wheel's files can be imported.

1. the installed package holds every file of the source package (a module, ``py.typed``...);
2. ``airflow providers get airflow-provider-vobiz`` and the ``vobiz`` connection type (Airflow's CLI);
3. the emulator (``python -m vobiz_provider.testing.emulator``) and ``vobiz-callbacks serve`` start;
4. ``airflow dags test example_vobiz_call`` against them succeeds, and the receiver stored the hangup,
   which the emulator signed (its URL carried credentials) and the receiver verified (on by default).

Processes are started and stopped the way ``scripts/demo.py`` does it (its helpers are reused).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

from demo import airflow_env, free_port, outcome_table, start, wait_http

DIST = "airflow-provider-vobiz"
DAG_ID = "example_vobiz_call"
TO = "+14155550101"
ANSWER_XML = b"<Response><Speak>This is the wheel smoke test.</Speak></Response>"


def fail(message: str) -> None:
    raise SystemExit(f"wheel-smoke: FAILED: {message}")


def check_installed_files(source: Path) -> int:
    """Every file of the source package is in the installed distribution, which lives outside ``source``."""
    import vobiz_provider

    installed_at = Path(vobiz_provider.__file__).resolve().parent
    if source.resolve() in installed_at.parents or installed_at == source.resolve() / "vobiz_provider":
        fail(f"vobiz_provider was imported from the checkout ({installed_at}), not from the wheel")
    expected = {
        path.relative_to(source).as_posix()
        for path in (source / "vobiz_provider").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    files = metadata.files(DIST) or []
    shipped = {
        f.as_posix()
        for f in files
        if f.parts and f.parts[0] == "vobiz_provider" and "__pycache__" not in f.parts
    }
    missing = sorted(expected - shipped)
    if missing:
        fail(f"the wheel lacks {len(missing)} file(s) of the source package: {', '.join(missing)}")
    for relative in sorted(expected):
        if not (installed_at.parent / relative).is_file():
            fail(f"{relative} is listed in the wheel's RECORD but not installed")
    print(f"wheel-smoke: {len(shipped)} package files installed from the wheel at {installed_at}")
    return len(shipped)


def airflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        fail(f"airflow {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout


def check_registration(env: dict[str, str]) -> None:
    out = airflow(env, "providers", "get", DIST, "-o", "json")
    provider = json.loads(out[out.index("[") :])[0]
    version = metadata.version(DIST)
    if provider.get("Provider") != DIST or provider.get("Version") != version:
        fail(f"airflow providers get {DIST} answered {provider}")
    out = airflow(env, "providers", "hooks", "-o", "json")
    hooks = {hook["connection_type"]: hook for hook in json.loads(out[out.index("[") :])}
    vobiz = hooks.get("vobiz")
    if vobiz is None or vobiz.get("class") != "vobiz_provider.hooks.vobiz.VobizHook":
        fail(f"connection type 'vobiz' is not registered with VobizHook: {vobiz}")
    print(f"wheel-smoke: Airflow lists {DIST} {version} and the 'vobiz' connection type ({vobiz['class']})")


class _AnswerXml(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(ANSWER_XML)))
        self.end_headers()
        self.wfile.write(ANSWER_XML)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def run_example_dag(home: Path, dags: Path, stack: ExitStack) -> None:
    emu_port, rcv_port = free_port(), free_port()
    emulator = f"http://127.0.0.1:{emu_port}"
    receiver = f"http://127.0.0.1:{rcv_port}/vobiz"
    store_url = f"sqlite:///{home / 'vobiz_callbacks.db'}"
    answers = ThreadingHTTPServer(("127.0.0.1", 0), _AnswerXml)
    threading.Thread(target=answers.serve_forever, daemon=True).start()
    stack.callback(answers.shutdown)
    answer_url = f"http://127.0.0.1:{answers.server_address[1]}/answer.xml"

    env = airflow_env(
        home=home,
        dags=dags,
        receiver=receiver,
        store_url=store_url,
        # The emulator writes callback times in its account's timezone, Asia/Kolkata unless told otherwise.
        connection=(
            '{"conn_type": "vobiz", "login": "MA_SMOKE0001", "password": "smoke-auth-token", '
            f'"extra": {{"base_url": "{emulator}/api/v1", "timezone": "Asia/Kolkata"}}}}'
        ),
    )
    check_registration(env)
    airflow(env, "db", "migrate")
    emu = start(
        stack,
        [
            *(sys.executable, "-m", "vobiz_provider.testing.emulator", "--port", str(emu_port)),
            *("--auth-id", "MA_SMOKE0001", "--auth-token", "smoke-auth-token"),
        ],
        env=env,
        log=home / "emulator.log",
    )
    wait_http(f"{emulator}/_emulator/health", what="the emulator", proc=emu)
    from vobiz_provider.testing import CallScript, RemoteEmulator

    with RemoteEmulator(emulator) as api:
        api.script(TO, CallScript(answer_after=0.3, talk_for=0.5))
    callbacks = str(Path(sys.executable).with_name("vobiz-callbacks"))
    rcv = start(
        stack,
        [callbacks, "serve", "--host", "127.0.0.1", "--port", str(rcv_port)],
        env=env,
        log=home / "receiver.log",
    )
    wait_http(f"{receiver}/health", what="vobiz-callbacks serve", proc=rcv)
    print(f"wheel-smoke: the emulator ({emulator}) and vobiz-callbacks serve ({receiver}) started")

    conf = json.dumps({"to": TO, "answer_url": answer_url})
    log = home / "dags_test.log"
    with log.open("wb") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c", conf],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    text = log.read_text(errors="replace")
    if result.returncode != 0:
        fail(f"airflow dags test {DAG_ID} exited {result.returncode}:\n{text[-4000:]}")
    if "smoke-auth-token" in text:
        fail("the auth token appeared in the `airflow dags test` output")
    rows = outcome_table(store_url, DAG_ID)
    hangups = [row for row in rows if row.get("to") == TO and row.get("status") == "completed"]
    if not hangups:
        fail(f"the receiver stored no completed call to {TO}: {rows}\n{text[-3000:]}")
    # Secure by default: the operator's hangup URL carried credentials, so the emulator signed the callback
    # as Vobiz does, and the receiver (signatures required by default) accepted it.
    with RemoteEmulator(emulator) as api:
        attempts = api.callbacks("hangup")
    if not attempts or attempts[-1]["status"] != 200:
        fail(f"the receiver did not accept the hangup callback: {attempts}")
    if not all("X-Vobiz-Signature-V3" in attempt["headers"] for attempt in attempts):
        fail("the hangup callback was not signed: its URL carried no credentials")
    print(f"wheel-smoke: airflow dags test {DAG_ID} succeeded; the receiver stored: {hangups[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="the checkout the wheel was built from")
    parser.add_argument("--dags", type=Path, required=True, help="DAGs folder holding the example DAG")
    args = parser.parse_args()
    check_installed_files(args.source)
    with tempfile.TemporaryDirectory(prefix="vobiz-wheel-smoke-") as home, ExitStack() as stack:
        run_example_dag(Path(home), args.dags, stack)
    print("wheel-smoke: all processes stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
