"""``/dashboards``: the dashboards applied to the sink, each tile computed from local events.

Server-rendered HTML (every value escaped: events are untrusted input), inline SVG charts,
a style sheet and a small script served by the sink (no CDN). ``?person=<distinct_id>``
picks the person for SQL tiles' ``{variables.distinct_id}``; aggregate trends and funnels
cover everyone, as in PostHog. Alerts and cohorts are listed: evaluating them is PostHog's job.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from . import query_engine
from .dashboards_store import ObjectStore
from .rest_api import Api, personal_key_for
from .rest_api import routes as api_routes
from .store import EventStore
from .webview import CSP, _asset

PERSON_VARIABLES = ("distinct_id",)
NOT_FOUND = "No such dashboard"
PALETTE = ("#2563eb", "#d97706", "#16a34a", "#dc2626", "#7c3aed", "#0891b2", "#db2777")
TIME_SERIES = {
    "Auto", "ActionsLineGraph", "ActionsLineGraphCumulative", "ActionsAreaGraph", "ActionsBar",
    "ActionsStackedBar", "ActionsUnstackedBar",
}  # fmt: skip
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d{1,3})?\d*(?:\+00:00|Z)$")


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        m = _ISO.match(value)  # UTC times as PostHog's tables show them, to the millisecond
        return f"{m.group(1)} {m.group(2)}{m.group(3) or ''}" if m else value
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _page(title: str, body: str, status: int = 200) -> Response:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title>"
        "<link rel='icon' href='data:,'><link rel='stylesheet' href='/_sink/dashboards.css'>"
        "<script src='/_sink/dashboards.js' defer></script></head>"
        f"<body data-loaded='1'>{body}</body></html>"
    )
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
    return HTMLResponse(html, status, headers=headers)


def _tile_order(tile: dict[str, Any]) -> tuple[int, int, int]:
    sm = (tile.get("layouts") or {}).get("sm") or {}
    y, x = sm.get("y"), sm.get("x")
    if isinstance(y, int) and isinstance(x, int):
        return (y, x, tile["id"])
    return (10**9, 0, tile["id"])


def _clean(description: Any) -> str:
    return _COMMENT.sub("", str(description or "")).strip()


def mount(store: EventStore, personal_api_key: str | None) -> tuple[list[Route], Api]:
    """The REST API subset and the dashboards pages, over a table beside the events."""
    key = personal_api_key or personal_key_for(":memory:")
    table, api = api_routes(ObjectStore(store.path), key)
    return table + routes(store, api), api


def routes(store: EventStore, api: Api) -> list[Route]:
    """``/dashboards``, ``/dashboards/{id}`` and their assets."""

    async def index(request: Request) -> Response:
        dashboards = api.live("dashboard")
        parts = ["<header><h1>Dashboards on the local sink</h1>",
                 "<nav><a href='/'>events</a></nav></header>"]  # fmt: skip
        if not dashboards:
            parts.append(
                "<p id='none'>No dashboards yet. Apply them with the command the sink printed "
                "(<code>otel-posthog dashboards apply --host ...</code>).</p>"
            )
        parts.append("<ul id='dashboards'>")
        person = request.query_params.get("person") or ""
        suffix = "?" + urlencode({"person": person}) if person else ""
        for d in dashboards:
            count = len([t for t in api.tiles_of(d["id"]) if api.render_tile(t)])
            href = f"/dashboards/{d['id']}{suffix}"
            parts.append(
                f"<li data-id='{e(d['id'])}'><a href='{e(href)}'>{e(d.get('name'))}"
                f"</a> <span class='muted'>{count} tiles</span>"
                f"<p class='muted'>{e(_clean(d.get('description')))}</p></li>"
            )
        parts.append("</ul>")
        parts.append(_alerts_section(api, None))
        parts.append(_cohorts_section(api))
        return _page("Dashboards", "".join(parts))

    async def dashboard(request: Request) -> Response:
        raw = request.path_params["dashboard_id"]
        person = request.query_params.get("person") or ""
        # computing the tiles reads SQLite: off the event loop, so capture keeps going
        title, body = await asyncio.get_running_loop().run_in_executor(
            None, dashboard_body, raw, person
        )
        return _page(title, body, 404 if title == NOT_FOUND else 200)

    def dashboard_body(raw: str, person: str) -> tuple[str, str]:
        found = api.objects.get("dashboard", raw) if raw.isdigit() else None
        if found is None or found.get("deleted"):
            return NOT_FOUND, "<h1>No such dashboard</h1><a href='/dashboards'>all dashboards</a>"
        now = datetime.now(timezone.utc)
        tiles = sorted(api.tiles_of(found["id"]), key=_tile_order)
        parts = [
            f"<header><h1 id='title'>{e(found.get('name'))}</h1>",
            "<nav><a href='/dashboards'>all dashboards</a> · "
            f"<a href='/?{e(urlencode({'user': person}))}'>events</a></nav></header>",
            f"<p class='muted'>{e(_clean(found.get('description')))}</p>",
            _person_form(store, person),
            "<section id='tiles'>",
        ]
        for tile in tiles:
            parts.append(_tile(store, api, found, tile, person, now))
        parts.append("</section>")
        insight_ids = {t.get("insight") for t in tiles}
        parts.append(_alerts_section(api, insight_ids))
        return str(found.get("name") or "Dashboard"), "".join(parts)

    async def script(request: Request) -> Response:
        return _asset("dashboards.js", "application/javascript")

    async def style(request: Request) -> Response:
        return _asset("dashboards.css", "text/css")

    return [
        Route("/dashboards", index),
        Route("/dashboards/", index),
        Route("/dashboards/{dashboard_id}", dashboard),
        Route("/_sink/dashboards.js", script),
        Route("/_sink/dashboards.css", style),
    ]


def _person_form(store: EventStore, person: str) -> str:
    people = [v for v, _, _ in store.recent_values("distinct_id", 100)]
    if person and person not in people:
        people.insert(0, person)
    options = ["<option value=''>(pick a person)</option>"]
    for p in people:
        selected = " selected" if p == person else ""
        options.append(f"<option value='{e(p)}'{selected}>{e(p)}</option>")
    return (
        "<form id='person-form' method='get'><label for='person'>Person (distinct_id)</label> "
        f"<select id='person' name='person'>{''.join(options)}</select> "
        "<button type='submit'>Show</button></form>"
    )


def _variables(api: Api, dashboard: dict[str, Any], query: Any, person: str) -> dict[str, Any]:
    """Values by code_name: the variable's default, the query's value, the dashboard's
    persisted value, then the page's person for ``distinct_id`` (an empty one is no value)."""
    values: dict[str, Any] = {}
    source = query.get("source") if isinstance(query, dict) else None
    declared = (source or {}).get("variables") or {}
    for var_id, var in declared.items() if isinstance(declared, dict) else ():
        if not isinstance(var, dict):
            continue
        code = str(var.get("code_name"))
        stored = api.objects.get("insight_variable", var.get("variableId") or var_id)
        if stored is not None and stored.get("default_value") not in (None, ""):
            values[code] = stored["default_value"]
        if var.get("value") not in (None, ""):
            values[code] = var["value"]
    for var in (dashboard.get("variables") or {}).values():
        if isinstance(var, dict) and var.get("value") not in (None, "") and var.get("code_name"):
            values[var["code_name"]] = var["value"]
    if person:
        for code in PERSON_VARIABLES:
            values[code] = person
    return values


