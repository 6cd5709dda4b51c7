"""The local PostHog-compatible capture server (Starlette app).

Accepts what posthog-python and posthog-js send (``/batch/``, ``/e/``, ``/i/v0/e/``,
``/capture/``, ``/track/``), answers posthog-js' configuration calls with minimal valid
replies, stores events in an :class:`EventStore`, and answers CORS for browsers (any
origin, no credentials); ``/`` is the read-only web view (:mod:`.webview`).
A body over 20 MB gets a 413 before it is read, a wrong key a 401 before it is parsed, a
malformed body a 400 with a reason; nothing is stored. A ``Host`` other than a loopback
name or the bind address gets a 403 (:mod:`.guard`).
``faults`` lets tests make it misbehave like a PostHog outage would.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import dashboards_view, webview
from .capture import AuthError, CaptureError, decode_body, normalise
from .guard import HostGuard, TooLarge, read_capped
from .guard import cors as _cors
from .store import EventStore

CAPTURE_PATHS: tuple[str, ...] = ("/batch/", "/batch", "/e/", "/e", "/i/v0/e/", "/i/v0/e")
CAPTURE_PATHS += ("/capture/", "/capture", "/track/", "/track")
CAPTURE_PATHS += ("/i/v0/ai/batch/", "/i/v0/ai/batch")  # posthog-python's LLM events
MAX_BODY = 20 * 1024 * 1024


@dataclass
class Faults:
    """Misbehaviour switched on by tests: a status to answer, a delay before answering."""

    status: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    remaining: int | None = None  # how many requests the fault applies to (None: all)

    def take(self) -> tuple[int | None, str | None, float]:
        if self.remaining is not None:
            if self.remaining <= 0:
                return None, None, 0.0
            self.remaining -= 1
        return self.status, self.retry_after, self.delay_s

    def clear(self) -> None:
        self.status, self.retry_after, self.delay_s, self.remaining = None, None, 0.0, None


def create_app(
    store: EventStore,
    api_key: str | None,
    faults: Faults | None = None,
    bind_host: str | None = None,
    personal_api_key: str | None = None,
) -> Starlette:
    """The sink's ASGI app. ``api_key=None`` accepts any key; ``bind_host`` is a ``Host``
    name served besides the loopback ones; ``personal_api_key`` guards the REST API for
    dashboards (one is made up when None)."""
    faults = faults or Faults()
    stats = {"requests": 0, "rejected": 0, "received": 0, "stored": 0}

    async def capture(request: Request) -> Response:
        stats["requests"] += 1
        status, retry_after, delay = faults.take()
        if delay:
            await asyncio.sleep(delay)
        if status is not None:
            headers = {"Retry-After": retry_after} if retry_after else {}
            return _cors(request, JSONResponse({"detail": "fault"}, status, headers=headers))
        try:
            body = await read_capped(request, MAX_BODY)
        except TooLarge:
            return _cors(request, JSONResponse({"detail": "body too large"}, 413))
        try:
            payload = decode_body(
                body,
                request.headers.get("content-type", ""),
                request.headers.get("content-encoding", ""),
                request.query_params.get("compression", ""),
                api_key,
            )
            del body
            events = normalise(payload, api_key)
        except AuthError as exc:
            stats["rejected"] += 1
            return _cors(request, JSONResponse({"detail": str(exc)}, 401))
        except CaptureError as exc:
            stats["rejected"] += 1
            return _cors(request, JSONResponse({"detail": str(exc)}, 400))
        received_at = datetime.now(timezone.utc).isoformat()
        stored = await asyncio.get_running_loop().run_in_executor(
            None, store.insert, events, received_at
        )
        stats["received"] += len(events)
        stats["stored"] += stored
        return _cors(request, JSONResponse({"status": 1}))

    async def preflight(request: Request) -> Response:
        response = Response(status_code=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "access-control-request-headers", "content-type"
        )
        response.headers["Access-Control-Max-Age"] = "600"
        return _cors(request, response)

    async def flags(request: Request) -> Response:
        if request.method == "OPTIONS":
            return await preflight(request)
        body: dict[str, Any] = {
            "featureFlags": {},
            "featureFlagPayloads": {},
            "flags": {},
            "errorsWhileComputingFlags": False,
            "requestId": "local-sink",
        }
        return _cors(request, JSONResponse(body))

    async def remote_config(request: Request) -> Response:
        config = {
            "token": request.path_params.get("token", ""),
            "supportedCompression": ["gzip", "gzip-js"],
            "hasFeatureFlags": False,
            "captureDeadClicks": False,
            "capturePerformance": False,
            "autocapture_opt_out": False,
            "autocaptureExceptions": False,
            "analytics": {"endpoint": "/i/v0/e/"},
            "elementsChainAsString": True,
            "sessionRecording": False,
            "heatmaps": False,
            "surveys": False,
            "defaultIdentifiedOnly": True,
            "siteApps": [],
        }
        if request.url.path.endswith(".js"):
            token, body = json.dumps(config["token"]), json.dumps(config)
            text = (
                "(function(){var r=window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
                f"r[{token}]={{config:{body},siteApps:[]}}}})();"
            )
            return _cors(request, Response(text, media_type="application/javascript"))
        return _cors(request, JSONResponse(config))

    async def capture_or_preflight(request: Request) -> Response:
        if request.method == "OPTIONS":
            return await preflight(request)
        return await capture(request)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def sink_stats(request: Request) -> Response:
        return JSONResponse({**stats, "events": await run_in_threadpool(store.count)})

    routes = [Route(p, capture_or_preflight, methods=["POST", "OPTIONS"]) for p in CAPTURE_PATHS]
    routes += [
        Route("/flags", flags, methods=["GET", "POST", "OPTIONS"]),
        Route("/flags/", flags, methods=["GET", "POST", "OPTIONS"]),
        Route("/decide", flags, methods=["GET", "POST", "OPTIONS"]),
        Route("/decide/", flags, methods=["GET", "POST", "OPTIONS"]),
        Route("/array/{token}/config", remote_config),
        Route("/array/{token}/config.js", remote_config),
        Route("/_sink/health", health),
        Route("/_sink/stats", sink_stats),
    ]
    routes += webview.routes(store)
    dashboard_routes, dashboards = dashboards_view.mount(store, personal_api_key)
    routes += dashboard_routes
    app = Starlette(routes=routes, middleware=[Middleware(HostGuard, bind_host=bind_host)])
    app.state.dashboards = dashboards
    app.state.store = store
    app.state.faults = faults
    app.state.stats = stats
    return app
