"""The calls page as HTML: the table, the filters, a call's timeline and a run's outcomes as SVG pictures.

Plain server-rendered HTML (no JavaScript bundle to build or ship): it works inside the Airflow UI's
external-view frame and on its own. Every value from the ledger is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlencode

from vobiz_provider.ledger.call_views import OUTCOMES, outcome_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from vobiz_provider.ledger.call_views import CallDetail, CallPage, ListedCall, TimelineStep
    from vobiz_provider.views.access import Viewer

__all__ = ["SINCE_CHOICES", "STATUSES", "call_page", "list_page", "summary_chart", "timeline_chart"]

#: The statuses the filter offers.
STATUSES: Final = ("queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "cancel")
#: The time ranges the filter offers (``parse_age`` spellings).
SINCE_CHOICES: Final = ("1h", "1d", "7d", "30d")
_COLOURS: Final = {
    "answered": "#2e9e4f",
    "busy": "#e0a100",
    "no answer": "#8a8f98",
    "failed": "#d1453b",
    "in progress": "#3a7bd5",
}
_STYLE: Final = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:16px;color:#1c2430;font-size:14px}
h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:18px 0 8px}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #e3e6ea;padding:5px 8px;
text-align:left;white-space:nowrap} th{background:#f4f6f8;font-weight:600}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:12px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select,button{font-size:14px;padding:4px 6px} a{color:#1f5fbf}
.status{padding:1px 6px;border-radius:8px;color:#fff;font-size:12px}
pre{background:#f4f6f8;padding:8px;overflow:auto;font-size:12px} .muted{color:#777}
"""


def _query(values: Mapping[str, object], **more: object) -> str:
    merged = {**values, **more}
    return urlencode({key: str(value) for key, value in merged.items() if value is not None and value != ""})


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _status_badge(call: ListedCall) -> str:
    record = call.record
    bucket = outcome_of(record.status, answered=record.answer_time is not None)
    return f'<span class="status" style="background:{_COLOURS[bucket]}">{escape(record.status)}</span>'


def _time(value: object) -> str:
    if value is None:
        return ""
    text = value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)
    return escape(text.replace("+00:00", "Z"))


def _filters_form(filters: Mapping[str, str]) -> str:
    def text(name: str, label: str) -> str:
        value = escape(filters.get(name, ""), quote=True)
        return f'<label>{label}<input name="{name}" value="{value}" size="18"></label>'

    def select(name: str, label: str, options: Sequence[str], blank: str) -> str:
        chosen = filters.get(name, "")
        items = [f'<option value="">{blank}</option>']
        items += [
            f'<option value="{escape(o)}"{" selected" if o == chosen else ""}>{escape(o)}</option>'
            for o in options
        ]
        return f'<label>{label}<select name="{name}">{"".join(items)}</select></label>'

    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(filters[name], quote=True)}">'
        for name in ("task_id", "map_index")
        if filters.get(name)
    )
    return (
        '<form class="filters" method="get" action="">'
        + text("dag_id", "DAG")
        + text("run_id", "Run")
        + select("status", "Status", STATUSES, "any")
        + select("since", "Placed within", SINCE_CHOICES, "any time")
        + hidden
        + '<button type="submit">Filter</button>'
        + '<a href="./">clear</a></form>'
    )


def summary_chart(counts: Mapping[str, int], *, title: str) -> str:
    """A run's outcomes as a horizontal bar chart (SVG), one bar per outcome of :data:`OUTCOMES`."""
    total = sum(counts.values()) or 1
    width, bar_height, label_width = 520, 22, 110
    rows = []
    for index, outcome in enumerate(OUTCOMES):
        count = counts.get(outcome, 0)
        y = 28 + index * (bar_height + 6)
        length = round((width - label_width - 60) * count / total)
        rows.append(
            f'<text x="0" y="{y + 16}" font-size="13">{escape(outcome)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{max(length, 1)}" height="{bar_height}" '
            f'fill="{_COLOURS[outcome]}" data-outcome="{escape(outcome)}" data-count="{count}"></rect>'
            f'<text x="{label_width + max(length, 1) + 6}" y="{y + 16}" font-size="13">{count}</text>'
        )
    height = 28 + len(OUTCOMES) * (bar_height + 6) - 22
    return (
        f"<h2>{escape(title)}</h2>"
        f'<svg class="run-summary" role="img" aria-label="{escape(title, quote=True)}" width="{width}" '
        f'height="{height}" viewBox="0 22 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"{''.join(rows)}</svg>"
    )


