"""What calls say when answered: the :class:`~vobiz_provider.models.answer.AnswerSpec` of each try.

The operator and the notifier save a try's spec before dialling (:meth:`Answers.save_answer`); the
receiver loads it when Vobiz fetches the answer URL or posts the keys pressed, and only for a call of that
try that is still up (:meth:`Answers.load_answer_for_call`): a callback URL cannot read the message of
a call that ended, or of a call its try did not place. Keyed by the task instance and its try, so a new
try stores its own spec and saving again for the same try replaces it; the message itself never travels in
a URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from vobiz_provider.ledger.database import LedgerPart
from vobiz_provider.ledger.rows import check_lengths, text, utcnow
from vobiz_provider.ledger.schema import answers, calls
from vobiz_provider.models.answer import AnswerSpec

if TYPE_CHECKING:
    import datetime as dt

    from sqlalchemy.engine import Connection

    from vobiz_provider.correlation import CorrelationToken

__all__ = ["AnswerEntry", "Answers"]


@dataclass(frozen=True, kw_only=True)
class AnswerEntry:
    """A stored answer spec (:meth:`Answers.load_answer_entry`).

    :param spec: What the call says and gathers.
    :param callback_base_url: The receiver root the call's callbacks were pointed at, if recorded.
    :param created_at: When it was stored (UTC).
    """

    spec: AnswerSpec
    callback_base_url: str | None
    created_at: dt.datetime


class Answers(LedgerPart):
    """The ``vobiz_answers`` table."""

    def save_answer(
        self, correlation: CorrelationToken, spec: AnswerSpec, *, callback_base_url: str | None = None
    ) -> None:
        """Store what the call placed under ``correlation`` says when answered (idempotent upsert).

        :param correlation: The call's correlation token (its task instance and try are the key).
        :param spec: The message and keypad prompt.
        :param callback_base_url: The receiver root the call's callbacks go to (the Gather action uses it).
        """
        base = text(callback_base_url)
        check_lengths(
            [
                ("ti_key", answers.c.ti_key, correlation.ti_key),
                ("callback_base_url", answers.c.callback_base_url, base),
            ]
        )
        values = {"spec": spec.to_json(), "callback_base_url": base, "created_at": utcnow()}

        def work(conn: Connection) -> None:
            statement = self._db.insert(answers).values(
                ti_key=correlation.ti_key, try_number=correlation.try_number, **values
            )
            conn.execute(
                statement.on_conflict_do_update(index_elements=["ti_key", "try_number"], set_=values)
            )

        self._db.run(work, write=True)

    def load_answer_entry(self, correlation: CorrelationToken) -> AnswerEntry | None:
        """The stored answer of ``correlation``'s task instance and try, with its receiver root, or ``None``.

        :param correlation: The try.
        """
        row = self._db.run(lambda conn: _answer_row(conn, correlation), write=False)
        return _entry(row) if row is not None else None

    def load_answer_for_call(
        self, correlation: CorrelationToken, *, call_uuid: str | None, request_uuid: str | None = None
    ) -> AnswerEntry | None:
        """The stored answer of ``correlation``'s try, if the call named is one of its calls still up.

        ``None`` when the try stored no answer, or when no call of the try with that ``CallUUID`` (or,
        lacking one, ``RequestUUID``) is in the ledger and not ended.

        :param correlation: The verified correlation token of the answer or gather request.
        :param call_uuid: The request's ``CallUUID``.
        :param request_uuid: The request's ``RequestUUID``.
        """
        if not call_uuid and not request_uuid:
            return None
        matches = calls.c.call_uuid == call_uuid if call_uuid else calls.c.request_uuid == request_uuid
        live = (
            sa.select(calls.c.id)
            .where(
                calls.c.ti_key == correlation.ti_key,
                calls.c.try_number == correlation.try_number,
                calls.c.terminal.is_(False),
                matches,
            )
            .limit(1)
        )

        def work(conn: Connection) -> Any:
            return _answer_row(conn, correlation) if conn.execute(live).first() is not None else None

        row = self._db.run(work, write=False)
        return _entry(row) if row is not None else None


def _answer_row(conn: Connection, correlation: CorrelationToken) -> Any:
    statement = sa.select(answers.c.spec, answers.c.callback_base_url, answers.c.created_at).where(
        answers.c.ti_key == correlation.ti_key, answers.c.try_number == correlation.try_number
    )
    return conn.execute(statement).mappings().first()


def _entry(row: Any) -> AnswerEntry:
    spec = row["spec"]
    return AnswerEntry(
        spec=AnswerSpec.model_validate(json.loads(spec) if isinstance(spec, str) else spec),
        callback_base_url=row["callback_base_url"],
        created_at=row["created_at"],
    )
