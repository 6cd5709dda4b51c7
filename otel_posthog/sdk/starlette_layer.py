"""Adapter: one ``X-Request-ID`` on every response of a Starlette app instrumented from inside.

The Starlette instrumentation adds the ASGI ``OpenTelemetryMiddleware`` as a user middleware,
inside ``ServerErrorMiddleware``: the 500 of an escaped exception is sent after the
request span ended, past the response propagator, and a middleware the app adds later
(``app.add_middleware(CorrelationIdMiddleware)``) sets its ``X-Request-ID`` after ours. For
such apps only (a user middleware list holding that middleware) the stack Starlette builds
gets one thin outer layer that, on ``http.response.start``:

* keeps the last ``X-Request-ID`` when there are several (the outer middleware's; ours was
  appended first), and hands it to the request's events (see ``adopt_app_request_id``);
* adds ``X-Request-ID`` and ``traceresponse`` when there is none (the 500 sent by
  ``ServerErrorMiddleware``), from the request's state.

FastAPI's instrumentation wraps the whole stack, so FastAPI apps never get this layer.
``Starlette.build_middleware_stack`` is not documented API: the hook is
:func:`otel_posthog.compat.hook_starlette_middleware_stack` (probed, off under
``OTEL_POSTHOG_COMPAT=public``). The public way is :class:`PostHogASGIMiddleware`, the same
layer, which an app wraps itself in (``app = PostHogASGIMiddleware(app)``); it also
delivers queued events at the ASGI lifespan shutdown when the router's lifespan is not
hooked (:mod:`otel_posthog.sdk.lifecycle`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import compat
from ..core.headers import RESPONSE_HEADERS
from .request_state import SCOPE_STATE_KEY, RequestState

_installed: bool | None = None  # decided once per process
_lifespan_send: Callable[[Any], Any] | None = None  # set by lifecycle.install
_EXPOSED = ", ".join(RESPONSE_HEADERS).encode()
_RID, _TRACERESPONSE = (name.lower().encode() for name in RESPONSE_HEADERS)


def _is_otel_asgi(middleware: Any) -> bool:
    cls = getattr(middleware, "cls", None)
    return getattr(cls, "__name__", "") == "OpenTelemetryMiddleware" and getattr(
        cls, "__module__", ""
    ).startswith("opentelemetry.instrumentation.asgi")


def _wrap_stack(app: Any, stack: Any) -> Any:
    try:
        if any(_is_otel_asgi(m) for m in getattr(app, "user_middleware", ())):
            return ResponseIdLayer(stack)
    except Exception:  # an unusual middleware list: the stack as Starlette built it
        pass
    return stack


def install(lifespan_send: Callable[[Any], Any] | None = None) -> bool:
    """Idempotent: the layer around the stack Starlette builds (no effect on other apps);
    False when :mod:`otel_posthog.compat` does not hook Starlette (then an app adds
    :class:`PostHogASGIMiddleware` itself). ``lifespan_send``: how that middleware wraps
    the lifespan's ``send`` to flush at shutdown (None: the router already does)."""
    global _installed, _lifespan_send
    _lifespan_send = lifespan_send
    if _installed is None:
        _installed = compat.hook_starlette_middleware_stack(_wrap_stack)
    return _installed


def _ended(state: RequestState) -> bool:
    """The request span ended (its state is marked finished only when the exporter that
    submits it runs, which a ``BatchSpanProcessor`` delays)."""
    if state.finished:
        return True
    return getattr(state.span, "end_time", None) is not None


def _fix_headers(message: dict[str, Any], state: RequestState) -> None:
    headers = message.get("headers")
    if headers is None:
        headers = message["headers"] = []
    elif not isinstance(headers, list):
        headers = message["headers"] = list(headers)
    found = [i for i, (key, _) in enumerate(headers) if key.lower() == _RID]
    if len(found) > 1:  # ours first, then an outer middleware's: the app's own wins
        value = headers[found[-1]][1]
        for i in reversed(found[:-1]):
            del headers[i]
        if not state.finished:
            from .propagator import adopt_app_request_id

            raw = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            adopt_app_request_id(state, raw)
        return
    if found or not state.trace_id or not _ended(state):
        return  # while the request span runs, the instrumented layer sets the headers
    # a response sent after the request span ended (ServerErrorMiddleware's 500)
    trace_hex = f"{state.trace_id:032x}"
    span_ctx = getattr(state.span, "context", None)
    flags = int(getattr(span_ctx, "trace_flags", 1))
    headers.append((_RID, (state.request_id or trace_hex).encode()))
    headers.append((_TRACERESPONSE, f"00-{trace_hex}-{state.span_id:016x}-{flags:02x}".encode()))
    if state.cross_origin:
        headers.append((b"access-control-expose-headers", _EXPOSED))


class ResponseIdLayer:
    """The outer layer described in the module doc."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        holder = scope.get(SCOPE_STATE_KEY)
        if holder is None:  # the request's state arrives here when the bridge extracts it
            holder = scope[SCOPE_STATE_KEY] = []

        async def send_checked(message: Any) -> None:
            if message.get("type") == "http.response.start" and holder:
                state = holder[0]
                if isinstance(state, RequestState):
                    try:
                        _fix_headers(message, state)
                    except Exception as exc:
                        from ..counters import STATS

                        STATS.error("starlette_layer", exc)
            await send(message)

        await self.app(scope, receive, send_checked)


class PostHogASGIMiddleware(ResponseIdLayer):
    """The public form of the layer: wrap the ASGI app (Starlette, FastAPI or any other)
    in it, outermost (``app = PostHogASGIMiddleware(app)``, or ``uvicorn.run(...)`` on it).

    Besides the response headers above, it flushes every bridge before the app reports
    ``lifespan.shutdown.complete`` when :mod:`otel_posthog.sdk.lifecycle` could not hook
    Starlette's router for that (the bridge is configured by then: the server runs the
    lifespan after the app is imported).
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "lifespan":
            await super().__call__(scope, receive, send)
            return
        wrap = _lifespan_send
        await self.app(scope, receive, send if wrap is None else wrap(send))
