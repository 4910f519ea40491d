"""The callees of the scenarios with many calls (triggerer kill, cluster scale): realistic delays and mixed
outcomes, the same for a given index in every run."""

from __future__ import annotations

import random

from vobiz_provider.testing import CallScript

#: What destination ``index`` does, by ``index % 4``: the expected final status of its call.
OUTCOMES = ("completed", "busy", "completed", "no-answer")


def realistic_script(
    index: int,
    *,
    answer_after: tuple[float, float] = (2.0, 9.0),
    no_answer_after: tuple[float, float] = (10.0, 20.0),
) -> CallScript:
    """What the callee of destination ``index`` does once its call rings: half of the calls answered and
    spoken to (the call ends when the receiver's message has been said), a quarter busy, a quarter
    unanswered (giving up before the 60 s ring timeout).

    :param index: The destination's index (seeds its delays).
    :param answer_after: Range of seconds an answered call rings first.
    :param no_answer_after: Range of seconds an unanswered call rings before it gives up.
    """
    rng = random.Random(index)
    kind = OUTCOMES[index % 4]
    ring_after = rng.uniform(0.5, 2.0)
    if kind == "busy":
        return CallScript(outcome="busy", ring_after=ring_after, answer_after=rng.uniform(1.5, 5.0))
    if kind == "no-answer":
        return CallScript(
            outcome="no-answer", ring_after=ring_after, answer_after=rng.uniform(*no_answer_after)
        )
    return CallScript(
        outcome="completed",
        ring_after=ring_after,
        answer_after=rng.uniform(*answer_after),
        talk_for=None,
        media_seconds=rng.uniform(1.5, 4.0),
    )
