"""Deliver queued events when the server stops.

uvicorn handles SIGTERM itself and re-raises it after its shutdown, so neither the tracer
provider's nor posthog's ``atexit`` handler runs, and a signal handler installed while the
app is imported is discarded. The reliable moment is the ASGI lifespan shutdown, which
every ASGI server runs after in-flight requests finished: we wrap Starlette's (and so
FastAPI's) router lifespan once (requests never pass through it; the wrap lives in
:mod:`otel_posthog.compat`) and flush every active bridge before the app reports
``lifespan.shutdown.complete``. Where that hook is off (``OTEL_POSTHOG_COMPAT=public``, a
Starlette without the expected router), an app wrapped in
:class:`otel_posthog.PostHogASGIMiddleware` gets the same flush. ``atexit`` covers
everything else.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .. import compat

log = logging.getLogger("otel_posthog")
_installed = False
_flush: Callable[[], None] | None = None
_SHUTDOWN = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


def install(flush: Callable[[], None]) -> None:
    """Idempotent: ``flush`` (every bridge's) at Starlette's lifespan shutdown and ``atexit``."""
    global _installed, _flush
    if _installed:
        return
    _installed = True
    _flush = flush
    atexit.register(flush)
    hooked = compat.hook_starlette_lifespan(flushing_send)
    from . import starlette_layer

    starlette_layer.install(None if hooked else flushing_send)


def flushing_send(send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """An ASGI ``send`` that flushes every bridge (in an executor) before it passes on
    ``lifespan.shutdown.complete`` (or ``.failed``)."""

    async def send_after_flush(message: Any) -> None:
        if message.get("type") in _SHUTDOWN and _flush is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, _flush)
            except Exception as exc:
                log.warning("otel_posthog: flush at shutdown failed: %r", exc)
        await send(message)

    return send_after_flush
