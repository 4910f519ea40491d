"""Calls and their legs: one ``vobiz_calls`` row per destination of a Make-Call request.

A row is created by whichever comes first: the operator recording the calls it fired
(:meth:`Calls.register_fired_calls`), a callback (:mod:`~vobiz_provider.ledger.ingest`) or a state
learnt from the Vobiz API (:meth:`Calls.cache_api_result`). Later observations are merged into it
(:func:`~vobiz_provider.ledger.rows.merge`) by ``Calls._merge_into_call``, which finds the row by call UUID,
by leg (``request_uuid|destination``) or, for a single-destination request, by request UUID.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from vobiz_provider.ledger.database import Conflict, LedgerPart
from vobiz_provider.ledger.placements import mark_registered
from vobiz_provider.ledger.rows import (
    CALL_COLUMN_SET,
    OVERWRITE_BY_KIND,
    api_result_values,
    check_lengths,
    chunks,
    correlation_values,
    merge,
    new_call_row,
    text,
    to_call_record,
    utcnow,
)
from vobiz_provider.ledger.schema import calls
from vobiz_provider.models.call import TERMINAL_STATUSES
from vobiz_provider.models.record import leg_key, status_for_hangup_cause

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection, RowMapping

    from vobiz_provider.correlation import CorrelationToken
    from vobiz_provider.models.record import CallRecord

__all__ = ["Calls"]


def _pair(request_uuids: Sequence[str], destinations: Sequence[str]) -> list[tuple[str, str]]:
    if isinstance(request_uuids, str) or isinstance(destinations, str):
        raise TypeError("request_uuids and destinations must be sequences of strings, not a string")
    requests = [text(value) for value in request_uuids]
    targets = [text(value) for value in destinations]
    if not requests or any(value is None for value in requests):
        raise ValueError("register_fired_calls needs at least one non-empty request_uuid")
    if not targets or any(value is None for value in targets):
        raise ValueError("register_fired_calls needs at least one non-empty destination")
    if len(requests) == len(targets):
        return list(zip(requests, targets, strict=True))  # type: ignore[arg-type]
    if len(requests) == 1:
        return [(requests[0], destination) for destination in targets]  # type: ignore[misc]
    raise ValueError(
        f"register_fired_calls got {len(requests)} request_uuids for {len(targets)} destinations; "
        "expected one per destination or a single one for all"
    )


class Observation(Protocol):
    """What :meth:`Calls._apply_to_calls` reads of a stored callback
    (:class:`~vobiz_provider.ledger.ingest.PreparedCallback`)."""

    @property
    def kind(self) -> str: ...
    @property
    def values(self) -> dict[str, Any]: ...
    @property
    def status(self) -> str | None: ...


def _idents(item: Observation) -> tuple[str | None, str | None, str | None]:
    values = item.values
    request = values["request_uuid"]
    return values["call_uuid"], leg_key(request, values.get("destination")), request


def _select_for_update(conn: Connection, *conditions: Any, limit: int = 1) -> list[dict[str, Any]]:
    statement = sa.select(calls).where(*conditions).with_for_update().limit(limit)
    return [dict(row) for row in conn.execute(statement).mappings()]


class Calls(LedgerPart):
    """The calls of the ledger: their rows, how observations merge into them, and how they are read."""

    def _init_calls(self) -> None:
        # Built once and run with parameters: a callback's write path runs them per call.
        self._update = calls.update().where(calls.c.id == sa.bindparam("b_id"))
        self._insert = self._db.insert(calls).on_conflict_do_nothing()
        self._by_call_uuid = (
            sa.select(calls).where(calls.c.call_uuid == sa.bindparam("b_value")).with_for_update().limit(1)
        )
        self._by_leg = (
            sa.select(calls).where(calls.c.leg_key == sa.bindparam("b_value")).with_for_update().limit(1)
        )
        self._insert_calls = self._db.insert(calls).on_conflict_do_nothing().returning(calls.c.id)
        self._known_calls = (
            sa.select(calls)
            .where(
                sa.or_(
                    calls.c.call_uuid.in_(sa.bindparam("b_call_uuids", expanding=True)),
                    calls.c.leg_key.in_(sa.bindparam("b_leg_keys", expanding=True)),
                    calls.c.request_uuid.in_(sa.bindparam("b_request_uuids", expanding=True)),
                )
            )
            .with_for_update()
        )

    # -- merging ----------------------------------------------------------------------------------------

    def _merge_into_call(
        self,
        conn: Connection,
        values: dict[str, Any],
        *,
        status: str | None,
        insert_status: str,
        source: str,
        now: dt.datetime,
        overwrite: frozenset[str] = frozenset(),
        locked: bool = False,
    ) -> dict[str, Any] | None:
        """Find (or create) the call row that ``values`` describe and merge them in; a copy of the row
        afterwards (``None`` when ``values`` name no call).

        :param conn: The caller's transaction.
        :param values: The call columns observed.
        :param status: The status they report (``None``: they do not move the call).
        :param insert_status: The status of a row created for them.
        :param source: ``callback``, ``fired`` or ``api``.
        :param now: The transaction's clock (``updated_at``).
        :param overwrite: Detail columns this observation replaces on a live call.
        :param locked: The caller already holds the PostgreSQL advisory locks of its UUIDs.
        """
        call_uuid = values.get("call_uuid")
        request_uuid = values.get("request_uuid")
        if not call_uuid and not request_uuid:
            return None
        leg = leg_key(request_uuid, values.get("destination"))
        if not locked:
            self._db.lock(conn, (request_uuid, call_uuid))

        row = self._first(conn, self._by_call_uuid, call_uuid) if call_uuid else None
        if row is not None and leg and row["leg_key"] is None:
            # A row for this call exists without its leg (its first callback lacked To/RequestUUID), and
            # register_fired_calls made a placeholder for the leg: fold the placeholder into the call's row.
            for placeholder in _select_for_update(conn, calls.c.leg_key == leg, calls.c.call_uuid.is_(None)):
                conn.execute(calls.delete().where(calls.c.id == placeholder["id"]))
                fired = {column: value for column, value in placeholder.items() if column != "id"}
                absorbed = merge(row, fired, status=placeholder["status"], source=placeholder["source"])
                if absorbed:
                    absorbed["updated_at"] = now  # the trigger poller reads rows by updated_at
                    row.update(absorbed)
                    conn.execute(self._update, {"b_id": row["id"], **absorbed})
        if row is None and leg:
            candidate = self._first(conn, self._by_leg, leg)
            if candidate is not None and candidate["call_uuid"] in (None, call_uuid):
                row = candidate
            elif candidate is not None:
                leg = None  # another call to the same destination within the same request
        if row is None and request_uuid and call_uuid:
            # A single-destination request whose To was spelt differently in register_fired_calls.
            candidates = _select_for_update(conn, calls.c.request_uuid == request_uuid, limit=2)
            if len(candidates) == 1 and candidates[0]["call_uuid"] is None:
                row = candidates[0]

        if row is None:
            new_row = new_call_row(values, leg=leg, status=insert_status, source=source, now=now)
            if conn.execute(self._insert, new_row).rowcount == 0:
                raise Conflict("a call row appeared while its writer held the locks")
            return new_row

        values = {column: value for column, value in values.items() if column in CALL_COLUMN_SET}
        if leg and not row["leg_key"] and self._first(conn, self._by_leg, leg) is None:
            # Only a leg no other call holds (leg_key is UNIQUE: taking another call's leg failed the
            # transaction on every retry).
            values["leg_key"] = leg
        changes = merge(row, values, status=status, source=source, overwrite=overwrite)
        if changes:
            changes["updated_at"] = now
            conn.execute(self._update, {"b_id": row["id"], **changes})
            row.update(changes)
        return dict(row)

    def _load_known(self, conn: Connection, items: Sequence[Observation]) -> list[dict[str, Any]]:
        """The stored calls (whole rows) the items name, by call UUID, leg or request UUID (one query)."""
        idents = [_idents(item) for item in items]
        rows = conn.execute(
            self._known_calls,
            {
                "b_call_uuids": sorted({call for call, _, _ in idents if call}),
                "b_leg_keys": sorted({leg for _, leg, _ in idents if leg}),
                "b_request_uuids": sorted({request for _, _, request in idents if request}),
            },
        ).mappings()
        return [dict(row) for row in rows]

    def _apply_to_calls(
        self,
        conn: Connection,
        items: Sequence[Observation],
        known: Sequence[dict[str, Any]],
        *,
        now: dt.datetime,
    ) -> list[dict[str, Any] | None]:
        """Apply stored callbacks to their calls, in order (the caller holds the locks); each one's call row
        as it left it (a copy: a later item of the batch may change the row again), ``None`` for one that
        names no call.

        One statement per kind of write for the whole batch: calls new to the ledger and to the batch are
        inserted at once, and a callback that is the first news of a fired call (its leg's row, not yet
        holding a call UUID) is merged in Python and written with the others in one ``executemany``.
        Everything else (a call seen before, or named twice in the batch) goes through
        ``_merge_into_call``, in order.

        :param known: The stored calls the batch names (:meth:`_load_known`).
        """
        if not items:
            return []
        idents = [_idents(item) for item in items]
        taken: dict[tuple[str, str], int] = {}
        for row in known:
            for name, value in (("c", row["call_uuid"]), ("l", row["leg_key"]), ("r", row["request_uuid"])):
                if value:
                    taken[(name, value)] = 2  # already stored: never a bulk insert
        in_batch: dict[tuple[str, str], int] = {}
        for call, leg, request in idents:
            for name, value in (("c", call), ("l", leg), ("r", request)):
                if value:
                    taken[(name, value)] = taken.get((name, value), 0) + 1
                    in_batch[(name, value)] = in_batch.get((name, value), 0) + 1
        known_calls = {row["call_uuid"] for row in known if row["call_uuid"]}
        fired_legs = {row["leg_key"]: row for row in known if row["leg_key"] and not row["call_uuid"]}
        records: list[dict[str, Any] | None] = []
        new_rows: list[dict[str, Any]] = []
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for item, (call, leg, request) in zip(items, idents, strict=True):
            if not call and not request:
                records.append(None)
                continue
            # A machine detection or gather can only happen on an answered call.
            insert_status = item.status or "in-progress"
            named = [(name, value) for name, value in (("c", call), ("l", leg), ("r", request)) if value]
            if all(taken.get(key, 0) == 1 for key in named):
                row = new_call_row(item.values, leg=leg, status=insert_status, source="callback", now=now)
                new_rows.append(row)
                records.append(row)  # not changed again: the call is named once in the batch
                continue
            fired = fired_legs.get(leg) if call and leg and call not in known_calls else None
            if fired is not None and all(in_batch[key] == 1 for key in named):
                # What _merge_into_call would do: no row holds the call UUID, the leg's row is found.
                values = {column: value for column, value in item.values.items() if column in CALL_COLUMN_SET}
                overwrite = OVERWRITE_BY_KIND.get(item.kind, frozenset())
                changes = merge(fired, values, status=item.status, source="callback", overwrite=overwrite)
                if changes:
                    changes["updated_at"] = now
                    updates.setdefault(tuple(sorted(changes)), []).append({"b_id": fired["id"], **changes})
                    fired.update(changes)
                records.append(dict(fired))
                continue
            records.append(
                self._merge_into_call(
                    conn,
                    dict(item.values),
                    status=item.status,
                    insert_status=insert_status,
                    source="callback",
                    overwrite=OVERWRITE_BY_KIND.get(item.kind, frozenset()),
                    now=now,
                    locked=True,
                )
            )
        for rows in updates.values():
            conn.execute(self._update, rows)
        if new_rows and len(conn.execute(self._insert_calls, new_rows).all()) != len(new_rows):
            raise Conflict("a call row appeared while its writer held the locks")
        return records

    @staticmethod
    def _first(conn: Connection, statement: Any, value: str) -> dict[str, Any] | None:
        row = conn.execute(statement, {"b_value": value}).mappings().first()
        return dict(row) if row is not None else None

    # -- writes -----------------------------------------------------------------------------------------

    def register_fired_calls(
        self,
        *,
        request_uuids: Sequence[str],
        destinations: Sequence[str],
        from_number: str | None = None,
        correlation: CorrelationToken | None = None,
    ) -> None:
        """Record the calls of one accepted Make-Call request, as ``queued`` (idempotent).

        This binds them to ``correlation``'s try: from now on the receiver stores the callbacks of these
        calls (and of no other) from that try's URLs (:mod:`~vobiz_provider.ledger.binding`).

        One row per destination. With one request UUID per destination they are paired in order; a single
        request UUID for several destinations (bulk dial) goes on every row. A row a callback already
        created for the same leg is completed instead (callbacks can arrive before this is called).

        :param request_uuids: ``CallFiredResponse.request_uuids``.
        :param destinations: The destinations, in the order of the request's ``to``.
        :param from_number: The caller ID used.
        :param correlation: The task instance (and try) that placed the call.
        """
        pairs = _pair(request_uuids, destinations)
        caller = text(from_number)
        check_lengths(
            [("from_number", calls.c.from_number, caller)]
            + [("request_uuid", calls.c.request_uuid, request_uuid) for request_uuid, _ in pairs]
            + [("to", calls.c.destination, destination) for _, destination in pairs]
        )
        ti_values = correlation_values(correlation)
        per_request: dict[str, int] = {}
        for request_uuid, _ in pairs:
            per_request[request_uuid] = per_request.get(request_uuid, 0) + 1

        def work(conn: Connection) -> None:
            self._db.lock(conn, per_request)
            now = utcnow()
            existing = [
                dict(row)
                for chunk in chunks(list(per_request))
                for row in conn.execute(
                    sa.select(calls).where(calls.c.request_uuid.in_(chunk)).with_for_update()
                ).mappings()
            ]
            by_leg = {row["leg_key"]: row for row in existing if row["leg_key"]}
            by_request: dict[str, list[dict[str, Any]]] = {}
            for existing_row in existing:
                by_request.setdefault(existing_row["request_uuid"], []).append(existing_row)
            new_rows: list[dict[str, Any]] = []
            new_legs: set[str | None] = set()
            for request_uuid, destination in pairs:
                leg = leg_key(request_uuid, destination)
                values = {
                    "request_uuid": request_uuid,
                    "destination": destination,
                    "from_number": caller,
                    "fired_at": now,
                    **ti_values,
                }
                row = by_leg.get(leg)
                if (
                    row is None
                    and per_request[request_uuid] == 1
                    and len(by_request.get(request_uuid, ())) == 1
                ):
                    # A callback came first and spelt the destination differently: it is this call.
                    row = by_request[request_uuid][0]
                if row is None:
                    if leg not in new_legs:  # the same destination twice in one request: one row per leg
                        new_legs.add(leg)
                        new_rows.append(
                            new_call_row(values, leg=leg, status="queued", source="fired", now=now)
                        )
                    continue
                changes = merge(row, {**values, "leg_key": leg}, status=None, source="fired")
                if changes.get("leg_key") in by_leg:
                    changes.pop("leg_key")
                if changes:
                    changes["updated_at"] = now
                    conn.execute(calls.update().where(calls.c.id == row["id"]).values(**changes))
            if new_rows:
                # The advisory locks (PostgreSQL) or the write lock (SQLite) rule out a concurrent insert
                # of these legs; ON CONFLICT only guards against a row made outside this provider's code.
                conn.execute(self._insert, new_rows)
            if correlation is not None:
                mark_registered(conn, self._db, correlation, destinations=len(pairs), now=now)

        self._db.run(work, write=True)

    def cache_api_result(self, record: CallRecord) -> None:
        """Store a state learned from the Vobiz API (CDR, live call), under the same monotonic rules.

        :param record: The state, with at least ``call_uuid`` or ``request_uuid``.
        """
        if not record.call_uuid and not record.request_uuid:
            raise ValueError("cache_api_result needs a record with a call_uuid or a request_uuid")
        status = record.status
        if record.terminal and status not in TERMINAL_STATUSES:
            status = status_for_hangup_cause(record.hangup_cause_code, record.hangup_cause)
        values = api_result_values(record)
        check_lengths((column, calls.c[column], value) for column, value in values.items())
        self._db.run(
            lambda conn: self._merge_into_call(
                conn, values, status=status, insert_status=status, source="api", now=utcnow()
            ),
            write=True,
        )

    # -- reads ------------------------------------------------------------------------------------------

    def lookup(
        self, *, request_uuids: Sequence[str] = (), call_uuids: Sequence[str] = ()
    ) -> list[CallRecord]:
        """The calls with any of these request or call UUIDs, in ONE query (per 30,000 UUIDs).

        A bulk request UUID returns one record per destination. Unknown UUIDs are simply absent.

        :param request_uuids: Request UUIDs returned by Make-Call.
        :param call_uuids: Call UUIDs.
        """
        items = [("r", value) for value in dict.fromkeys(request_uuids) if value]
        items += [("c", value) for value in dict.fromkeys(call_uuids) if value]
        if not items:
            return []

        def work(conn: Connection) -> list[CallRecord]:
            rows: dict[int, RowMapping] = {}
            for chunk in chunks(items):
                statement = sa.select(calls).where(uuid_conditions(chunk)).order_by(calls.c.id)
                for row in conn.execute(statement).mappings():
                    rows[row["id"]] = row
            return [to_call_record(rows[key]) for key in sorted(rows)]

        return self._db.run(work, write=False)

    def find_attempts(
        self, *, dag_id: str, run_id: str, task_id: str, map_index: int = -1, before_try: int | None = None
    ) -> list[CallRecord]:
        """The calls fired for this task instance by its tries, newest try first.

        Only calls a try recorded as fired (:meth:`register_fired_calls`), or calls of a request it fired:
        never a row that names the try without being its call.

        :param dag_id: DAG id.
        :param run_id: Run id.
        :param task_id: Task id.
        :param map_index: Map index (``-1`` when not mapped).
        :param before_try: Only tries before this one (pass the current try number).
        """
        ti_key = f"{dag_id}/{run_id}/{task_id}/{map_index}"

        def work(conn: Connection) -> list[CallRecord]:
            statement = sa.select(calls).where(calls.c.ti_key == ti_key)
            if before_try is not None:
                statement = statement.where(calls.c.try_number < before_try)
            statement = statement.order_by(calls.c.try_number.desc(), calls.c.id.desc())
            rows = list(conn.execute(statement).mappings())
            fired = {(row["try_number"], row["request_uuid"]) for row in rows if row["fired_at"] is not None}
            return [
                to_call_record(row)
                for row in rows
                if row["fired_at"] is not None or (row["try_number"], row["request_uuid"]) in fired
            ]

        return self._db.run(work, write=False)


def uuid_conditions(chunk: Sequence[tuple[str, str]]) -> Any:
    """``request_uuid IN (...) OR call_uuid IN (...)`` for ``("r"|"c", uuid)`` items."""
    conditions = []
    requests = [value for tag, value in chunk if tag == "r"]
    call_ids = [value for tag, value in chunk if tag == "c"]
    if requests:
        conditions.append(calls.c.request_uuid.in_(requests))
    if call_ids:
        conditions.append(calls.c.call_uuid.in_(call_ids))
    return sa.or_(*conditions)