def _tile(
    store: EventStore,
    api: Api,
    dashboard: dict[str, Any],
    tile: dict[str, Any],
    person: str,
    now: datetime,
) -> str:
    if tile.get("text") is not None:
        body = (tile["text"] or {}).get("body", "")
        tid = e(tile["id"])
        return f"<article class='tile text-tile' data-tile='{tid}'><p>{e(body)}</p></article>"
    insight = api.objects.get("insight", tile.get("insight"))
    if insight is None or insight.get("deleted"):
        return ""
    query = insight.get("query")
    result = query_engine.compute(store, query, _variables(api, dashboard, query, person), now)
    name = insight.get("name") or insight.get("derived_name") or "Untitled"
    head = (
        f"<article class='tile' data-tile='{e(tile['id'])}' data-insight='{e(insight['id'])}' "
        f"data-kind='{e(result['kind'])}' data-name='{e(name)}'><h2>{e(name)}</h2>"
        f"<p class='muted'>{e(_clean(insight.get('description')))}</p>"
    )
    return head + render_result(result) + "</article>"


def render_result(result: dict[str, Any]) -> str:
    kind = result["kind"]
    if kind == "not_computed":
        return f"<p class='not-computed'>not computed locally: {e(result['reason'])}</p>"
    if kind == "table":
        return _table(result)
    if kind == "trends":
        return _trends(result)
    return _funnel(result)


