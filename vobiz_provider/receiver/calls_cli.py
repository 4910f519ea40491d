"""``vobiz-callbacks calls list | show``: the calls of the ledger in a terminal.

Commands::

    vobiz-callbacks calls list [--dag ID] [--run ID] [--status S] [--since 1d] [--limit 50] [--before CURSOR]
    vobiz-callbacks calls show CALL_UUID

Both read the same ledger queries as the "Vobiz calls" page (:mod:`vobiz_provider.ledger.call_views`). The
terminal reads the store directly, with no Airflow user: it lists every DAG's calls, and shows phone numbers
as the logs do (masked unless ``[vobiz] mask_phone_numbers`` is off).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from vobiz_provider.ledger.call_views import MAX_PAGE_SIZE, CallFilter, outcome_of, parse_age
from vobiz_provider.phone_masking import masked_number

if TYPE_CHECKING:
    import datetime as dt

    from vobiz_provider.ledger import CallBrowser

__all__ = ["add_calls_parser", "run_calls"]


def _age(text: str) -> dt.timedelta:
    try:
        return parse_age(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(
            f"invalid limit {text!r}: expected an integer from 1 to {MAX_PAGE_SIZE}"
        )
    return value


def add_calls_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``calls list`` and ``calls show`` to ``vobiz-callbacks``' sub-commands.

    :param commands: The sub-parsers of ``vobiz-callbacks``.
    """
    calls = commands.add_parser("calls", help="list the calls in the callback store, or show one")
    sub = calls.add_subparsers(dest="calls_command", metavar="CALLS_COMMAND", required=True)
    listing = sub.add_parser("list", help="the calls, newest first")
    listing.add_argument("--dag", metavar="ID", help="only this DAG's calls")
    listing.add_argument("--run", metavar="ID", help="only this DAG run's calls")
    listing.add_argument("--status", metavar="S", help="only calls in this status (completed, busy, ...)")
    listing.add_argument("--since", type=_age, metavar="AGE", help="placed within this age (30m, 12h, 1d)")
    listing.add_argument("--limit", type=_page_size, default=50, help="calls to show (default 50)")
    listing.add_argument("--before", type=int, metavar="CURSOR", help="the next page (printed at the end)")
    show = sub.add_parser("show", help="one call: its fields, timeline and callbacks")
    show.add_argument("call_uuid", metavar="CALL_UUID")
    show.add_argument("--callbacks", action="store_true", help="also print the raw callbacks received")


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _list(args: argparse.Namespace, ledger: CallBrowser) -> int:
    import datetime as dt

    since = dt.datetime.now(dt.timezone.utc) - args.since if args.since else None
    where = CallFilter(dag_id=args.dag, run_id=args.run, status=args.status, since=since)
    page = ledger.list_calls(where, limit=args.limit, before=args.before)
    heads = ("CALL", "DAG", "RUN", "TASK", "MAP", "TRY", "TO", "STATUS", "OUTCOME", "CAUSE", "SECS", "DIGITS",
             "PLACED")  # fmt: skip
    rows: list[tuple[str, ...]] = [heads]
    for call in page.calls:
        r = call.record
        placed = (
            call.placed_at.isoformat(timespec="seconds").replace("+00:00", "Z") if call.placed_at else None
        )
        rows.append(
            tuple(
                _cell(value)
                for value in (
                    r.call_uuid or r.request_uuid,
                    r.dag_id,
                    r.run_id,
                    r.task_id,
                    r.map_index,
                    r.try_number,
                    masked_number(r.to) if r.to else None,
                    r.status,
                    outcome_of(r.status, answered=r.answer_time is not None),
                    r.hangup_cause,
                    r.duration,
                    r.digits,
                    placed,
                )
            )
        )
    if len(rows) == 1:
        print("No calls match.")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if page.next_cursor is not None:
        print(f"(more: --before {page.next_cursor})")
    return 0


def _show(args: argparse.Namespace, ledger: CallBrowser) -> int:
    detail = ledger.call_detail(args.call_uuid)
    if detail is None:
        print(
            f"vobiz-callbacks: error: no call {args.call_uuid[:64]!r} in the callback store", file=sys.stderr
        )
        return 3
    r = detail.listed.record
    for label, value in (
        ("call", r.call_uuid), ("request", r.request_uuid),
        ("task", f"{r.dag_id} / {r.run_id} / {r.task_id} [{r.map_index}] try {r.try_number}"),
        ("to", masked_number(r.to) if r.to else None), ("status", r.status), ("cause", r.hangup_cause),
        ("duration", f"{r.duration} s" if r.duration is not None else None), ("digits", r.digits),
    ):  # fmt: skip
        print(f"{label + ':':10}{_cell(value)}")
    print("timeline:")
    for step in detail.steps:
        since = "" if step.seconds_since_previous is None else f"  (+{step.seconds_since_previous:.1f} s)"
        print(f"  {step.at.isoformat(timespec='seconds').replace('+00:00', 'Z')}  {step.label}{since}")
    if not detail.steps:
        print("  (nothing recorded yet)")
    print(f"callbacks received: {len(detail.callbacks)}")
    if args.callbacks:
        for callback in detail.callbacks:
            fields = {
                key: masked_number(value) if key in ("To", "From") and isinstance(value, str) else value
                for key, value in callback.fields.items()
            }
            print(f"--- {callback.received_at.isoformat()} {callback.kind}")
            print(json.dumps(fields, indent=2, sort_keys=True))
    return 0


def run_calls(args: argparse.Namespace, ledger: CallBrowser) -> int:
    """Run ``calls list`` or ``calls show``; the exit code (3: no such call).

    :param args: The parsed arguments.
    :param ledger: The (upgraded) ledger.
    """
    if args.calls_command == "list":
        return _list(args, ledger)
    return _show(args, ledger)
