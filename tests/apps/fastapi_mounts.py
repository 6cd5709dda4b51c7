"""FastAPI with mounted sub-applications, routers and an app-set X-Request-ID.

Set up as the README's quickstart: ``otel_posthog.configure()`` and
``FastAPIInstrumentor.instrument_app(app)`` on the parent app only (a mounted FastAPI app
then makes its own server span with FastAPI's built-in telemetry). asgi-correlation-id's
middleware sets ``X-Request-ID`` inside the instrumented layer.
"""

from __future__ import annotations

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import APIRouter, FastAPI, Request, WebSocket
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.responses import JSONResponse
from starlette.routing import Host, Mount, Route, Router

import otel_posthog

otel_posthog.configure()

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/plain/{n}")
def plain(n: int) -> dict[str, int]:
    return {"n": n}


@app.get("/boom")
def boom() -> dict[str, str]:
    raise RuntimeError("boom from fastapi")


# FastAPI's "Sub Applications" tutorial
subapi = FastAPI()


@subapi.get("/sub/{item}")
def sub(item: str) -> dict[str, str]:
    otel_posthog.capture("sub_item_viewed", {"item": item})
    return {"item": item}


app.mount("/subapi", subapi)


async def leaf(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.path_params))


# nested Starlette mounts, a mount and a host through a router, APIRouter.route()
app.router.routes.append(
    Mount("/files/{bucket}", routes=[Mount("/v1", routes=[Route("/obj/{key}", leaf)])])
)
router = APIRouter()


@router.route("/legacy/{x}")
async def legacy(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.path_params))


router.routes.append(Mount("/mounted", routes=[Route("/thing/{t}", leaf)]))
router.routes.append(Host("api.example.test", app=Router(routes=[Route("/h/{h}", leaf)])))
app.include_router(router, prefix="/r")

app.add_middleware(CorrelationIdMiddleware)
FastAPIInstrumentor.instrument_app(app, exclude_spans=["send", "receive"])


@app.websocket("/ws/{room}")
async def ws(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close(code=1000)
            return
        otel_posthog.capture("ws_message", {"room": room, "text": text})
        await websocket.send_text(text)
