"""``vobiz-callbacks``: run the callback receiver standalone and maintain the callback store.

Commands::

    vobiz-callbacks serve [--host 127.0.0.1] [--port 8790] [--log-level info]
                          [--header-timeout 5] [--keep-alive-timeout 5] [--graceful-timeout 10]
                          [--max-connections N] [--backlog N]
    vobiz-callbacks db upgrade
    vobiz-callbacks prune --older-than 7d
    vobiz-callbacks calls list [--dag ID] [--run ID] [--status S] [--since 1d]
    vobiz-callbacks calls show CALL_UUID        (vobiz_provider.receiver.calls_cli)
    vobiz-callbacks inbound-url APPLICATION [--base-url URL]

``serve`` is for deployments that expose only the receiver to the internet instead of the Airflow API server:
it serves the same app as the plugin, under ``/vobiz`` too (``callback_base_url`` =
``http(s)://<host>[:<port>]/vobiz``), and reads the same ``[vobiz]`` settings (``airflow.cfg`` or
``AIRFLOW__VOBIZ__*``) and the same connections (``AIRFLOW_CONN_*`` variables or the configured secrets
backend). It creates or upgrades the store's schema before it starts listening. It closes connections that
do not send a complete request head within ``--header-timeout`` seconds and keeps at most
``--max-connections`` open, closing the oldest idle one for a new client
(:mod:`~vobiz_provider.receiver.connection_guard`); the defaults follow ``ulimit -n``
(:class:`~vobiz_provider.receiver.server_limits.ServerLimits`).

Exit codes: 0 success, 1 the store cannot be reached, 2 bad arguments or configuration, 3 no such call.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import signal
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Final, TypeVar

import uvicorn
from sqlalchemy.engine import make_url

from vobiz_provider.config import get_settings
from vobiz_provider.exceptions import (
    LedgerUnavailableError,
    MissingCallbackSecretError,
    VobizValidationError,
)
from vobiz_provider.ledger import CallLedger, get_ledger
from vobiz_provider.receiver.app import MOUNT_PATH
from vobiz_provider.receiver.calls_cli import add_calls_parser, run_calls
from vobiz_provider.receiver.connection_guard import ConnectionGuard, guarded_protocol
from vobiz_provider.receiver.server_app import build_server_app
from vobiz_provider.receiver.server_limits import (
    DEFAULT_BACKLOG,
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    RESERVED_FDS,
    ServerLimits,
    open_files_limit,
)

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Sequence

    from vobiz_provider.config import VobizSettings

log = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8790
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TOKEN_IN_QUERY = re.compile(r"(?<=[?&]t=)[^&\s]+")
N = TypeVar("N", int, float)


def parse_duration(text: str) -> timedelta:
    """Parse ``30m``, ``12h``, ``7d`` (also ``s`` and ``w``) into a positive :class:`~datetime.timedelta`.

    :param text: The duration.
    :raises argparse.ArgumentTypeError: When it is not such a duration.
    """
    match = _DURATION.match(text)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: expected a positive number followed by s, m, h, d or w "
            "(e.g. 30m, 12h, 7d)"
        )
    return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


def format_duration(value: timedelta) -> str:
    """The shortest ``<n><unit>`` spelling of ``value`` (``7d``, ``90m``...)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _checked(
    convert: Callable[[str], N], valid: Callable[[N], bool], *, what: str, expected: str
) -> Callable[[str], N]:
    """An argparse ``type`` that converts a value and refuses it unless ``valid``."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: expected {expected}")
        return value

    return parse


_port = _checked(int, lambda value: 0 <= value <= 65535, what="port", expected="an integer from 0 to 65535")
_seconds = _checked(
    float, lambda value: 0 < value < math.inf, what="duration", expected="a positive number of seconds"
)
_count = _checked(int, lambda value: value >= 1, what="number", expected="a positive integer")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vobiz-callbacks``."""
    parser = argparse.ArgumentParser(
        prog="vobiz-callbacks",
        description="Receive Vobiz callbacks outside the Airflow API server; maintain the callback store.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="serve the callback receiver under /vobiz")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    serve.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to bind, 0 for any free one (default {DEFAULT_PORT})",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default info)")
    serve.add_argument(
        "--header-timeout",
        type=_seconds,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help="close a connection that has not sent a complete request head this long after opening, or "
        f"after the first byte of its next request (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=_seconds,
        default=DEFAULT_KEEP_ALIVE_TIMEOUT,
        metavar="SECONDS",
        help=f"close an idle kept-alive connection after this long (default {DEFAULT_KEEP_ALIVE_TIMEOUT:g})",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=DEFAULT_GRACEFUL_TIMEOUT,
        metavar="SECONDS",
        help="on shutdown, wait this long for requests in progress, then cancel them "
        f"(default {DEFAULT_GRACEFUL_TIMEOUT:g})",
    )
    serve.add_argument(
        "--max-connections",
        type=_count,
        default=None,
        metavar="N",
        help="connections kept open; a new one closes the oldest idle one, and a request arriving while all "
        "have one in progress gets 503 (default: what `ulimit -n` allows after the backlog and "
        f"{RESERVED_FDS} spare descriptors, at most {DEFAULT_MAX_CONNECTIONS})",
    )
    serve.add_argument(
        "--backlog",
        type=_count,
        default=None,
        metavar="N",
        help="connections the kernel queues before they are accepted (default: a quarter of the spare "
        f"descriptors, at most {DEFAULT_BACKLOG})",
    )

    serve.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="server processes sharing the listening socket (default 1). With a PostgreSQL store they "
        "scale ingest over cores; SQLite writers queue on one file, so more gain little there",
    )

    db = commands.add_parser("db", help="manage the callback store's schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    db_commands.add_parser("upgrade", help="create or upgrade the callback store's tables")

    prune = commands.add_parser(
        "prune", help="delete stored callbacks, calls and nonces older than a duration"
    )
    prune.add_argument(
        "--older-than", type=parse_duration, required=True, metavar="DURATION", help="e.g. 30m, 12h, 7d"
    )
    add_calls_parser(commands)
    inbound = commands.add_parser(
        "inbound-url",
        help="print the answer and hangup URLs of an inbound application, for the Vobiz console",
    )
    inbound.add_argument("application", help="its name in [vobiz] inbound_applications")
    inbound.add_argument(
        "--base-url", default=None, help="the receiver root (default: [vobiz] callback_base_url)"
    )
    return parser


def _inbound_urls(args: argparse.Namespace, settings: VobizSettings) -> int:
    """Print the URLs to paste into the Vobiz application (they carry its token: keep them private)."""
    from airflow.configuration import conf  # read where the command runs, like [vobiz] itself

    from vobiz_provider.models.inbound import inbound_url, parse_applications

    try:
        applications = parse_applications(conf.get("vobiz", "inbound_applications", fallback=None))
    except VobizValidationError as err:
        print(f"vobiz-callbacks: error: {err}", file=sys.stderr)
        return 2
    if args.application not in applications:
        known = ", ".join(sorted(applications)) or "none"
        print(
            f"vobiz-callbacks: error: no inbound application {args.application!r} in [vobiz] "
            f"inbound_applications (configured: {known})",
            file=sys.stderr,
        )
        return 2
    base = args.base_url or settings.callback_base_url
    if not base:
        print(
            "vobiz-callbacks: error: no receiver URL: set [vobiz] callback_base_url or pass --base-url",
            file=sys.stderr,
        )
        return 2
    secret = settings.signing_secret
    print(f"Answer URL (method POST): {inbound_url(base, args.application, secret)}")
    print(f"Hangup URL (method POST): {inbound_url(base, args.application, secret, kind='hangup')}")
    return 0


def safe_url(url: str) -> str:
    """The store URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable store URL>"


class _RedactCorrelationToken(logging.Filter):
    """Hides the ``t=`` correlation token in uvicorn's access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub("***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def _open_ledger(settings: VobizSettings) -> CallLedger:
    ledger = get_ledger(settings.callback_store)
    ledger.upgrade()
    return ledger


def _serve(args: argparse.Namespace, settings: VobizSettings) -> int:
    try:
        settings.verification_secrets  # noqa: B018 (raises when a secret is missing or too short)
    except MissingCallbackSecretError as err:  # or WeakCallbackSecretError: says how to generate one
        print(
            f"vobiz-callbacks: error: {err} The receiver needs it to verify callback URLs.", file=sys.stderr
        )
        return 2
    ledger = _open_ledger(settings)
    if not settings.callback_base_url:
        log.warning(
            "[vobiz] callback_base_url is not set: Vobiz signatures are checked against the URL of each "
            "request, which is wrong behind a proxy; set it to the public http(s)://host[:port]/vobiz"
        )
    app = build_server_app(settings=settings, ledger=ledger)
    # Read the signing connections now: an unreadable connection is reported at start-up rather than at the
    # first callback (inside Vobiz's 3 s).
    app.state.receiver.signing_keys.get_many(settings.signature_conn_ids)
    fd_limit = open_files_limit()
    limits = ServerLimits.for_process(
        max_body_bytes=settings.max_body_bytes,
        fd_limit=fd_limit,
        max_connections=args.max_connections,
        backlog=args.backlog,
        header_timeout=args.header_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        graceful_timeout=args.graceful_timeout,
    )
    guard = app.state.connection_guard = ConnectionGuard(limits=limits)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        server_header=False,
        http=guarded_protocol(guard),
        **limits.uvicorn_options(),
    )
    # uvicorn.Config configured the uvicorn loggers; our own lines go to the root handler.
    logging.getLogger("uvicorn.access").addFilter(_RedactCorrelationToken())
    logging.getLogger("vobiz_provider").setLevel(args.log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if limits.fd_shortfall(fd_limit):
        log.warning(
            "--max-connections %d and --backlog %d may need %d more file descriptors than `ulimit -n` (%s) "
            "allows: raise the limit or lower them, or a crowd of idle connections can lock out callbacks",
            limits.max_connections,
            limits.backlog,
            limits.fd_shortfall(fd_limit),
            fd_limit,
        )
    log.info(
        "Receiver limits: request heads within %g s, at most %d connections, backlog %d, keep-alive %g s",
        limits.header_timeout,
        limits.max_connections,
        limits.backlog,
        limits.keep_alive_timeout,
    )
    # Bind here rather than in uvicorn to know the port (``--port 0``) and say where the receiver listens.
    sock = config.bind_socket()
    # uvicorn only binds; listen now, so that a client told the address below is queued, not refused,
    # while the server starts.
    sock.listen(config.backlog)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    print(
        f"vobiz-callbacks: receiver listening on http://{shown_host}:{port}{MOUNT_PATH}",
        file=sys.stderr,
        flush=True,
    )
    if args.workers > 1:
        if not settings.callback_store.startswith("postgresql"):
            log.warning("--workers %d with a SQLite store: its writers queue on one file", args.workers)
        return _serve_workers(args.workers, config, sock, ledger)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send this (forked) worker SIGTERM when its parent ends, however it ends (uvicorn
    re-raises the signal that stopped it, so the parent may not live to stop its workers itself)."""
    with contextlib.suppress(Exception):  # Linux only; elsewhere the parent's `finally` stops them
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _serve_workers(workers: int, config: uvicorn.Config, sock: socket.socket, ledger: CallLedger) -> int:
    """Serve from ``workers`` processes: this one and ``workers - 1`` forked copies, all accepting on
    ``sock``. Stopping this one (SIGTERM, SIGINT) stops the others."""
    ledger.engine.dispose()  # no pooled connection crosses the fork; each process opens its own
    children: list[int] = []
    for _ in range(workers - 1):
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (covered by the --workers test)
            code = 1
            try:
                _stop_with_parent(parent)
                uvicorn.Server(config).run(sockets=[sock])
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        settings = get_settings()
    except Exception as err:  # a bad [vobiz] value: ValueError or Airflow's AirflowConfigException
        print(f"vobiz-callbacks: error: invalid [vobiz] configuration: {err}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "inbound-url":
            return _inbound_urls(args, settings)
        ledger = _open_ledger(settings)
        if args.command == "db":
            print(f"Callback store {safe_url(settings.callback_store)} is up to date.")
            return 0
        if args.command == "calls":
            return run_calls(args, ledger)
        deleted = ledger.prune(older_than=args.older_than)
        print(
            f"Deleted {deleted} rows older than {format_duration(args.older_than)} "
            f"from {safe_url(settings.callback_store)}."
        )
        return 0
    except LedgerUnavailableError as err:
        print(f"vobiz-callbacks: error: callback store unavailable: {err}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vobiz-callbacks``.

    :param argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.
    :return: The exit code.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