def timeline_chart(steps: Sequence[TimelineStep]) -> str:
    """A call's timeline as a picture (SVG): one dot per step on a time axis, the seconds between them."""
    if not steps:
        return '<p class="muted">No timeline yet: nothing was recorded for this call.</p>'
    width, left, right = 760, 12, 12
    start, end = steps[0].at, steps[-1].at
    span = max((end - start).total_seconds(), 1e-9)
    parts = [f'<line x1="{left}" y1="60" x2="{width - right}" y2="60" stroke="#9aa3ad" stroke-width="2"/>']
    previous_x: float | None = None
    for index, step in enumerate(steps):
        x = left + (width - left - right) * (step.at - start).total_seconds() / span
        if len(steps) == 1:
            x = left
        label_y = 40 if index % 2 == 0 else 90
        # The first and last labels grow inwards, so that none is cut at the picture's edges.
        anchor = "start" if index == 0 else "end" if index == len(steps) - 1 else "middle"
        parts.append(
            f'<circle cx="{x:.1f}" cy="60" r="7" fill="#1f5fbf" '
            f'data-step="{escape(step.label, quote=True)}"/>'
            f'<text x="{x:.1f}" y="{label_y}" font-size="12" text-anchor="{anchor}">'
            f"{escape(step.label)}</text>"
        )
        if previous_x is not None and step.seconds_since_previous is not None:
            middle = (previous_x + x) / 2
            parts.append(
                f'<text x="{middle:.1f}" y="{75 if index % 2 else 52}" font-size="11" fill="#555" '
                f'text-anchor="middle">+{step.seconds_since_previous:.1f}s</text>'
            )
        previous_x = x
    return (
        f'<svg class="timeline" role="img" aria-label="call timeline" width="{width}" height="110" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


def list_page(
    page: CallPage,
    *,
    viewer: Viewer,
    filters: Mapping[str, str],
    summary: Mapping[str, int] | None,
    error: str | None = None,
) -> str:
    """The calls page: filters, the run's outcome chart when one run is chosen, the table, the next page."""
    heads = (
        "Call", "DAG", "Run", "Task", "Map", "Try", "Destination", "Status", "Hangup cause", "Duration",
        "Digits", "Placed", "Answered", "Ended",
    )  # fmt: skip
    rows = []
    for call in page.calls:
        record = call.record
        key = record.call_uuid or record.request_uuid or ""
        rows.append(
            f'<tr data-call="{escape(key, quote=True)}">'
            + f'<td><a class="call-link" href="calls/{quote(key, safe="")}">{escape(key[:13])}</a></td>'
            + f"<td>{escape(record.dag_id or '')}</td><td>{escape(record.run_id or '')}</td>"
            + f"<td>{escape(record.task_id or '')}</td>"
            + f"<td>{'' if record.map_index is None else record.map_index}</td>"
            + f"<td>{record.try_number or ''}</td>"
            + f'<td class="destination">{escape(viewer.number(record.to, record.dag_id))}</td>'
            + f"<td>{_status_badge(call)}</td><td>{escape(record.hangup_cause or '')}</td>"
            + f"<td>{'' if record.duration is None else f'{record.duration} s'}</td>"
            + f"<td>{escape(record.digits or '')}</td><td>{_time(call.placed_at)}</td>"
            + f"<td>{_time(record.answer_time)}</td><td>{_time(record.end_time)}</td></tr>"
        )
    body = [
        f'<h1>Vobiz calls <span class="muted">({escape(viewer.name)})</span></h1>',
        _filters_form(filters),
    ]
    if error:
        body.append(f'<p class="error" style="color:#b00">{escape(error)}</p>')
    if summary is not None:
        title = f"Outcomes of {filters.get('dag_id', '')} / {filters.get('run_id', '')}"
        body.append(summary_chart(summary, title=title))
    if rows:
        body.append(
            '<table class="calls"><thead><tr>'
            + "".join(f"<th>{head}</th>" for head in heads)
            + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        body.append('<p class="empty muted">No calls match these filters.</p>')
    if page.next_cursor is not None:
        query = {key: value for key, value in filters.items() if value and key != "before"}
        body.append(
            f'<p><a class="next" href="?{escape(_query(query, before=page.next_cursor), quote=True)}">'
            "Older calls →</a></p>"
        )
    return _page("Vobiz calls", "".join(body))


def call_page(detail: CallDetail, *, viewer: Viewer) -> str:
    """One call: its fields, its timeline as a picture and the raw callbacks received."""
    record = detail.listed.record
    key = record.call_uuid or record.request_uuid or ""
    fields = (
        ("Call UUID", record.call_uuid), ("Request UUID", record.request_uuid), ("DAG", record.dag_id),
        ("Run", record.run_id), ("Task", record.task_id), ("Map index", record.map_index),
        ("Try", record.try_number), ("Destination", viewer.number(record.to, record.dag_id)),
        ("From", viewer.number(record.from_number, record.dag_id)), ("Status", record.status),
        ("Hangup cause", record.hangup_cause), ("Hangup source", record.hangup_source),
        ("Duration", record.duration), ("Digits", record.digits), ("Machine", record.machine),
    )  # fmt: skip
    table = "".join(
        f"<tr><th>{label}</th><td>{escape('' if value is None else str(value))}</td></tr>"
        for label, value in fields
    )
    callbacks = []
    for callback in detail.callbacks:
        shown = dict(callback.fields)
        for name in ("To", "From", "CallerName"):
            if isinstance(shown.get(name), str):
                shown[name] = viewer.number(shown[name], record.dag_id)
        callbacks.append(
            f'<h3 style="font-size:13px">{_time(callback.received_at)} · {escape(callback.kind)}'
            f"{' · ' + escape(callback.call_status) if callback.call_status else ''}</h3>"
            f'<pre class="callback">{escape(json.dumps(shown, indent=2, sort_keys=True))}</pre>'
        )
    back = "../?" + _query({"dag_id": record.dag_id, "run_id": record.run_id})
    body = (
        f'<p><a href="{escape(back, quote=True)}">← calls of this run</a></p>'
        f"<h1>Call {escape(key)}</h1>"
        f'<table class="call">{table}</table><h2>Timeline</h2>{timeline_chart(detail.steps)}'
        f"<h2>Callbacks received ({len(detail.callbacks)})</h2>"
        + ("".join(callbacks) or '<p class="muted">None.</p>')
    )
    return _page(f"Vobiz call {key}", body)
