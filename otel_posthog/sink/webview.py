"""The sink's read-only web view: a journey table and a response-time chart per endpoint.

Plain HTML, JS and SVG served by the sink itself (no CDN, works offline). Filters (person,
request, session) live in the page's query string, so a link shows the same journey.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .guard import finite
from .journey import parse_since, person_ids
from .store import EventStore

ASSETS = Path(__file__).resolve().parent / "static"  # packaged as sink/static/*
MAX_EVENTS = 2000
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _asset(name: str, media_type: str) -> Response:
    text = (ASSETS / name).read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
    return Response(text, media_type=media_type, headers=headers)


def _json(body: Any) -> Response:
    """JSON of stored events; a NaN or infinity stored by an older sink becomes ``null``."""
    try:
        return JSONResponse(body)
    except ValueError:
        return JSONResponse(finite(body))


def routes(store: EventStore) -> list[Route]:
    """``/`` (the page), its script and style, and the JSON it reads."""

    async def page(request: Request) -> Response:
        return _asset("sink-view.html", "text/html; charset=utf-8")

    async def script(request: Request) -> Response:
        return _asset("sink-view.js", "application/javascript")

    async def style(request: Request) -> Response:
        return _asset("sink-view.css", "text/css")

    async def events(request: Request) -> Response:
        q = request.query_params
        try:
            since = parse_since(q["since"]) if q.get("since") else None
            limit = max(1, min(int(q.get("limit") or MAX_EVENTS), MAX_EVENTS))
        except ValueError as exc:
            return JSONResponse({"detail": f"bad parameter: {exc}"}, 400)

        def query() -> list[Any]:  # on a worker thread: SQLite never blocks the event loop
            return store.query(
                distinct_id=person_ids(store, q["user"]) if q.get("user") else None,
                request_id=q.get("request") or None,
                session_id=q.get("session") or None,
                events=q.getlist("event") or None,
                since=since,
                order="timestamp DESC",
                limit=limit,
            )

        found = await run_in_threadpool(query)
        body: list[dict[str, Any]] = [e.as_dict() for e in reversed(found)]
        return _json({"events": body, "truncated": len(found) >= limit})

    async def facets(request: Request) -> Response:
        def rows(column: str) -> list[dict[str, Any]]:
            return [
                {"value": v, "count": n, "last": last}
                for v, n, last in store.recent_values(column, 100)
            ]

        def all_rows() -> dict[str, Any]:
            return {
                "people": rows("distinct_id"),
                "sessions": rows("session_id"),
                "events": rows("event"),
                "total": store.count(),
            }

        return _json(await run_in_threadpool(all_rows))

    return [
        Route("/", page),
        Route("/_sink/view.js", script),
        Route("/_sink/view.css", style),
        Route("/_sink/events", events),
        Route("/_sink/facets", facets),
    ]
