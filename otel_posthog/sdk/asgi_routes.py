"""Adapter: the full route template of a request from a Starlette/FastAPI app's routing.

The instrumentations report the first matching route of the app they instrument: for a
mounted sub-application (``Mount``, a FastAPI app mounted in another) only the mount
prefix, and nothing at all for some routes FastAPI matches (``APIRouter.route()`` with
``include_router``, a ``Mount``/``Host`` included through a router). When that happens
the export worker (never the request path) walks the app's routes with the public
routing API (``BaseRoute.matches``, ``Mount.path``/``.routes``, ``Host.routes``,
FastAPI's ``iter_route_contexts``) from the request as routing first saw it (the app and
root path kept when the request arrived, the rest from the span's attributes), and joins
every level's template: ``/subapi`` + ``/sub/{item}`` -> ``/subapi/sub/{item}``.
A genuine 404 stays unmatched and costs no walk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

try:
    from starlette.routing import Host, Match, Mount
except ImportError:  # pragma: no cover - Starlette not installed: nothing to walk
    Host = Mount = Match = None  # type: ignore[assignment,misc]

try:  # FastAPI >= 0.137.2 nests included routers; this public helper flattens them
    from fastapi.routing import iter_route_contexts as _iter_route_contexts
except ImportError:
    _iter_route_contexts = None  # type: ignore[assignment]

_MAX_DEPTH = 16
# app id -> (app, mount and host paths among its routes, has a Host route)
_APPS: dict[int, tuple[Any, frozenset[str], bool]] = {}


def _routes(routes: Iterable[Any]) -> Iterator[Any]:
    if _iter_route_contexts is not None:
        try:
            yield from _iter_route_contexts(list(routes))
            return
        except Exception:  # an unexpected shape: the routes as they are
            pass
    yield from routes


def _original(route: Any) -> Any:
    return getattr(route, "original_route", route)


def _app_shape(app: Any) -> tuple[frozenset[str], bool]:
    found = _APPS.get(id(app))
    if found is not None and found[0] is app:
        return found[1], found[2]
    if not hasattr(app, "routes"):
        _APPS[id(app)] = (app, frozenset(), False)
        return frozenset(), False
    mounts: set[str] = set()
    has_host = False
    for route in _routes(getattr(app, "routes", ())):
        original = _original(route)
        if isinstance(original, Mount):
            mounts.add(getattr(route, "path", original.path))
        elif isinstance(original, Host):
            has_host = True
    if len(_APPS) >= 256:
        _APPS.clear()
    _APPS[id(app)] = (app, frozenset(mounts), has_host)
    return frozenset(mounts), has_host


def needs_walk(app: Any, reported: Any, status: Any) -> bool:
    """Only when the instrumentation's route is missing (and the app answered something
    other than 404) or is a mount prefix, or the app routes by host."""
    if Mount is None or app is None:
        return False
    found = _APPS.get(id(app))
    mounts, has_host = found[1:] if found is not None and found[0] is app else _app_shape(app)
    if not reported:
        return status != 404 and hasattr(app, "routes")
    return has_host or reported in mounts


def route_for(app: Any, root_path: str, attrs: Mapping[str, Any]) -> str | None:
    """The full template of a finished request span, or None to keep ``http.route`` (the
    export worker calls this for every ASGI request: cheap when the reported route is
    already the full one)."""
    reported = attrs.get("http.route")
    if reported:  # the common case first: a known app whose route is already the full one
        found = _APPS.get(id(app))
        if found is not None and found[0] is app and not found[2] and reported not in found[1]:
            return None
    status = None
    if not reported:
        status = attrs.get("http.response.status_code", attrs.get("http.status_code"))
    if not needs_walk(app, reported, status):
        return None
    return full_route(app, probe_scope(attrs, root_path))


def probe_scope(attrs: Mapping[str, Any], root_path: str = "") -> dict[str, Any]:
    """The request's scope as routing first saw it, from the span's attributes (both HTTP
    semconv generations) and the root path the request arrived with."""
    method = attrs.get("http.request.method") or attrs.get("http.method") or "GET"
    path = attrs.get("url.path") or str(attrs.get("http.target") or "/").split("?", 1)[0]
    host = attrs.get("http.server_name")  # the Host header (old semconv)
    if not host:  # the URL is built from the Host header
        url = attrs.get("url.full") or attrs.get("http.url")
        if url:
            host = str(url).split("://", 1)[-1].split("/", 1)[0]
    if not host:
        host = attrs.get("http.host") or attrs.get("server.address") or ""
    return {
        "type": "http",
        "path": path,
        "root_path": root_path,
        "method": str(method).upper(),
        "headers": [(b"host", str(host).encode())] if host else [],
        "path_params": {},
    }


def _walk(routes: Iterable[Any], scope: dict[str, Any], prefix: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return None
    partial = None
    for route in _routes(routes):
        try:
            match, child = route.matches(scope)
        except Exception:
            continue
        if match is Match.FULL:
            return _descend(route, scope, child, prefix, depth)
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:
        return _descend(partial[0], scope, partial[1], prefix, depth)
    return None


def _descend(route: Any, scope: dict[str, Any], child: Any, prefix: str, depth: int) -> str | None:
    original = _original(route)
    if isinstance(original, (Mount, Host)):
        here = prefix + getattr(route, "path", "") if isinstance(original, Mount) else prefix
        inner = dict(scope)
        if isinstance(child, dict):
            inner.update(child)
        found = _walk(getattr(route, "routes", None) or (), inner, here, depth + 1)
        return found if found is not None else (here or None)
    path = getattr(route, "path", None)
    return prefix + path if isinstance(path, str) else None


def full_route(app: Any, scope: dict[str, Any]) -> str | None:
    """The request's route template through every mount, or None (no route matched);
    ``scope`` as :func:`probe_scope` makes it."""
    if Mount is None or app is None:
        return None
    try:
        return _walk(getattr(app, "routes", ()), scope, "", 0)
    except Exception:
        return None
