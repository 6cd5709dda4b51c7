"""A Starlette app without FastAPI, as a user writes it (no otel_posthog import).

Run with ``opentelemetry-instrument uvicorn tests.apps.starlette_app:app`` and the
``posthog`` distro. asgi-correlation-id's middleware is added after the app is built, so
it sits outside the instrumented layer; ``/boom`` raises (Starlette's
``ServerErrorMiddleware`` answers 500 after the request span ended).
"""

from __future__ import annotations

from asgi_correlation_id import CorrelationIdMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def params(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.path_params))


async def boom(request: Request) -> JSONResponse:
    raise RuntimeError("boom from starlette")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close(code=1000)


inner = Starlette(routes=[Route("/leaf/{leaf_id}", params)])  # a Starlette app mounted twice deep
app = Starlette(
    routes=[
        Route("/health", health),
        Route("/items/{item_id}", params),
        Route("/boom", boom),
        Mount("/outer/{org}", routes=[Mount("/inner", app=inner)]),
        WebSocketRoute("/ws", echo),
    ]
)
app.add_middleware(CorrelationIdMiddleware)
