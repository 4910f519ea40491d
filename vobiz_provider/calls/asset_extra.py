"""A call's outcome as the ``extra`` of the asset events its task emits (``outlets=[Asset(...)]``).

Airflow 3 sends the asset events of a task when the task *succeeds*: whatever the task wrote into
``context["outlet_events"][asset].extra`` during the try that succeeded goes with them. After a deferral the
task resumes in a new process with a new context (``execute_complete``), and the events are collected from
that context, so the extra is written where the outcome is known: in ``execute_complete`` (deferrable and
in-worker alike, the in-worker wait ends there too) or where a retry returns an earlier try's call. A task
that fails emits no asset event, so a failed call (with the default ``success_statuses``) never schedules
a downstream DAG; widen ``success_statuses`` (``("completed", "busy", "no-answer")``) for every outcome.

The extra of one call (several destinations: the first call's fields, plus ``calls`` with each)::

    {"vobiz": 1, "status": "completed", "hangup_cause_code": 4000, "hangup_cause_name": "Normal Hangup",
     "duration": 23, "digits": "2", "to": "+91******3210", "from_number": "+1******0100",
     "call_uuid": "...", "request_uuid": "...",
     "dag_id": "...", "run_id": "...", "task_id": "call", "map_index": 3, "try_number": 1,
     "calls": [{...the same per call...}], **outlet_extra}

**Phone numbers are masked** as in logs (:mod:`vobiz_provider.phone_masking`, ``[vobiz] mask_phone_numbers``):
unlike XCom, which only the DAG's own tasks read, an asset event is read by every DAG scheduled on the asset
and shown in the UI to everyone who may see the asset, and it is kept in the metadata database for as long as
the asset's history. To tell the downstream DAG *who* was called, pass your own key (a patient id, not the
number) with the operator's ``outlet_extra`` argument; it is merged into every outlet's extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from vobiz_provider.phone_masking import masked_number

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = ["EXTRA_FORMAT", "attach_outcome", "call_extra", "check_outlet_extra", "outcome_extra"]

#: Version of the extra's shape (key ``vobiz``), for downstream DAGs that want to check it.
EXTRA_FORMAT: Final = 1

#: The call-record keys copied into the extra, as they are.
_COPIED: Final = (
    "status",
    "hangup_cause_code",
    "hangup_cause_name",
    "duration",
    "digits",
    "call_uuid",
    "request_uuid",
)
#: The task-instance keys (from the call record, else from the task instance).
_IDENTITY: Final = ("dag_id", "run_id", "task_id", "map_index", "try_number")
#: The phone-number keys, masked as logs show them.
_NUMBERS: Final = ("to", "from_number")


def check_outlet_extra(task_id: str, outlet_extra: Any) -> dict[str, Any] | None:
    """``outlet_extra`` checked at DAG-parse time: ``None`` or a dict with string keys (values may be
    templates, rendered when the task runs).

    :param task_id: The task, named in the error.
    :param outlet_extra: The operator's argument.
    :raises ValueError: When it is neither.
    """
    if outlet_extra is None:
        return None
    if not isinstance(outlet_extra, dict) or not all(isinstance(key, str) for key in outlet_extra):
        kind = type(outlet_extra).__name__
        raise ValueError(f"Task {task_id!r}: outlet_extra must be a dict with string keys, got {kind}")
    return dict(outlet_extra)


def call_extra(call: Mapping[str, Any]) -> dict[str, Any]:
    """The extra of one call record (:meth:`~vobiz_provider.models.record.CallRecord.to_event`), numbers
    masked per ``[vobiz] mask_phone_numbers``.

    :param call: The call record as the task's XCom holds it.
    """
    extra: dict[str, Any] = {key: call.get(key) for key in _COPIED}
    for key in _NUMBERS:
        value = call.get(key)
        extra[key] = None if value is None else masked_number(value)
    return extra


def outcome_extra(
    calls: Sequence[Mapping[str, Any]],
    *,
    identity: Mapping[str, Any],
    outlet_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole extra of the task's asset events for ``calls`` (see the module docstring).

    :param calls: The task's call records (one per destination), not empty.
    :param identity: ``dag_id``, ``run_id``, ``task_id``, ``map_index``, ``try_number`` of the task
        instance (used where a record lacks them).
    :param outlet_extra: The DAG author's own keys, merged last (they win over the provider's).
    :raises ValueError: When ``calls`` is empty.
    """
    if not calls:
        raise ValueError("outcome_extra needs at least one call record")
    per_call = [call_extra(call) for call in calls]
    first = calls[0]
    extra: dict[str, Any] = {"vobiz": EXTRA_FORMAT, **per_call[0]}
    for key in _IDENTITY:
        value = first.get(key)
        extra[key] = value if value is not None else identity.get(key)
    extra["calls"] = per_call
    if outlet_extra:
        extra.update(outlet_extra)
    return extra


def _identity(context: Mapping[str, Any]) -> dict[str, Any]:
    ti = context.get("ti")
    if ti is None:
        return {}
    map_index = getattr(ti, "map_index", None)
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": -1 if map_index is None else map_index,
        "try_number": getattr(ti, "try_number", None),
    }


def _assets(outlets: Iterable[Any]) -> list[Any]:
    """The outlets that take an extra: assets (and references to them); aliases need ``add()`` instead."""
    from airflow.sdk import Asset, AssetAlias  # Airflow's asset classes: execute time only

    return [outlet for outlet in outlets if not isinstance(outlet, AssetAlias) and isinstance(outlet, Asset)]


def attach_outcome(
    context: Mapping[str, Any],
    outlets: Iterable[Any],
    calls: Sequence[Mapping[str, Any]],
    *,
    outlet_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Write the outcome of ``calls`` into the extra of every asset in ``outlets``; returns the extra
    written (``None`` when the task has no asset outlet, or no call to describe).

    :param context: The task context (its ``outlet_events`` and ``ti``).
    :param outlets: The task's ``outlets``.
    :param calls: The task's call records.
    :param outlet_extra: The DAG author's own keys (see :func:`outcome_extra`).
    """
    assets = _assets(outlets)
    if not assets or not calls:
        return None
    extra = outcome_extra(calls, identity=_identity(context), outlet_extra=outlet_extra)
    events = context["outlet_events"]
    for asset in assets:
        events[asset].extra.update(extra)
    return extra
