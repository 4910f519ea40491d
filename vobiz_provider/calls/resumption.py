"""What a new try of a task does about the calls of its earlier tries.

A retry (or a clear in the UI) of a task that placed a call looks at the calls of the newest earlier try
first (:func:`previous_attempt`). :func:`decide_resume` says what a waiting try does: wait for a call still
up, return a call that already succeeded, report how a call ended when the try that placed it died before
saying so, or dial again; :func:`decide_fired_resume` says the same for ``wait_for_completion=False``.
Whether a try reported its calls' outcome is the ledger's ``settled_at`` of its placement:
:class:`TryHistory` reads and writes it, and gathers the steps the operator takes into one place.

Nothing here imports a model, the client or the ledger at run time (DAG-parse cost, benchmark B4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from vobiz_provider.exceptions import VobizCallFailedError
from vobiz_provider.phone_masking import masked_number
from vobiz_provider.untrusted import loggable

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from vobiz_provider.calls.outcome import SuccessRule
    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.ledger import PlacementLedger
    from vobiz_provider.models.record import CallRecord

__all__ = [
    "Resume",
    "TryHistory",
    "decide_fired_resume",
    "decide_resume",
    "previous_attempt",
    "settle_calls",
]


class _Log(Protocol):
    def info(self, msg: str, /, *args: Any) -> Any: ...

    def warning(self, msg: str, /, *args: Any) -> Any: ...


def previous_attempt(ledger: PlacementLedger, correlation: CorrelationToken) -> list[CallRecord]:
    """The calls of the newest earlier try of this task instance that placed a call (may be empty).

    :param ledger: The call ledger.
    :param correlation: The current try.
    """
    records = ledger.find_attempts(
        dag_id=correlation.dag_id,
        run_id=correlation.run_id,
        task_id=correlation.task_id,
        map_index=correlation.map_index,
        before_try=correlation.try_number,
    )
    if not records:
        return []
    newest = records[0].try_number
    return [record for record in records if record.try_number == newest]


def _describe(previous: list[CallRecord]) -> str:
    """The earlier try's calls for a log line: destination (masked as configured), UUID, status."""
    return "; ".join(
        f"{loggable(masked_number(record.to or None))} "
        f"({loggable(record.call_uuid or record.request_uuid)}): "
        f"{loggable(record.status)}"
        for record in previous
    )


@dataclass(frozen=True, kw_only=True)
class Resume:
    """What a new try does about the calls of an earlier try (:func:`decide_resume`).

    :param action: ``wait`` for a call still up, ``return`` the calls that succeeded, ``report`` (fail
        with) the outcome of calls that failed but whose outcome no try reported yet, or ``dial`` again.
    :param calls: The earlier try's calls.
    :param message: The log line saying so.
    """

    action: Literal["wait", "return", "report", "dial"]
    calls: list[CallRecord]
    message: str


def decide_resume(
    previous: list[CallRecord],
    *,
    try_number: int,
    rule: SuccessRule,
    redial: str = "failed",
    settled: bool = True,
) -> Resume:
    """Re-attach to a call still up, return one that succeeded (unless ``redial="always"``), report the
    outcome of a failed call nobody reported (the try that placed it died first), else dial.

    :param previous: The calls of the newest earlier try (:func:`previous_attempt`), not empty.
    :param try_number: The current try.
    :param rule: What counts as success.
    :param redial: ``failed`` (default) or ``always``.
    :param settled: Whether a try already reported how these calls ended (the ledger's ``settled_at`` of
        their placement); a try that died while waiting did not, and its failed call is then this try's
        outcome rather than a reason to dial again.
    """
    earlier = previous[0].try_number
    described = _describe(previous)
    if not all(record.terminal for record in previous):
        return Resume(
            action="wait",
            calls=previous,
            message=f"Try {try_number}: the call placed by try {earlier} is still up ({described}); waiting "
            "for it instead of dialling again",
        )
    if all(rule.succeeded(record.to_event()) for record in previous):
        if redial != "always":
            return Resume(
                action="return",
                calls=previous,
                message=f"Try {try_number}: the call placed by try {earlier} already ended successfully "
                f"({described}); returning its outcome without dialling again (redial={redial!r})",
            )
        return Resume(
            action="dial",
            calls=previous,
            message=f"Try {try_number}: the call placed by try {earlier} ended successfully ({described}), "
            "but redial='always': dialling again",
        )
    if not settled:
        return Resume(
            action="report",
            calls=previous,
            message=f"Try {try_number}: the call placed by try {earlier} ended without success "
            f"({described}) but try {earlier} died before reporting it; reporting that outcome instead of "
            "dialling again (the next retry dials)",
        )
    return Resume(
        action="dial",
        calls=previous,
        message=f"Try {try_number}: the call placed by try {earlier} did not succeed ({described}); "
        "dialling again",
    )


