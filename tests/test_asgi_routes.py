"""The full route template from a Starlette/FastAPI app's own routing (sdk/asgi_routes.py),
on real framework objects: walked only when needed, with FastAPI's public route flattening
and without it (older FastAPI, a plain Starlette app)."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, Route, Router

from otel_posthog.sdk import asgi_routes


async def ok(request):
    return PlainTextResponse("ok")


def _apps():
    inner = Starlette(routes=[Route("/leaf/{leaf_id}", ok)])
    starlette = Starlette(
        routes=[
            Route("/items/{item_id}", ok, methods=["GET"]),
            Mount("/outer/{org}", routes=[Mount("/inner", app=inner)]),
            Host("api.example.test", app=Router(routes=[Route("/h/{h}", ok)])),
        ]
    )
    fastapi = FastAPI()
    sub = FastAPI()
    sub.get("/sub/{item}")(lambda item: item)
    fastapi.mount("/subapi", sub)
    router = APIRouter()
    router.route("/legacy/{x}")(ok)
    router.routes.append(Mount("/mounted", routes=[Route("/thing/{t}", ok)]))
    fastapi.include_router(router, prefix="/r")
    return starlette, fastapi


def scope(path: str, method: str = "GET", host: str = "127.0.0.1") -> dict:
    """As the export worker builds it from a request span's attributes (old semconv here)."""
    attrs = {"http.method": method, "http.target": path + "?q=1", "http.server_name": host}
    return asgi_routes.probe_scope(attrs)


CASES = [
    (0, "/items/3", "GET", "127.0.0.1", "/items/{item_id}"),
    (0, "/items/3", "POST", "127.0.0.1", "/items/{item_id}"),  # 405: the partial match
    (0, "/outer/acme/inner/leaf/7", "GET", "127.0.0.1", "/outer/{org}/inner/leaf/{leaf_id}"),
    (0, "/h/1", "GET", "api.example.test", "/h/{h}"),
    (0, "/nope", "GET", "127.0.0.1", None),
    (1, "/subapi/sub/abc", "GET", "127.0.0.1", "/subapi/sub/{item}"),
    (1, "/r/legacy/5", "GET", "127.0.0.1", "/r/legacy/{x}"),
    (1, "/r/mounted/thing/7", "GET", "127.0.0.1", "/r/mounted/thing/{t}"),
    (1, "/nope", "GET", "127.0.0.1", None),
]


# Without the public helper (an older FastAPI, or plain Starlette): every case but the
# included routers of app 1, which FastAPI >= 0.137 (installed here) nests and only its
# helper flattens; an older FastAPI without the helper flattened them itself.
WITHOUT_HELPER = [case for case in CASES if not (case[0] == 1 and case[1].startswith("/r/"))]


@pytest.mark.parametrize(
    ("flatten", "app", "path", "method", "host", "template"),
    [(True, *case) for case in CASES] + [(False, *case) for case in WITHOUT_HELPER],
)
def test_full_route(monkeypatch, flatten, app, path, method, host, template):
    if not flatten:
        monkeypatch.setattr(asgi_routes, "_iter_route_contexts", None)
    found = asgi_routes.full_route(_apps()[app], scope(path, method, host))
    assert found == template


def test_probe_scope_from_new_semconv_attributes():
    attrs = {"http.request.method": "get", "url.path": "/a", "url.full": "http://h.test:81/a?b"}
    probe = asgi_routes.probe_scope(attrs, "/root")
    assert probe["path"] == "/a" and probe["method"] == "GET" and probe["root_path"] == "/root"
    assert probe["headers"] == [(b"host", b"h.test:81")]


def test_walk_only_when_the_reported_route_falls_short():
    starlette, fastapi = _apps()
    assert not asgi_routes.needs_walk(fastapi, "/plain", 200)  # a route: nothing to do
    assert asgi_routes.needs_walk(fastapi, "/subapi", 200)  # only the mount prefix
    assert asgi_routes.needs_walk(fastapi, None, 200)  # matched, but no route reported
    assert not asgi_routes.needs_walk(fastapi, None, 404)  # a genuine 404
    assert asgi_routes.needs_walk(starlette, "/items/{item_id}", 200)  # it routes by host
    assert not asgi_routes.needs_walk(None, None, 200)  # not an app the bridge can read
