"""The calls page's web app, mounted by the plugin at :data:`~vobiz_provider.views.paths.VIEW_PATH`.

Routes (every one needs an Airflow login, :mod:`~vobiz_provider.views.access`)::

    GET /                      the table (HTML); filters: dag_id, run_id, task_id, map_index, status, since,
                               before (the cursor of the next page); with dag_id and run_id, the run's chart
    GET /calls/{call_uuid}     one call: its fields, timeline picture and raw callbacks (HTML)
    GET /api/calls             the same table as JSON ({"calls": [...], "next_cursor": ...}), plus limit
    GET /api/calls/{call_uuid} one call as JSON (record, timeline, callbacks)
    GET /api/runs/summary      a run's outcome counts (dag_id, run_id)

Calls of DAGs the user may not read are left out of every list and are "404 not found" one by one.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

from vobiz_provider.ledger.call_views import MAX_PAGE_SIZE, CallFilter, parse_age
from vobiz_provider.views.access import Viewer, current_user, viewer_of
from vobiz_provider.views.render import call_page, list_page

if TYPE_CHECKING:
    from vobiz_provider.ledger import CallBrowser
    from vobiz_provider.ledger.call_views import CallDetail, ListedCall

__all__ = ["create_app"]

_FILTER_NAMES = ("dag_id", "run_id", "task_id", "map_index", "status", "since")


def _viewer(user: Annotated[Any, Depends(current_user)]) -> Viewer:
    return viewer_of(user)


ViewerDep = Annotated[Viewer, Depends(_viewer)]


class _Filters:
    """The query's filters, checked: a bad value is a 422 with a message that says which."""

    def __init__(
        self,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int | None = None,
        status: str | None = None,
        since: str | None = None,
        before: int | None = Query(default=None, ge=1),
    ) -> None:
        self.raw = {
            name: str(value)
            for name, value in zip(
                _FILTER_NAMES, (dag_id, run_id, task_id, map_index, status, since), strict=True
            )
            if value not in (None, "")
        }
        self.before = before
        try:
            age = parse_age(since) if since else None
        except ValueError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        self.since = dt.datetime.now(dt.timezone.utc) - age if age else None
        self.dag_id, self.run_id, self.task_id = dag_id or None, run_id or None, task_id or None
        self.map_index, self.status = map_index, status or None

    def for_viewer(self, viewer: Viewer) -> CallFilter:
        return CallFilter(
            allowed_dag_ids=viewer.readable_dag_ids,
            dag_id=self.dag_id,
            run_id=self.run_id,
            task_id=self.task_id,
            map_index=self.map_index,
            status=self.status,
            since=self.since,
        )


FiltersDep = Annotated[_Filters, Depends()]


def _call_json(call: ListedCall, viewer: Viewer) -> dict[str, Any]:
    record = call.record
    data = record.model_dump(mode="json")
    data["to"] = viewer.number(record.to, record.dag_id) or None
    data["from_number"] = viewer.number(record.from_number, record.dag_id) or None
    data["placed_at"] = call.placed_at.isoformat() if call.placed_at else None
    return data


def _detail_json(detail: CallDetail, viewer: Viewer) -> dict[str, Any]:
    dag_id = detail.listed.record.dag_id
    callbacks = []
    for callback in detail.callbacks:
        fields = dict(callback.fields)
        for name in ("To", "From"):
            if isinstance(fields.get(name), str):
                fields[name] = viewer.number(fields[name], dag_id)
        callbacks.append(
            {
                "received_at": callback.received_at.isoformat(),
                "kind": callback.kind,
                "event": callback.event,
                "call_status": callback.call_status,
                "fields": fields,
            }
        )
    return {
        "call": _call_json(detail.listed, viewer),
        "timeline": [
            {"step": s.label, "at": s.at.isoformat(), "seconds_since_previous": s.seconds_since_previous}
            for s in detail.steps
        ],
        "callbacks": callbacks,
    }


def create_app(*, ledger: CallBrowser | None = None) -> FastAPI:
    """The calls page app.

    :param ledger: The ledger to read; ``[vobiz] callback_store`` (shared, :func:`get_ledger`) when omitted,
        opened at the first request.
    """
    app = FastAPI(
        title="Vobiz calls",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(current_user)],
    )

    def store() -> CallBrowser:
        if ledger is not None:
            return ledger
        from vobiz_provider.ledger import get_ledger

        return get_ledger()

    def detail_or_404(call_uuid: str, viewer: Viewer) -> CallDetail:
        detail = store().call_detail(call_uuid, allowed_dag_ids=viewer.readable_dag_ids)
        if detail is None:
            raise HTTPException(status_code=404, detail=f"no call {call_uuid[:64]!r} you may see")
        return detail

    @app.get("/", response_class=HTMLResponse)
    def calls_page(viewer: ViewerDep, filters: FiltersDep) -> HTMLResponse:
        ledger_ = store()
        page = ledger_.list_calls(filters.for_viewer(viewer), limit=50, before=filters.before)
        summary = None
        if filters.dag_id and filters.run_id and viewer.may_read(filters.dag_id):
            summary = ledger_.run_summary(filters.dag_id, filters.run_id)
        return HTMLResponse(list_page(page, viewer=viewer, filters=filters.raw, summary=summary))

    @app.get("/calls/{call_uuid}", response_class=HTMLResponse)
    def call_html(call_uuid: str, viewer: ViewerDep) -> HTMLResponse:
        return HTMLResponse(call_page(detail_or_404(call_uuid, viewer), viewer=viewer))

    @app.get("/api/calls")
    def calls_json(
        viewer: ViewerDep,
        filters: FiltersDep,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    ) -> dict[str, Any]:
        page = store().list_calls(filters.for_viewer(viewer), limit=limit, before=filters.before)
        return {
            "calls": [_call_json(call, viewer) for call in page.calls],
            "next_cursor": page.next_cursor,
        }

    @app.get("/api/calls/{call_uuid}")
    def call_json(call_uuid: str, viewer: ViewerDep) -> dict[str, Any]:
        return _detail_json(detail_or_404(call_uuid, viewer), viewer)

    @app.get("/api/runs/summary")
    def run_summary(viewer: ViewerDep, dag_id: str, run_id: str) -> dict[str, Any]:
        if not viewer.may_read(dag_id):
            raise HTTPException(status_code=404, detail=f"no DAG {dag_id[:250]!r} you may see")
        return {"dag_id": dag_id, "run_id": run_id, "outcomes": store().run_summary(dag_id, run_id)}

    return app
