"""``python -m vobiz_provider.testing.emulator``: run a local Vobiz in the foreground.

Prints the API base URL and the Airflow connection JSON, then serves until interrupted. Script and inspect
it over HTTP under ``/_emulator/`` (``scripts``, ``settings``, ``faults``, ``requests``, ``callbacks``,
``calls``, ``reset``, ``wait/callbacks``, ``wait/idle``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from vobiz_provider.testing.emulator.core import VobizEmulator
from vobiz_provider.testing.emulator.script import OUTCOMES, CallScript
from vobiz_provider.testing.emulator.settings import EmulatorSettings

if TYPE_CHECKING:
    from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    defaults = EmulatorSettings()
    parser = argparse.ArgumentParser(
        prog="python -m vobiz_provider.testing.emulator",
        description="A strict local Vobiz voice API emulator (REST API, call lifecycle, callbacks).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free port)")
    parser.add_argument("--auth-id", default=defaults.auth_id, help="the account's Auth ID")
    parser.add_argument("--auth-token", default=defaults.auth_token, help="the account's Auth Token")
    parser.add_argument("--main-account-token", default=None, help="also sign callbacks with MA headers")
    parser.add_argument("--success-status", type=int, choices=(200, 201), default=defaults.success_status)
    parser.add_argument("--error-shape", choices=("flat", "envelope"), default=defaults.error_shape)
    parser.add_argument("--request-uuid-shape", choices=("str", "list"), default=defaults.request_uuid_shape)
    parser.add_argument("--cps", type=int, default=defaults.cps, help="calls per second allowed")
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="simultaneous calls allowed"
    )
    parser.add_argument("--balance", type=float, default=defaults.balance, help="account balance")
    parser.add_argument("--timezone", default=defaults.timezone, help="console timezone of local times")
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds sent on 429")
    parser.add_argument(
        "--time-scale", type=float, default=defaults.time_scale, help="factor for request/XML durations"
    )
    parser.add_argument(
        "--sign-callbacks",
        choices=("credentials", "always", "never"),
        default=defaults.sign_callbacks,
        help="when callbacks carry signatures: only to URLs with user:password@ (Vobiz), always or never",
    )
    parser.add_argument(
        "--no-sign-callbacks",
        action="store_const",
        const="never",
        dest="sign_callbacks",
        help="send callbacks without signatures (--sign-callbacks never)",
    )
    parser.add_argument(
        "--signed-url-form",
        choices=("stripped", "kept"),
        default=defaults.signed_url_form,
        help="sign the URL without user:password@ (Vobiz's Node/Go/Ruby samples) or with it (Python sample)",
    )
    parser.add_argument(
        "--require-answer-method",
        action="store_true",
        default=defaults.require_answer_method,
        help="refuse POST /Call/ without answer_method (the OpenAPI spec; the field table says optional)",
    )
    parser.add_argument(
        "--callback-backoff", type=float, default=defaults.callback_backoff, help="first callback retry delay"
    )
    parser.add_argument(
        "--script",
        action="append",
        default=[],
        metavar="DESTINATION=OUTCOME",
        help=f"what a destination does (repeatable); outcomes: {', '.join(OUTCOMES)}",
    )
    parser.add_argument(
        "--default-outcome", choices=OUTCOMES, default="completed", help="what every other destination does"
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    return parser


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    """The emulator settings named on the command line."""
    return EmulatorSettings(
        auth_id=args.auth_id,
        auth_token=args.auth_token,
        main_account_token=args.main_account_token,
        success_status=args.success_status,
        error_shape=args.error_shape,
        request_uuid_shape=args.request_uuid_shape,
        cps=args.cps,
        concurrency=args.concurrency,
        balance=args.balance,
        timezone=args.timezone,
        retry_after=args.retry_after,
        time_scale=args.time_scale,
        sign_callbacks=args.sign_callbacks,
        signed_url_form=args.signed_url_form,
        require_answer_method=args.require_answer_method,
        callback_backoff=args.callback_backoff,
    )


def scripts_from_args(args: argparse.Namespace) -> dict[str, CallScript]:
    """The per-destination scripts named with ``--script DESTINATION=OUTCOME``."""
    scripts: dict[str, CallScript] = {}
    for item in args.script:
        destination, sep, outcome = item.partition("=")
        if not sep or not destination:
            raise ValueError(f"--script: expected DESTINATION=OUTCOME, got {item!r}")
        scripts[destination.strip()] = CallScript(outcome=outcome.strip())
    return scripts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until interrupted."""
    import uvicorn

    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        scripts = scripts_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    emulator = VobizEmulator(settings=settings, default_script=CallScript(outcome=args.default_outcome))
    for destination, script in scripts.items():
        emulator.script(destination, script)
    config = uvicorn.Config(emulator.app, host=args.host, port=args.port, log_level=args.log_level)
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    sock.listen(config.backlog)  # connections made as soon as the URL is printed wait in the backlog
    port = sock.getsockname()[1]
    base_url = f"http://{args.host}:{port}/api/v1"
    connection = {
        "conn_type": "vobiz",
        "login": settings.auth_id,
        "password": settings.auth_token,
        "extra": {"base_url": base_url},
    }
    print(f"Vobiz emulator: {base_url} (control API: http://{args.host}:{port}/_emulator/)", flush=True)
    print(f"AIRFLOW_CONN_VOBIZ_DEFAULT='{json.dumps(connection)}'", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
