"""B2's floor: what verifying and durably storing a callback costs at the least, in this Python.

A raw ASGI app (no framework) on the same uvicorn that does the receiver's checks with the provider's own
functions: the correlation token (:meth:`~vobiz_provider.correlation.CorrelationToken.decode`), the V2/V3
signatures over the public URL (:func:`~vobiz_provider.signatures.verify_signature`, with the URL's
credentials as the receiver tries them) and the callback model
(:func:`~vobiz_provider.models.callbacks.read_callback`). It then stores each callback with a minimal
durable write: a writer thread inserts everything queued meanwhile into one table of a SQLite WAL file
(``synchronous=FULL``) with one ``executemany`` and one commit, and only then answers 200. It does none of
the receiver's other work (binding to the try, replay keys with their window, the call row, the event's
dedupe key, limits, logs), so it is no receiver: it shows how much of the bare route's throughput the
checks and a group-committed write leave, next to the receiver's, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import sqlite3
import sys
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from benchmarks.common import BENCH_AUTH_TOKEN, BENCH_SECRET

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Row = tuple[str | None, str | None, str]
    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]

_HEADERS = [(b"content-type", b"application/json")]
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, call_uuid TEXT, nonce TEXT UNIQUE, form TEXT)"
)


def floor_app(*, db_path: str, public_url: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The floor's ASGI app.

    :param db_path: The SQLite file it writes.
    :param public_url: The URL the callbacks were signed for (``.../vobiz/callbacks/hangup``).
    """
    from vobiz_provider.correlation import CorrelationToken, with_callback_credentials
    from vobiz_provider.models.callbacks import read_callback
    from vobiz_provider.signatures import verify_signature

    conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(_SCHEMA)
    pending: queue.SimpleQueue[tuple[Row, asyncio.Future[None], asyncio.AbstractEventLoop]] = (
        queue.SimpleQueue()
    )

    def write() -> None:
        while True:
            batch = [pending.get()]
            while True:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO events (call_uuid, nonce, form) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [row for row, _, _ in batch],
            )
            conn.execute("COMMIT")
            for _, future, loop in batch:
                loop.call_soon_threadsafe(future.set_result, None)

    threading.Thread(target=write, name="b2-floor-writer", daemon=True).start()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/":
            status = 200
        else:
            token = dict(parse_qsl(scope["query_string"].decode())).get("t", "")
            CorrelationToken.decode(token, [BENCH_SECRET], kind="hangup")
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
            check = verify_signature(headers, public_url, [BENCH_AUTH_TOKEN])
            if check.status != "valid":
                issued = with_callback_credentials(public_url, token, BENCH_SECRET)
                check = verify_signature(headers, issued, [BENCH_AUTH_TOKEN])
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
            callback = read_callback(form, timezone="UTC", kind="hangup")
            status = 200 if check.status == "valid" else 403
            if status == 200:
                loop = asyncio.get_running_loop()
                stored: asyncio.Future[None] = loop.create_future()
                nonce = check.replay_keys[0] if check.replay_keys else None
                pending.put(((callback.call_uuid, nonce, json.dumps(form)), stored, loop))
                await stored
        await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": b'{"status":"stored"}'})

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description="B2's floor: minimal checks and durable write")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--public-url", required=True)
    args = parser.parse_args(argv)
    app = floor_app(db_path=args.db, public_url=args.public_url)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
