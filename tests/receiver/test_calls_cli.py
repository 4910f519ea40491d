"""``vobiz-callbacks calls list | show``: the ledger's calls in a terminal, numbers masked as in the logs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from _ledger_helpers import place, store_callback

from vobiz_provider.correlation import CorrelationToken
from vobiz_provider.phone_masking import mask_number
from vobiz_provider.receiver.cli import main

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallLedger

TO = "+919876543210"


def _try(dag_id: str, run_id: str = "run-1") -> CorrelationToken:
    return CorrelationToken(dag_id=dag_id, run_id=run_id, task_id="call", map_index=-1, try_number=1)


@pytest.fixture
def seeded(store: CallLedger) -> CallLedger:
    reminders = _try("reminders")
    place(store, "req-1", [TO], correlation=reminders)
    base = {"CallUUID": "call-1", "RequestUUID": "req-1", "From": "918000000000", "To": TO}
    store_callback(store, "ring", {**base, "Event": "Ring", "CallStatus": "ringing"}, correlation=reminders)
    store_callback(store, "gather", {**base, "Digits": "1", "InputType": "dtmf"}, correlation=reminders)
    store_callback(
        store,
        "hangup",
        {**base, "Event": "Hangup", "CallStatus": "busy", "HangupCause": "USER_BUSY"},
        correlation=reminders,
    )
    for index in range(3):
        place(store, f"req-p{index}", [f"+1415555010{index}"], correlation=_try("payroll", "run-2"))
    return store


def test_list_filters_and_masks(seeded: CallLedger, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calls", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["CALL", "DAG", "RUN"]
    assert len(lines) == 5  # header + 4 calls, newest first
    assert lines[1].startswith("req-p2") and lines[4].startswith("call-1")
    assert TO not in out and mask_number(TO) in out

    assert main(["calls", "list", "--dag", "reminders", "--status", "busy", "--since", "1d"]) == 0
    [_header, only] = capsys.readouterr().out.splitlines()
    assert only.split()[:2] == ["call-1", "reminders"] and "USER_BUSY" in only

    assert main(["calls", "list", "--run", "run-2", "--limit", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:3]] == ["req-p2", "req-p1"]
    cursor = out[-1].removeprefix("(more: --before ").removesuffix(")")
    assert main(["calls", "list", "--run", "run-2", "--limit", "2", "--before", cursor]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["req-p0"]

    assert main(["calls", "list", "--dag", "nothing-here"]) == 0
    assert capsys.readouterr().out.strip() == "No calls match."


def test_show_prints_the_timeline(seeded: CallLedger, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calls", "show", "call-1", "--callbacks"]) == 0
    out = capsys.readouterr().out
    steps = [line.split()[1:] for line in out.split("timeline:\n")[1].split("callbacks")[0].splitlines()]
    assert [step[0] for step in steps] == ["queued", "ringing", "keys", "hangup"]
    assert "callbacks received: 3" in out
    assert TO not in out and mask_number(TO) in out

    assert main(["calls", "show", "no-such-call"]) == 3
    assert "no call 'no-such-call'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["calls", "list", "--since", "yesterday"], "invalid age 'yesterday'"),
        (["calls", "list", "--limit", "0"], "invalid limit '0'"),
        (["calls"], "CALLS_COMMAND"),
    ],
)
def test_bad_arguments_exit_2(
    store: CallLedger, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
