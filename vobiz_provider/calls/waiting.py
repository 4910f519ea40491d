"""How long a task waits for its call's hangup, and when it stops trusting the callbacks.

The deadline is absolute (epoch seconds), so a triggerer restart rebuilds the same wait without resetting it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from vobiz_provider.calls.templating import positive_seconds

__all__ = ["DEFAULT_RING_TIMEOUT", "DEFAULT_TIME_LIMIT", "WaitWindow", "wait_in_worker"]

#: Seconds Vobiz rings before giving up when ``ring_timeout`` is not set (hangup cause 6010).
DEFAULT_RING_TIMEOUT: Final = 120
#: Vobiz's default ``time_limit``: the longest a call may last after it is answered, in seconds.
DEFAULT_TIME_LIMIT: Final = 14400
#: Seconds added to ring timeout + time limit to make the default wait timeout.
TIMEOUT_MARGIN: Final = 300
#: Seconds after the latest expected hangup at which the trigger asks the Vobiz API instead of waiting on.
RECONCILE_MARGIN: Final = 60.0
#: Seconds the deferral timeout exceeds the trigger's own deadline (which ends the wait with a clear event).
DEFER_TIMEOUT_GRACE: Final = 60.0
#: Seconds past ``execution_timeout`` after which the in-worker wait ends itself, should Airflow's timeout
#: signal have been lost (it normally ends the task first).
EXECUTION_TIMEOUT_GRACE: Final = 1.0


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, kw_only=True)
class WaitWindow:
    """When a wait for a call's hangup ends, and when it asks the API instead of waiting on.

    :param timeout: The longest wait, in seconds.
    :param deadline: Absolute end of the wait (epoch seconds).
    :param reconcile_after: Absolute time after which a missing hangup is asked of the Vobiz API.
    """

    timeout: float
    deadline: float
    reconcile_after: float

    @classmethod
    def starting_now(
        cls, *, timeout: float | timedelta | None, ring_timeout: Any = None, time_limit: Any = None
    ) -> WaitWindow:
        """The window of a call placed now.

        :param timeout: The task's ``timeout``; default ring timeout (or 120 s) + time limit (or 14,400 s)
            + 300 s.
        :param ring_timeout: The call's ``ring_timeout``.
        :param time_limit: The call's ``time_limit``.
        """
        ring = _as_int(ring_timeout) or DEFAULT_RING_TIMEOUT
        limit = _as_int(time_limit) or DEFAULT_TIME_LIMIT
        total = positive_seconds(timeout) if timeout is not None else float(ring + limit + TIMEOUT_MARGIN)
        now = time.time()
        deadline = now + total
        # Ask the API once the hangup is overdue, but early enough to settle before the deadline.
        reconcile_after = min(now + ring + limit + RECONCILE_MARGIN, deadline - min(60.0, total / 5))
        return cls(timeout=total, deadline=deadline, reconcile_after=reconcile_after)

    def defer_timeout(self, poll_interval: float) -> timedelta:
        """The deferral's timeout: the trigger ends the wait at the deadline; this covers a lost trigger.

        :param poll_interval: The trigger's poll interval.
        """
        return timedelta(seconds=self.timeout + max(poll_interval, 1.0) + DEFER_TIMEOUT_GRACE)


def wait_in_worker(
    trigger: Any, *, task_id: str, execution_timeout: timedelta | None, started_at: float
) -> dict[str, Any] | None:
    """Run ``trigger`` in this process for at most ``execution_timeout`` (and a grace) since ``started_at``.

    Airflow ends a task at its ``execution_timeout`` with a signal whose exception is raised wherever the
    task is; raised inside a garbage collector's callback, it is printed and lost, and the wait would go on
    to its own deadline. So the wait also ends itself, with the exception Airflow would have raised (Airflow
    then calls the operator's ``on_kill``, which hangs up when ``hangup_on_kill``).

    :param trigger: A :class:`~vobiz_provider.triggers.hangup.VobizCallHangupTrigger`.
    :param task_id: The task's id, for the message.
    :param execution_timeout: The task's ``execution_timeout``; ``None``: no bound but the trigger's own.
    :param started_at: Epoch seconds at which ``execute()`` began (Airflow starts its clock just before).
    :raises AirflowTaskTimeout: At ``execution_timeout`` + :data:`EXECUTION_TIMEOUT_GRACE`.
    """
    if execution_timeout is None:
        result: dict[str, Any] | None = trigger.run_in_process()
        return result
    seconds = execution_timeout.total_seconds()
    try:
        result = trigger.run_in_process(give_up_at=started_at + seconds + EXECUTION_TIMEOUT_GRACE)
    except TimeoutError:
        from airflow.sdk.exceptions import AirflowTaskTimeout

        raise AirflowTaskTimeout(
            f"Task {task_id!r} ran past its execution_timeout ({seconds:g} s) while waiting for the Vobiz "
            "call to hang up"
        ) from None
    return result