def decide_fired_resume(
    previous: list[CallRecord],
    *,
    try_number: int,
    rule: SuccessRule,
    redial: str = "failed",
    settled: bool = True,
) -> Resume:
    """:func:`decide_resume` for ``wait_for_completion=False``, where a try succeeds once Vobiz accepted
    its call (the task never learns how the call ends; the ledger may, e.g. from a ``VobizCallSensor``).

    An earlier try that died before returning (``settled`` false) would have returned its call: so does
    this try, without dialling, whatever the call became and whatever ``redial`` says - dialling now is
    exactly the double dial. Once a try returned its call (a clear, or a retry for another reason), the
    waiting modes' rules apply to what the ledger knows: a call known to have ended without success is
    dialled again; a call that succeeded, or whose end is not known (it may still ring), is returned -
    ``redial="always"`` dials again instead.

    :param previous: The calls of the newest earlier try (:func:`previous_attempt`), not empty.
    :param try_number: The current try.
    :param rule: What counts as success.
    :param redial: ``failed`` (default) or ``always``.
    :param settled: Whether the earlier try returned its calls (its placement's ``settled_at``).
    """
    earlier = previous[0].try_number
    described = _describe(previous)
    if not settled:
        return Resume(
            action="return",
            calls=previous,
            message=f"Try {try_number}: try {earlier} placed the call ({described}) but died before "
            "returning it; returning it without dialling again",
        )
    if all(record.terminal for record in previous) and not all(
        rule.succeeded(record.to_event()) for record in previous
    ):
        return Resume(
            action="dial",
            calls=previous,
            message=f"Try {try_number}: the call placed by try {earlier} did not succeed ({described}); "
            "dialling again",
        )
    if redial == "always":
        return Resume(
            action="dial",
            calls=previous,
            message=f"Try {try_number}: try {earlier} placed a call ({described}), but redial='always': "
            "dialling again",
        )
    return Resume(
        action="return",
        calls=previous,
        message=f"Try {try_number}: try {earlier} already placed the call ({described}) and it did not "
        f"fail; returning it without dialling again (redial={redial!r})",
    )


@dataclass(frozen=True, kw_only=True)
class TryHistory:
    """The earlier tries of one task instance, as the ledger knows them, for the try now running.

    :param ledger: The call ledger.
    :param correlation: The try now running.
    :param rule: What counts as success.
    :param redial: ``failed`` or ``always`` (see ``VobizCallOperator``).
    :param log: Where the decision is logged (the task's logger).
    """

    ledger: PlacementLedger
    correlation: CorrelationToken
    rule: SuccessRule
    redial: str
    log: _Log

    def resume_waiting(self) -> Resume | None:
        """What a waiting try does about the newest earlier try's calls (``None``: there are none).

        :raises VobizCallFailedError: for ``report``: the earlier call's outcome, now reported (settled).
        """
        previous = previous_attempt(self.ledger, self.correlation)
        if not previous:
            return None
        resume = decide_resume(
            previous,
            try_number=self.correlation.try_number,
            rule=self.rule,
            redial=self.redial,
            settled=self.settled(previous[0].try_number),
        )
        self.log.info("%s", resume.message)
        if resume.action == "report":
            calls = [record.to_event() for record in previous]
            self.settle(calls)
            raise VobizCallFailedError(
                "; ".join(
                    self.rule.describe_failure(call) for call in calls if not self.rule.succeeded(call)
                ),
                calls=calls,
            )
        return resume

    def resume_firing(self) -> Resume | None:
        """What a ``wait_for_completion=False`` try does about the newest earlier try's calls (``None``:
        there are none). A call returned for a try that died before returning it is marked settled now,
        so the next retry applies the rules of a returned call."""
        previous = previous_attempt(self.ledger, self.correlation)
        if not previous:
            return None
        settled = self.settled(previous[0].try_number)
        resume = decide_fired_resume(
            previous,
            try_number=self.correlation.try_number,
            rule=self.rule,
            redial=self.redial,
            settled=settled,
        )
        self.log.info("%s", resume.message)
        if resume.action == "return" and not settled:
            self.settle([record.to_event() for record in previous])
        return resume

    def settled(self, try_number: int | None) -> bool:
        """Whether the outcome of ``try_number``'s calls was reported (its placement's ``settled_at``); a
        try with no placement of its own (calls recorded by older code) counts as settled."""
        if try_number is None:
            return True
        state = self.ledger.last_placement(self.correlation.ti_key, before_try=try_number + 1)
        return state is None or state.try_number != try_number or state.settled_at is not None

    def settle(self, calls: Sequence[Mapping[str, Any]]) -> None:
        """:func:`settle_calls` in this history's ledger."""
        settle_calls(self.ledger, calls, log=self.log)


def settle_calls(ledger: PlacementLedger, calls: Sequence[Mapping[str, Any]], *, log: _Log) -> None:
    """Record in the ledger that these calls' outcome was reported: the next retry dials again, rather than
    report it a second time (best effort: without it, the next retry reports it once more).

    :param ledger: The call ledger.
    :param calls: The calls (``CallRecord.to_event()`` dicts, or ``{"request_uuid": ...}``).
    :param log: Where to warn when the ledger cannot be written.
    """
    uuids = [uuid for call in calls for uuid in (call.get("request_uuid"), call.get("call_uuid")) if uuid]
    try:
        ledger.settle_calls(uuids)
    except Exception as exc:
        log.warning(
            "Could not record in the Vobiz call ledger that the call's outcome was reported (%s: %s)",
            type(exc).__name__,
            exc,
        )