def _table(result: dict[str, Any]) -> str:
    if not result["rows"]:
        return "<p class='empty'>no rows</p>"
    head = "".join(f"<th>{e(c)}</th>" for c in result["columns"])
    rows = []
    for row in result["rows"]:
        cells = "".join(
            f"<td data-col='{e(c)}' title='{e(fmt(v))}'>{e(fmt(v))}</td>"
            for c, v in zip(result["columns"], row, strict=False)
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f"<table class='rows'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _trends(result: dict[str, Any]) -> str:
    series = result["series"]
    if not series:
        return "<p class='empty'>no events in the date range</p>"
    display = result["display"]
    if display == "BoldNumber":
        chart = f"<p class='bold-number'>{e(fmt(series[0]['aggregated_value']))}</p>"
    elif display in TIME_SERIES:
        chart = _time_chart(result)
    else:
        chart = _value_bars(series)
    rows = []
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        rows.append(
            f"<tr data-label='{e(s['label'])}'><td><svg class='swatch' viewBox='0 0 10 10'>"
            f"<rect width='10' height='10' fill='{colour}'/></svg>{e(s['label'])}</td>"
            f"<td class='value'>{e(fmt(s['aggregated_value']))}</td></tr>"
        )
    legend = f"<table class='series'><tbody>{''.join(rows)}</tbody></table>"
    return f"<div class='chart' data-display='{e(display)}'>{chart}</div>{legend}"


def _time_chart(result: dict[str, Any]) -> str:
    width, height, pad = 640, 180, 28
    labels = result["labels"]
    values = [
        [_num(v) for v in _cumulative(s["data"], result["display"])] for s in result["series"]
    ]
    top = max([v for vs in values for v in vs if v is not None] + [0.0]) or 1.0
    n = max(len(labels), 1)
    step = (width - 2 * pad) / max(n - 1, 1)
    bars = result["display"] in ("ActionsBar", "ActionsStackedBar", "ActionsUnstackedBar")

    def y(v: float) -> float:
        return height - pad - (v / top) * (height - 2 * pad)

    parts = [f"<svg viewBox='0 0 {width} {height}' role='img' class='trend'>"]
    base = height - pad
    parts.append(f"<line x1='{pad}' y1='{base}' x2='{width - pad}' y2='{base}' class='axis'/>")
    parts.append(f"<text x='2' y='{pad - 8}' class='tick'>{e(fmt(top))}</text>")
    if labels:
        parts.append(f"<text x='{pad}' y='{height - 6}' class='tick'>{e(labels[0][:16])}</text>")
        end = labels[-1][:16]
        parts.append(f"<text x='{width - pad}' y='{height - 6}' class='tick end'>{e(end)}</text>")
    k = len(values)
    for i, vs in enumerate(values):
        colour = PALETTE[i % len(PALETTE)]
        if bars:
            w = max(step / (k + 1), 2) if n > 1 else 20
            for j, v in enumerate(vs):
                if not v:
                    continue
                x = pad + j * step - (k * w) / 2 + i * w
                parts.append(
                    f"<rect x='{x:.1f}' y='{y(v):.1f}' width='{w:.1f}' "
                    f"height='{height - pad - y(v):.1f}' fill='{colour}'>"
                    f"<title>{e(labels[j])}: {e(fmt(v))}</title></rect>"
                )
            continue
        points = [(pad + j * step, y(v)) for j, v in enumerate(vs) if v is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f"<polyline points='{path}' fill='none' stroke='{colour}' stroke-width='2'/>"
            )
        for j, v in enumerate(vs):
            if v:
                parts.append(
                    f"<circle cx='{pad + j * step:.1f}' cy='{y(v):.1f}' r='3' fill='{colour}'>"
                    f"<title>{e(labels[j])}: {e(fmt(v))}</title></circle>"
                )
    parts.append("</svg>")
    return "".join(parts)


def _cumulative(data: list[Any], display: str) -> list[Any]:
    if display != "ActionsLineGraphCumulative":
        return data
    total, out = 0.0, []
    for v in data:
        total += _num(v) or 0.0
        out.append(total)
    return out


def _value_bars(series: list[dict[str, Any]]) -> str:
    top = max([_num(s["aggregated_value"]) or 0.0 for s in series] + [0.0]) or 1.0
    rows = []
    for i, s in enumerate(series):
        v = _num(s["aggregated_value"]) or 0.0
        colour = PALETTE[i % len(PALETTE)]
        rows.append(
            f"<div class='bar-row'><span class='bar-label'>{e(s['label'])}</span>"
            f"<svg viewBox='0 0 100 10' preserveAspectRatio='none' class='bar'>"
            f"<rect width='{100 * v / top:.2f}' height='10' fill='{colour}'/></svg>"
            f"<span class='bar-value'>{e(fmt(s['aggregated_value']))}</span></div>"
        )
    return "".join(rows)


def _funnel(result: dict[str, Any]) -> str:
    rows = []
    first = result["steps"][0]["count"] if result["steps"] else 0
    for i, step in enumerate(result["steps"]):
        width = 100 * step["count"] / first if first else 0
        rows.append(
            f"<div class='funnel-step' data-step='{i + 1}'><span class='bar-label'>{i + 1}. "
            f"{e(step['name'])}</span><svg viewBox='0 0 100 10' preserveAspectRatio='none' "
            f"class='bar'><rect width='{width:.2f}' height='10' fill='{PALETTE[0]}'/></svg>"
            f"<span class='bar-value count'>{e(step['count'])}</span>"
            f"<span class='conversion'>{e(fmt(step['conversion']))}%</span></div>"
        )
    by = e(result.get("aggregation"))
    return f"<div class='funnel'>{''.join(rows)}</div><p class='muted'>by {by}</p>"


def _num(v: Any) -> float | None:
    return query_engine._num(v)


def _alerts_section(api: Api, insight_ids: set[Any] | None) -> str:
    live = {i["id"] for i in api.live("insight")}
    alerts = [
        a
        for a in api.objects.all("alert")
        if a["insight"] in live and (insight_ids is None or a["insight"] in insight_ids)
    ]
    if not alerts:
        return ""
    rows = []
    for a in alerts:
        insight = api.objects.get("insight", a["insight"]) or {}
        bounds = ((a.get("threshold") or {}).get("configuration") or {}).get("bounds") or {}
        limits = ", ".join(f"{k} {fmt(v)}" for k, v in bounds.items() if v is not None)
        rows.append(
            f"<li class='alert'><strong>{e(a.get('name'))}</strong> on "
            f"<em>{e(insight.get('name'))}</em>: {e(limits)}, {e(a.get('calculation_interval'))}"
            f"{'' if a.get('enabled', True) else ' (disabled)'}</li>"
        )
    return (
        "<section id='alerts'><h2>Alerts</h2><p class='muted'>Evaluated by PostHog, "
        f"not by the sink.</p><ul>{''.join(rows)}</ul></section>"
    )


def _cohorts_section(api: Api) -> str:
    cohorts = api.live("cohort")
    if not cohorts:
        return ""
    rows = [
        f"<li class='cohort'><strong>{e(c.get('name'))}</strong> "
        f"<span class='muted'>{e(_clean(c.get('description')))}</span></li>"
        for c in cohorts
    ]
    return (
        "<section id='cohorts'><h2>Cohorts</h2><p class='muted'>Computed by PostHog, "
        f"not by the sink.</p><ul>{''.join(rows)}</ul></section>"
    )
